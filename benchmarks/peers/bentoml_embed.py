"""Sentence embeddings on BentoML with adaptive batching: POST /embed {"text": [one text]}
-> [[floats]] (a batchable API takes and returns a list per request).

Run as ``python bentoml_embed.py PORT`` (it starts ``bentoml serve`` on itself)."""

import os
import subprocess
import sys

import bentoml
from _model import encode, load_model


@bentoml.service(workers=1)
class Embed:
    def __init__(self) -> None:
        self.model = load_model()

    # a generous latency bound: BentoML sheds (503) requests it expects to miss it
    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=10_000)
    def embed(self, text: list[str]) -> list[list[float]]:
        return encode(self.model, text).tolist()


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(subprocess.call([sys.executable, "-m", "bentoml", "serve", "bentoml_embed:Embed",
                              "--port", sys.argv[1], "--host", "127.0.0.1"], cwd=here))
