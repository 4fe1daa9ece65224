"""Ready-made photons, referred to as ``builtin:NAME``; each is imported only when used.

Each is configured by environment variables set on its deployment (``leptonic deployment
create --env KEY=VALUE``), documented in its module; the model photons need the ``ml``
extra (``pip install 'leptonic[ml]'``).
"""

from __future__ import annotations

BUILTINS: dict[str, str] = {
    "echo": "leptonic.photon.builtin.echo:Echo",
    "sentence-embedding": "leptonic.photon.builtin.sentence_embedding:SentenceEmbedding",
    "sklearn": "leptonic.photon.builtin.sklearn_model:SklearnModel",
    "torch": "leptonic.photon.builtin.torch_model:TorchModel",
}
