"""``@handler``: marks a photon method as an HTTP endpoint, and reads its typed signature.

The decorator only records a :class:`HandlerSpec` on the function; the signature is read
later by :func:`signature_of` (when the class is described or served), because type hints
may name classes that do not exist yet while the class body is still executing.

A handler's request body is a JSON object whose fields are the method's parameters; its
response is the return value as JSON. Generator functions stream (server-sent events, one
item per event). A batched handler (``batch=N``) takes ``list[T]`` parameters and returns
``list[R]``; each client sends one ``T`` per field and gets one ``R`` back. An element of
the returned list that is an ``Exception`` instance is raised to its own client only.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import operator
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from leptonic.errors import PhotonDefinitionError

F = TypeVar("F", bound=Callable[..., Any])

HANDLER_ATTR = "__leptonic_handler__"
RESERVED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
_PATH_RE = re.compile(r"^/[A-Za-z0-9_\-.~]+(?:/[A-Za-z0-9_\-.~]+)*$")
_STREAM_ORIGINS = (
    collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator,
    collections.abc.AsyncIterator, collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """What ``@handler`` recorded about one method (its options, not yet its types)."""

    name: str
    path: str
    stream: bool
    batch: int | None
    max_wait_ms: float
    max_queue: int | None
    adaptive_wait: bool
    is_async: bool
    fn: Callable[..., Any]
    timeout_s: float | None = None      # None: the deployment's --handler-timeout
    method: str = "POST"                # GET: inputs come as query parameters


@dataclass(frozen=True, slots=True)
class HandlerSignature:
    """A handler's typed contract: the per-request body model and the output serialiser.

    For a batched handler ``request_model`` has one field per parameter typed as the list's
    item (``T`` of ``list[T]``), and ``output`` serialises one item of the returned list.
    For a streaming handler ``output`` serialises one yielded item.
    """

    spec: HandlerSpec
    request_model: type[BaseModel]
    params: tuple[str, ...]
    output_type: Any
    output: TypeAdapter[Any]


@overload
def handler(fn: F, /) -> F: ...


@overload
def handler(
    fn: None = None, /, *, path: str | None = None, batch: int | None = None,
    max_wait_ms: float = 10, max_queue: int | None = None, adaptive_wait: bool = False,
    stream: bool | None = None, timeout: float | None = None,
) -> Callable[[F], F]: ...


def handler(
    fn: Callable[..., Any] | None = None, /, *, path: str | None = None,
    batch: int | None = None, max_wait_ms: float = 10, max_queue: int | None = None,
    adaptive_wait: bool = False, stream: bool | None = None, timeout: float | None = None,
) -> Any:
    """Expose a photon method as ``POST /{path}`` (default: the method's name).

    Usable bare (``@handler``) or with options (``@handler(batch=64, max_wait_ms=10)``).
    ``batch=N`` gathers concurrent requests into one call with up to N items, waiting at
    most ``max_wait_ms`` after the first; at most ``max_queue`` requests wait (default: 16
    batches, at least 256), further ones get 429; ``adaptive_wait=True`` skips the wait
    while it does not pay (a lone client is not held ``max_wait_ms``). ``stream`` defaults
    to whether the method is a (async) generator function. ``timeout`` (seconds) bounds
    one call (for a stream: each item): past it the caller gets 504 and the call is
    abandoned; default: the deployment's ``--handler-timeout`` (60 s).
    """

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(func):
            raise PhotonDefinitionError(f"@handler decorates a method, not {func!r}")
        name = func.__name__
        is_gen = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                                  or batch < 1):
            raise PhotonDefinitionError(
                f"handler {name!r}: batch must be a positive int (the max batch size), "
                f"not {batch!r}")
        if not isinstance(max_wait_ms, int | float) or max_wait_ms < 0:
            raise PhotonDefinitionError(
                f"handler {name!r}: max_wait_ms must be a number >= 0, not {max_wait_ms!r}")
        if max_queue is not None and (isinstance(max_queue, bool)
                                      or not isinstance(max_queue, int) or max_queue < 1):
            raise PhotonDefinitionError(
                f"handler {name!r}: max_queue must be a positive int (requests allowed to "
                f"wait for a batch), not {max_queue!r}")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float) or timeout <= 0):
            raise PhotonDefinitionError(
                f"handler {name!r}: timeout must be a number of seconds > 0, not {timeout!r}")
        if max_queue is not None and batch is None:
            raise PhotonDefinitionError(
                f"handler {name!r}: max_queue bounds the batch queue, so it needs batch=N")
        route = _normalise_path(name, path)
        spec = HandlerSpec(
            name=name, path=route, stream=is_gen if stream is None else bool(stream),
            batch=batch, max_wait_ms=float(max_wait_ms), max_queue=max_queue,
            adaptive_wait=bool(adaptive_wait),
            is_async=inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func),
            fn=func, timeout_s=None if timeout is None else float(timeout))
        setattr(func, HANDLER_ATTR, spec)
        return func

    if fn is not None:
        return mark(fn)
    return mark


def get_spec(obj: Any) -> HandlerSpec | None:
    """The HandlerSpec recorded on ``obj`` by ``@handler``, or None."""
    spec = getattr(obj, HANDLER_ATTR, None)
    return spec if isinstance(spec, HandlerSpec) else None


def _normalise_path(name: str, path: str | None) -> str:
    route = f"/{name}" if path is None else path.strip()
    if not route.startswith("/"):
        route = "/" + route
    if not _PATH_RE.match(route):
        raise PhotonDefinitionError(
            f"handler {name!r}: path {route!r} is not a valid route; use letters, digits, "
            f"'-', '_', '.', '~' and '/' (e.g. path='/v1/embed')")
    if route in RESERVED_PATHS:
        raise PhotonDefinitionError(
            f"handler {name!r}: path {route!r} is reserved by the runner "
            f"({', '.join(sorted(RESERVED_PATHS))}); pick another path=")
    return route


def signature_of(spec: HandlerSpec, owner: type | None = None) -> HandlerSignature:
    """Read the handler's type hints into a request model and an output serialiser.

    Raises PhotonDefinitionError naming the handler and the offending type when pydantic
    cannot validate or serialise it, or when the shape breaks a rule (batched parameters
    not ``list[...]``, ``*args``, a streaming handler that is not a generator, ...).
    """
    name = spec.name
    where = f"{owner.__name__}.{name}" if owner is not None else name
    try:
        hints = typing.get_type_hints(spec.fn, include_extras=True)
    except Exception as exc:
        raise PhotonDefinitionError(
            f"handler {where!r}: cannot resolve its type hints ({type(exc).__name__}: {exc}); "
            f"make every annotated type importable at module level") from exc

    params = list(inspect.signature(spec.fn).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise PhotonDefinitionError(
                f"handler {where!r}: *args/**kwargs are not supported; list each input "
                f"as a named, typed parameter")
        if p.kind is p.POSITIONAL_ONLY:
            raise PhotonDefinitionError(
                f"handler {where!r}: parameter {p.name!r} is positional-only; inputs arrive "
                f"as JSON fields, so make it a normal parameter")
        ann = hints.get(p.name, Any)
        if spec.batch is not None:
            item = _list_item(ann)
            if item is None:
                raise PhotonDefinitionError(
                    f"handler {where!r} is batched (batch={spec.batch}) so parameter "
                    f"{p.name!r} must be annotated list[T] (it receives one T per request), "
                    f"not {_type_name(ann)}")
            ann = item
        _check_type(where, f"parameter {p.name!r}", ann)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (ann, default)

    ret = hints.get("return", Any)
    if spec.batch is not None:
        if spec.stream:
            raise PhotonDefinitionError(
                f"handler {where!r}: a handler cannot both batch and stream; drop one")
        if not params:
            raise PhotonDefinitionError(
                f"handler {where!r} is batched but takes no inputs; add list[T] parameters "
                f"or remove batch=")
        if "return" in hints:
            item = _list_item(ret)
            if item is None:
                raise PhotonDefinitionError(
                    f"handler {where!r} is batched (batch={spec.batch}) so it must return "
                    f"list[R] (one R per input), not {_type_name(ret)}")
            ret = _without_exceptions(item)
    elif spec.stream:
        is_gen = inspect.isgeneratorfunction(spec.fn) or inspect.isasyncgenfunction(spec.fn)
        if not is_gen:
            raise PhotonDefinitionError(
                f"handler {where!r} has stream=True but is not a generator; `yield` each item")
        ret = _stream_item(ret)
    elif inspect.isgeneratorfunction(spec.fn) or inspect.isasyncgenfunction(spec.fn):
        raise PhotonDefinitionError(
            f"handler {where!r} is a generator but has stream=False; remove stream=False "
            f"to stream its items, or return a list instead of yielding")
    output = _check_type(where, "return type", ret)

    try:
        model = create_model(
            f"{name}_request", __config__=ConfigDict(extra="forbid"), **fields)
        model.model_json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        raise PhotonDefinitionError(
            f"handler {where!r}: cannot build its request model: {exc}".splitlines()[0]
        ) from exc
    return HandlerSignature(spec=spec, request_model=model, params=tuple(fields),
                            output_type=ret, output=output)


def _check_type(where: str, what: str, tp: Any) -> TypeAdapter[Any]:
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(tp)
        adapter.json_schema()
    except Exception as exc:
        raise PhotonDefinitionError(
            f"handler {where!r}: {what} {_type_name(tp)} cannot be converted to/from JSON "
            f"by pydantic; use JSON-friendly types (str, int, float, bool, list, dict, "
            f"a pydantic BaseModel or a dataclass)") from exc
    return adapter


def _list_item(tp: Any) -> Any | None:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _list_item(typing.get_args(tp)[0])
    if origin is list:
        args = typing.get_args(tp)
        return args[0] if args else Any
    if tp is list:
        return Any
    return None


def _without_exceptions(tp: Any) -> Any:
    """``R | SomeError`` -> ``R``: a batched handler may return an exception for one item
    (raised to that client only), so exception types in the item's union are not output."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return tp
    kept = [a for a in typing.get_args(tp)
            if not (isinstance(a, type) and issubclass(a, BaseException))]
    if not kept:
        return Any
    return functools.reduce(operator.or_, kept) if len(kept) > 1 else kept[0]


def _stream_item(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in _STREAM_ORIGINS:
        args = typing.get_args(tp)
        return args[0] if args else Any
    return Any


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        mod = tp.__module__
        return tp.__qualname__ if mod == "builtins" else f"{mod}.{tp.__qualname__}"
    return repr(tp).replace("typing.", "")
