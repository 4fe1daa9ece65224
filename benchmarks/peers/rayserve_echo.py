"""JSON echo on Ray Serve: POST /echo {"text": ...} -> {"text": ...}."""

import sys
import time

import ray
from ray import serve
from starlette.requests import Request


@serve.deployment(max_ongoing_requests=256)
class Echo:
    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        return {"text": body["text"]}


if __name__ == "__main__":
    ray.init(num_cpus=1, include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    serve.run(Echo.bind(), route_prefix="/echo")
    while True:
        time.sleep(3600)
