"""Run the gateway as its own process with a static route table.

    python -m leptonic.gateway --port 8090 \\
        --route echo=http://127.0.0.1:8001 --route echo=http://127.0.0.1:8002 [--token T]

Besides ``/run/...`` it answers ``/healthz`` and ``/metrics`` (Prometheus text).
"""

from __future__ import annotations

import argparse
import hmac
from collections import defaultdict
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from leptonic.gateway.proxy import Gateway, Receive, Scope, Send
from leptonic.gateway.routes import RouteTable, Upstream


def parse_routes(specs: Sequence[str]) -> dict[str, list[Upstream]]:
    """``["echo=http://h:1", "echo=http://h:2"]`` -> ``{"echo": [Upstream("echo-0", ..), ..]}``."""
    routes: dict[str, list[Upstream]] = defaultdict(list)
    for spec in specs:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url:
            raise SystemExit(f"--route {spec!r}: expected DEPLOYMENT=http://HOST:PORT")
        ups = routes[name]
        ups.append(Upstream(f"{name}-{len(ups)}", url.rstrip("/")))
    return dict(routes)


def token_checker(token: str) -> Callable[[str | None, str, str | None], bool]:
    expected = token.encode()

    def authorize(given: str | None, deployment: str, client: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected)

    return authorize


class GatewayServer:
    """The gateway plus ``/healthz`` and ``/metrics``, as one ASGI app."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/run/"):
            path = scope["path"]
            if path == "/healthz":
                await _text(send, 200, b"ok\n", b"text/plain")
                return
            if path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                await _text(send, 200, generate_latest(self.gateway.registry),
                            CONTENT_TYPE_LATEST.encode())
                return
        await self.gateway(scope, receive, send)


async def _text(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m leptonic.gateway",
                                     description="Run the leptonic gateway on its own.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--route", action="append", default=[],
                        metavar="DEPLOYMENT=URL", help="a ready replica (repeatable)")
    parser.add_argument("--token", default=None,
                        help="require 'Authorization: Bearer TOKEN' on every request")
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--max-body-bytes", type=int, default=None)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    import uvicorn

    table = RouteTable(parse_routes(args.route))
    kwargs = {} if args.max_body_bytes is None else {"max_body_bytes": args.max_body_bytes}
    gateway = Gateway(table, authorize=token_checker(args.token) if args.token else None,
                      retries=args.retries, registry=CollectorRegistry(), **kwargs)
    uvicorn.run(GatewayServer(gateway), host=args.host, port=args.port, loop="uvloop",
                http="httptools", lifespan="on", access_log=False, log_level=args.log_level,
                server_header=False, date_header=False)


if __name__ == "__main__":
    main()
