"""Driving the CLI against the in-process platform (the ``cli`` fixture's machinery)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.testclient import TestClient


class _TestClientTransport(httpx.BaseTransport):
    """Sends the CLI client's requests through the running platform's TestClient.

    Requests and responses are copied across, so this works whichever HTTP library the
    TestClient is built on, and closing a CLI client never closes the shared TestClient.
    """

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        resp = self.client.request(request.method, str(request.url), headers=headers,
                                   content=request.read())
        return httpx.Response(resp.status_code, headers=list(resp.headers.multi_items()),
                              content=resp.content, request=request)


def make_cli(api: TestClient, token: str, monkeypatch: Any) -> Any:
    """``invoke(*args, input=None, token=None)`` runs the CLI against the platform."""
    from typer.testing import CliRunner

    from leptonic.cli import _context
    from leptonic.cli.main import app
    from leptonic.client import Client

    transport = _TestClientTransport(api)

    def make_client(url: str | None, tok: str | None) -> Client:
        return Client(url="http://testserver", token=tok or token, transport=transport)

    monkeypatch.setattr(_context, "make_client", make_client)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


def ok_json(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_line_error(result: Any, *words: str) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


