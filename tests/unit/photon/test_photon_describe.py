"""Photon.describe(): the manifest of a good class, and a clear error for each bad one."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from leptonic import Photon, handler
from leptonic.errors import PhotonDefinitionError
from leptonic.photon import PhotonManifest


class Good(Photon):
    requirements = ["numpy>=1.26"]

    @handler
    def a(self, x: int) -> int:
        return x

    @handler(batch=4, max_wait_ms=20)
    async def b(self, xs: list[int]) -> list[int]:
        return xs

    @handler
    def c(self) -> Iterator[str]:
        yield "x"


def test_manifest_lists_handlers_and_requirements() -> None:
    m = Good.describe()
    assert isinstance(m, PhotonManifest)
    assert m.class_name == "Good"
    assert m.requirements == ["numpy>=1.26"]
    assert [(h.name, h.path, h.stream, h.batch, h.max_wait_ms) for h in m.handlers] == [
        ("a", "/a", False, None, None),
        ("b", "/b", False, 4, 20.0),
        ("c", "/c", True, None, None),
    ]


def test_subclass_inherits_handlers() -> None:
    class More(Good):
        @handler
        def d(self) -> str:
            return ""

    assert [h.name for h in More.describe().handlers] == ["a", "b", "c", "d"]


def test_no_handlers() -> None:
    class Empty(Photon):
        def helper(self) -> None: ...

    with pytest.raises(PhotonDefinitionError, match=r"'Empty' has no handlers.*@handler"):
        Empty.describe()


class Custom:
    def __init__(self, v: int) -> None:
        self.v = v


def test_custom_class_parameter_names_handler_and_type() -> None:
    class P(Photon):
        @handler
        def f(self, c: Custom) -> int:
            return 1

    with pytest.raises(PhotonDefinitionError) as info:
        P.describe()
    msg = str(info.value)
    assert "'P.f'" in msg
    assert "parameter 'c'" in msg
    assert "Custom" in msg
    assert "JSON" in msg


def test_socket_return_type_names_handler_and_type() -> None:
    class P(Photon):
        @handler
        def conn(self) -> socket.socket:
            raise NotImplementedError

    with pytest.raises(PhotonDefinitionError, match=r"'P.conn'.*return type socket\.socket"):
        P.describe()


def test_duplicate_paths() -> None:
    class P(Photon):
        @handler(path="/run")
        def a(self) -> int:
            return 1

        @handler(path="run")
        def b(self) -> int:
            return 2

    with pytest.raises(PhotonDefinitionError, match=r"'a' and 'b' both use path '/run'"):
        P.describe()


def test_batched_params_must_be_lists() -> None:
    class P(Photon):
        @handler(batch=8)
        def embed(self, text: str) -> list[float]:
            return []

    with pytest.raises(PhotonDefinitionError, match=r"'P.embed'.*batched.*'text'.*list\[T\]"):
        P.describe()


def test_batched_return_must_be_list() -> None:
    class P(Photon):
        @handler(batch=8)
        def embed(self, texts: list[str]) -> float:
            return 0.0

    with pytest.raises(PhotonDefinitionError, match=r"must return list\[R\]"):
        P.describe()


def test_async_batched_handler_is_fine() -> None:
    class P(Photon):
        @handler(batch=2)
        async def embed(self, texts: list[str]) -> list[int]:
            return [len(t) for t in texts]

    assert P.describe().handlers[0].batch == 2


def test_batched_streaming_is_rejected() -> None:
    class P(Photon):
        @handler(batch=2)
        def f(self, xs: list[int]) -> Iterator[int]:
            yield 1

    with pytest.raises(PhotonDefinitionError, match="both batch and stream"):
        P.describe()


def test_var_args_rejected() -> None:
    class P(Photon):
        @handler
        def f(self, *args: int) -> int:
            return 0

    with pytest.raises(PhotonDefinitionError, match=r"\*args"):
        P.describe()


def test_unresolvable_hint() -> None:
    class P(Photon):
        @handler
        def f(self, x: Missing) -> int:  # type: ignore[name-defined]  # noqa: F821
            return 0

    with pytest.raises(PhotonDefinitionError, match="cannot resolve its type hints"):
        P.describe()


def test_requirements_must_be_strings() -> None:
    class P(Photon):
        requirements = "numpy"  # type: ignore[assignment]

        @handler
        def f(self) -> int:
            return 0

    with pytest.raises(PhotonDefinitionError, match="requirements must be a list"):
        P.describe()
