"""``leptonai.client.Client``: call a photon's handlers as methods, built from /openapi.json.

As the classic client: ``Client(url)`` reads ``url/openapi.json`` and makes one method per
path (``/add`` -> ``client.add(x=1, y=2)``, ``/v1/run`` -> ``client.v1.run(...)``); a POST
handler gets its keyword arguments as a JSON body, a GET handler as query parameters.
The result is the decoded JSON (or the bytes of any other content type); an error status
raises ``httpx.HTTPStatusError`` with the photon's ``error`` (or ``detail``) in the message.

With leptonic, point it at a deployment through the gateway with the platform token::

    Client(f"{platform_url}/run/my-deployment", token=token).add(x=1, y=2)
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pydantic_core

__all__ = ["Client", "local"]

DEFAULT_PORT = 8080


def local(port: int = DEFAULT_PORT) -> str:
    """The URL of a photon served on this machine."""
    return f"http://localhost:{port}"


def _attr_name(part: str) -> str:
    name = re.sub(r"\W", "_", part)
    return name + "_" if keyword.iskeyword(name) else name


class PathTree:
    """A namespace of paths: ``tree.v1.run`` for ``/v1/run``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._children: dict[str, PathTree | Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        children = self.__dict__.get("_children", {})
        if name in children:
            return children[name]
        raise AttributeError(f"no path {name!r} under /{self._name}; paths: "
                             f"{', '.join(sorted(children)) or 'none'}")

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(_attr_name(name))

    def __dir__(self) -> Iterable[str]:
        return sorted(self._children)

    def _add(self, parts: list[str], fn: Callable[..., Any]) -> None:
        head = _attr_name(parts[0])
        if len(parts) == 1:
            self._children[head] = fn
            return
        sub = self._children.get(head)
        if not isinstance(sub, PathTree):
            sub = self._children[head] = PathTree(f"{self._name}/{parts[0]}".strip("/"))
        sub._add(parts[1:], fn)


class Client:
    """A client of one photon (or deployment) URL; its methods come from /openapi.json."""

    def __init__(self, workspace_or_url: str, deployment: str | None = None,
                 token: str | None = None, stream: bool | None = None,
                 chunk_size: int | None = None, timeout: float | None = None,
                 no_check: bool = False, http2: bool = False) -> None:
        if not workspace_or_url.startswith(("http://", "https://")):
            raise ValueError(
                "leptonic's classic client takes the URL of a photon (e.g. "
                "http://127.0.0.1:8080/run/DEPLOYMENT); Lepton workspace ids are not "
                "supported")
        self.url = workspace_or_url.rstrip("/")
        if deployment is not None:
            self.url = f"{self.url}/run/{deployment}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = httpx.Client(headers=headers, timeout=timeout)
        self.stream = stream
        self.chunk_size = chunk_size
        self._tree = PathTree("")
        self._paths: list[str] = []
        res = self._session.get(f"{self.url}/openapi.json")
        self._raise_for_detailed_status(res)
        self.openapi: dict[str, Any] = res.json()
        for path, item in self.openapi.get("paths", {}).items():
            methods = {m: self._method(path, m) for m in ("post", "get") if m in item}
            if not methods:
                continue
            self._paths.append(path)
            fn = methods.get("post") or methods["get"]
            for m, f in methods.items():
                setattr(fn, m, f)
            parts = [p for p in path.strip("/").split("/") if p]
            if parts:
                self._tree._add(parts, fn)
            else:
                self._root = fn

    def _method(self, path: str, http_method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if args:
                raise RuntimeError(f"{path} takes keyword arguments only, e.g. "
                                   f"client.{_attr_name(path.strip('/') or 'root')}(x=...)")
            if http_method == "get":
                res = self._session.get(f"{self.url}{path}", params=kwargs)
            else:
                body = pydantic_core.to_jsonable_python(kwargs)
                res = self._session.post(f"{self.url}{path}", json=body)
            return self._content(res)

        call.__name__ = _attr_name(path.strip("/") or "root")
        call.__doc__ = self.openapi.get("paths", {}).get(path, {}).get(
            http_method, {}).get("description")
        return call

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._tree, name)

    def __dir__(self) -> Iterable[str]:
        return [*super().__dir__(), *dir(self._tree)]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        root = self.__dict__.get("_root")
        if root is None:
            raise AttributeError("this photon has no handler at '/'")
        return root(*args, **kwargs)

    def paths(self) -> list[str]:
        """The handler paths the photon's OpenAPI document lists."""
        return list(self._paths)

    def healthz(self) -> bool:
        try:
            return self._session.get(f"{self.url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _content(self, res: httpx.Response) -> Any:
        self._raise_for_detailed_status(res)
        if res.status_code == 204:
            return None
        if res.headers.get("content-type", "").startswith("application/json"):
            return res.json()
        return res.content

    def _raise_for_detailed_status(self, res: httpx.Response) -> None:
        if not res.is_error:
            return
        try:
            doc = res.json()
            detail = doc.get("error", doc.get("detail", res.text))
        except ValueError:
            detail = res.text
        kind = "Client" if res.is_client_error else "Server"
        raise httpx.HTTPStatusError(
            f"{res.status_code} {kind} Error for url: {self.url}. Detail: {detail}",
            request=res.request, response=res)
