"""@handler: options recorded on the function, and signatures read into pydantic models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel, ValidationError

from leptonic import Photon, handler
from leptonic.errors import PhotonDefinitionError
from leptonic.photon.handler import get_spec, signature_of


class Point(BaseModel):
    x: float
    y: float


class Sample(Photon):
    @handler
    def plain(self, text: str, times: int = 2) -> str:
        return text * times

    @handler(path="v1/shift")
    async def shift(self, p: Point, dx: float = 0.0) -> Point:
        return Point(x=p.x + dx, y=p.y)

    @handler
    def gen(self, n: int) -> Iterator[int]:
        yield from range(n)

    @handler
    async def agen(self, n: int) -> AsyncIterator[str]:
        for i in range(n):
            yield str(i)

    @handler(batch=8, max_wait_ms=5)
    def embed(self, texts: list[str], scale: list[float]) -> list[list[float]]:
        return [[len(t) * s] for t, s in zip(texts, scale, strict=True)]

    @handler
    def untyped(self, a, b=1):  # type: ignore[no-untyped-def]
        return [a, b]

    @handler
    def nothing(self) -> dict:
        return {}


def spec(name: str):  # type: ignore[no-untyped-def]
    s = get_spec(getattr(Sample, name))
    assert s is not None
    return s


def test_bare_and_called_forms_record_a_spec() -> None:
    assert spec("plain").path == "/plain"
    assert spec("plain").stream is False
    assert spec("plain").batch is None
    assert spec("shift").path == "/v1/shift"
    assert spec("shift").is_async
    assert spec("embed").batch == 8
    assert spec("embed").max_wait_ms == 5


def test_generators_stream_automatically() -> None:
    assert spec("gen").stream
    assert not spec("gen").is_async
    assert spec("agen").stream
    assert spec("agen").is_async


def test_request_model_has_params_defaults_and_forbids_extra() -> None:
    sig = signature_of(spec("plain"))
    assert sig.params == ("text", "times")
    m = sig.request_model.model_validate_json(b'{"text": "ab"}')
    assert (m.text, m.times) == ("ab", 2)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        sig.request_model.model_validate_json(b'{"text": "ab", "extra": 1}')
    with pytest.raises(ValidationError):
        sig.request_model.model_validate_json(b'{"times": 1}')


def test_output_type_comes_from_return_annotation() -> None:
    sig = signature_of(spec("shift"))
    assert sig.output_type is Point
    assert sig.output.dump_json(Point(x=1, y=2)) == b'{"x":1.0,"y":2.0}'
    m = sig.request_model.model_validate_json(b'{"p": {"x": 1, "y": 2}}')
    assert m.p == Point(x=1, y=2)  # type: ignore[attr-defined]


def test_stream_item_type() -> None:
    assert signature_of(spec("gen")).output_type is int
    assert signature_of(spec("agen")).output_type is str


def test_batched_model_uses_item_types() -> None:
    sig = signature_of(spec("embed"))
    m = sig.request_model.model_validate_json(b'{"texts": "abc", "scale": 2}')
    assert (m.texts, m.scale) == ("abc", 2.0)  # type: ignore[attr-defined]
    assert sig.output_type == list[float]


def test_untyped_params_are_any() -> None:
    sig = signature_of(spec("untyped"))
    m = sig.request_model.model_validate_json(b'{"a": [1, "x"]}')
    assert (m.a, m.b) == ([1, "x"], 1)  # type: ignore[attr-defined]


def test_no_params_takes_empty_object() -> None:
    sig = signature_of(spec("nothing"))
    assert sig.params == ()
    sig.request_model.model_validate_json(b"{}")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"batch": 0}, "batch must be a positive int"),
    ({"batch": True}, "batch must be a positive int"),
    ({"max_wait_ms": -1}, "max_wait_ms"),
    ({"path": "/healthz"}, "reserved"),
    ({"path": "/bad path"}, "not a valid route"),
])
def test_bad_options_are_rejected_at_decoration(kwargs: dict, needle: str) -> None:
    with pytest.raises(PhotonDefinitionError, match=needle):
        handler(**kwargs)(lambda self: None)
