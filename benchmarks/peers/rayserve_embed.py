"""Sentence embeddings on Ray Serve with ``@serve.batch``: POST /embed {"text": ...} -> [floats].

The batch method calls the model directly, as Ray Serve's batching guide does."""

import sys
import time

import ray
from _model import encode, load_model
from ray import serve
from starlette.requests import Request


@serve.deployment(max_ongoing_requests=256)
class Embed:
    def __init__(self) -> None:
        self.model = load_model()

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01)
    async def embed(self, texts: list[str]) -> list[list[float]]:
        return encode(self.model, texts).tolist()

    async def __call__(self, request: Request) -> list[float]:
        body = await request.json()
        return await self.embed(body["text"])


if __name__ == "__main__":
    ray.init(num_cpus=1, include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    serve.run(Embed.bind(), route_prefix="/embed")
    while True:
        time.sleep(3600)
