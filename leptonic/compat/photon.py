"""The classic leptonai ``Photon`` class and ``@Photon.handler``, mapped onto leptonic.

This is the API of ``leptonai.photon`` as of leptonai 0.27.3 (the last release with the
Photon SDK), so a photon written for it runs unchanged: ``import leptonai`` resolves to
this package inside replicas and local runs (see :mod:`leptonic.photon.alias`).

What maps onto what:

====================================  =================================================
classic                               leptonic
====================================  =================================================
``@Photon.handler("path")``           a handler at ``/path`` (``method="GET"``: query
                                      parameters instead of a JSON body)
``max_batch_size``/``max_wait_time``  ``batch=N``/``max_wait_ms`` (the handler is
                                      written for one item and called with lists)
``requirement_dependency``            the photon's requirements
``handler_max_concurrency``           sync handlers run at most that many at once
``handler_timeout``                   the handlers' timeout (504 past it)
``deployment_template``               validated at create; ``resource_shape`` becomes
                                      the default resources (and GPU models) of its
                                      deployments (:mod:`leptonic.compat.shapes`); at
                                      ``init`` its env defaults are set and missing
                                      env/secrets are warned about
``extra_files``                       must lie in the bundle (they are bundled with it)
``init()``                            runs once per replica before ``/readyz`` is 200
====================================  =================================================

Mounting sub-apps (``mount=True``: Gradio, Flask, FastAPI) is refused when the photon is
created, with what to do instead.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
import shutil
import threading
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, TypeAdapter, create_model
from starlette.exceptions import HTTPException
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from leptonic.compat import shapes
from leptonic.compat.types import File, FileParam
from leptonic.errors import PhotonDefinitionError
from leptonic.photon.handler import HandlerSignature, HandlerSpec
from leptonic.photon.photon import Photon as _LeptonicPhoton
from leptonic.photon.photon import PhotonManifest, _ordered_attrs

__all__ = [
    "ENV_VAR_REQUIRED", "File", "FileParam", "FileResponse", "HTTPException", "JPEGResponse",
    "JSONResponse", "PNGResponse", "Photon", "RedirectResponse", "Response",
    "StreamingResponse", "WAVResponse", "handler",
]

ENV_VAR_REQUIRED = "PLEASE_ENTER_YOUR_ENV_VARIABLE_HERE_(LEPTON_ENV_VAR_REQUIRED)"
CLASSIC_ATTR = "__photon_handler_params__"
_TEMPLATE_FIELDS = ("resource_shape", "env", "secret")
_ENV_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_KNOWN_OPTIONS = frozenset({"example", "examples", "max_batch_size", "max_wait_time", "mount",
                            "use_raw_args", "cancel_on_disconnect", "include_in_schema",
                            "use_router_if_possible"})
# as leptonai: one lock for every photon's lazy init (it is never a bottleneck)
_init_lock = threading.Lock()


class PNGResponse(StreamingResponse):
    media_type = "image/png"


class JPEGResponse(StreamingResponse):
    media_type = "image/jpeg"


class WAVResponse(StreamingResponse):
    media_type = "audio/wav"


@dataclass(frozen=True)
class ClassicHandler:
    """What ``@Photon.handler`` recorded: the route, the method and the options given."""

    path: str
    method: str
    func: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)
    attr: str = ""          # the class attribute it is found under


def handler(path: Any = None, method: str = "POST", **kwargs: Any) -> Any:
    """``@Photon.handler``, ``@Photon.handler("path")``, ``@handler("run", method="GET")``.

    The route is ``/path`` (default: the method's name). ``max_batch_size`` and
    ``max_wait_time`` (seconds) come together and make it a batched handler: written for
    one item, called with a list of items per parameter, returning a list.
    """
    mbs, mwt = kwargs.get("max_batch_size"), kwargs.get("max_wait_time")
    if (mbs is None) != (mwt is None):
        raise PhotonDefinitionError(
            f"max_batch_size and max_wait_time should be both specified or not, got "
            f"max_batch_size={mbs}, max_wait_time={mwt}")
    if mbs is not None and (isinstance(mbs, bool) or not isinstance(mbs, int) or mbs <= 1):
        raise PhotonDefinitionError(f"max_batch_size should be an int greater than 1, not "
                                    f"{mbs!r}")
    if mwt is not None and (not isinstance(mwt, int | float) or mwt <= 0):
        raise PhotonDefinitionError(f"max_wait_time should be seconds > 0, not {mwt!r}")
    if not isinstance(method, str) or method.upper() not in ("GET", "POST"):
        raise PhotonDefinitionError(f"unsupported http method {method!r}; use 'POST' or 'GET'")

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        route = (path if isinstance(path, str) else func.__name__).strip("/")

        @functools.wraps(func)
        def wrapped(self: Any, *args: Any, **kw: Any) -> Any:
            self._call_init_once()
            return func(self, *args, **kw)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def wrapped_async(self: Any, *args: Any, **kw: Any) -> Any:
                self._call_init_once()
                return await func(self, *args, **kw)
            target: Callable[..., Any] = wrapped_async
        else:
            target = wrapped
        setattr(target, CLASSIC_ATTR, ClassicHandler(route, method.upper(), func, dict(kwargs)))
        return target

    if callable(path) and not kwargs:
        return decorator(path)
    return decorator


class Photon(_LeptonicPhoton):
    """A photon in the classic leptonai API. Subclass it, add ``@Photon.handler`` methods.

    Served by leptonic with the classic wire format: a JSON body whose keys are the
    parameters (or query parameters for ``method="GET"``), the bare return value as JSON,
    ``None`` as 204, ``HTTPException`` as its status with ``{"error": detail}``, any other
    exception as 500 with ``{"error": ...}``.
    """

    photon_type: ClassVar[str] = "photon"
    requirement_dependency: ClassVar[list[str] | None] = None
    system_dependency: ClassVar[list[str] | None] = None
    deployment_template: ClassVar[dict[str, Any] | None] = {
        "resource_shape": None, "env": {}, "secret": []}
    handler_max_concurrency: ClassVar[int] = 1
    handler_timeout: ClassVar[float] = 600
    extra_files: ClassVar[dict[str, str] | list[str]] = {}
    vcs_url: ClassVar[str | None] = None

    handler = staticmethod(handler)

    def __init__(self, name: str | None = None, model: str | None = None) -> None:
        self._photon_name = name or type(self).__qualname__
        self._photon_model = model or type(self).__qualname__
        self._init_called = False
        self._init_res: Any = None

    def __str__(self) -> str:
        return f"Photon(name={self._photon_name}, model={self._photon_model})"

    def init(self) -> Any:
        """Load models and other state; runs once, before the first request is served."""

    def _call_init_once(self) -> Any:
        """Run the template's env defaults, then ``init()``, once (as leptonai does, a
        handler called before the replica ran ``init`` runs it first)."""
        if getattr(self, "_init_called", None) is None:
            raise PhotonDefinitionError(
                f"photon {type(self).__name__!r} overrides __init__ without calling "
                f"super().__init__(); write the set-up code in init(self) instead")
        if not self._init_called:
            with _init_lock:
                if not self._init_called:
                    self._init_called = True
                    _apply_template(type(self))
                    _place_extra_files(type(self))
                    self._init_res = self.init()
        return self._init_res

    def launch(self, host: str = "0.0.0.0", port: int = 8080,
               log_level: str = "info") -> None:
        """Serve this photon over HTTP until interrupted (``python app.py`` in the classic
        API; run the file with ``python -m leptonic.compat app.py``)."""
        from leptonic.compat.app import launch

        launch(self, host=host, port=port, log_level=log_level)

    # -- what leptonic reads ---------------------------------------------------------

    @classmethod
    def _app_class(cls) -> type:
        from leptonic.compat.app import ClassicApp

        return ClassicApp

    @classmethod
    def classic_handlers(cls) -> list[ClassicHandler]:
        """The ``@Photon.handler`` methods of this class and its bases, in order."""
        found: list[ClassicHandler] = []
        for attr in _ordered_attrs(cls):
            info = getattr(getattr(cls, attr, None), CLASSIC_ATTR, None)
            if isinstance(info, ClassicHandler):
                found.append(dataclasses.replace(info, attr=attr))
        return found

    @classmethod
    def requirements_list(cls) -> list[str]:
        """``requirement_dependency`` of the class and its bases, bases first, in order."""
        deps: list[str] = []
        for klass in reversed(cls.__mro__):
            own = vars(klass).get("requirement_dependency")
            if own:
                deps.extend(own)
            own = vars(klass).get("requirements")
            if own and klass is not _LeptonicPhoton:
                deps.extend(own)
        return deps

    @classmethod
    def handler_specs(cls) -> list[HandlerSpec]:
        return [s.spec for s in cls.signatures()]

    @classmethod
    def signatures(cls) -> list[HandlerSignature]:
        """Validate the class (raises PhotonDefinitionError) and type each handler."""
        name = cls.__name__
        _check_template(cls)
        _check_extra_files(cls)
        deps = cls.requirement_dependency
        if deps is not None and not (isinstance(deps, list | tuple)
                                     and all(isinstance(d, str) for d in deps)):
            raise PhotonDefinitionError(
                f"photon {name!r}: requirement_dependency must be a list of pip "
                f"requirement strings, e.g. ['numpy>=1.26']")
        conc = cls.handler_max_concurrency
        if isinstance(conc, bool) or not isinstance(conc, int) or conc < 1:
            raise PhotonDefinitionError(
                f"photon {name!r}: handler_max_concurrency must be an int >= 1, not {conc!r}")
        timeout = cls.handler_timeout
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float) or timeout <= 0):
            raise PhotonDefinitionError(
                f"photon {name!r}: handler_timeout must be seconds > 0, not {timeout!r}")
        handlers = cls.classic_handlers()
        if not handlers:
            raise PhotonDefinitionError(
                f"photon {name!r} has no handlers; mark at least one method with "
                f"@Photon.handler")
        seen: dict[tuple[str, str], str] = {}
        sigs: list[HandlerSignature] = []
        for h in handlers:
            _refuse_unsupported(cls, h)
            key = (h.method, "/" + h.path)
            if key in seen:
                raise PhotonDefinitionError(
                    f"photon {name!r}: handlers {seen[key]!r} and {h.func.__name__!r} both "
                    f"answer {h.method} /{h.path}; give one of them another path")
            seen[key] = h.func.__name__
            sigs.append(_signature(cls, h))
        return sigs

    @classmethod
    def describe(cls) -> PhotonManifest:
        from leptonic.core.models import HandlerInfo

        sigs = cls.signatures()
        name = (cls.deployment_template or {}).get("resource_shape")
        shape = shapes.shape(name) if name else None
        return PhotonManifest(
            class_name=cls.__name__,
            handlers=[HandlerInfo(name=s.spec.name, path=s.spec.path, stream=False,
                                  batch=s.spec.batch,
                                  max_wait_ms=s.spec.max_wait_ms if s.spec.batch else None)
                      for s in sigs],
            requirements=cls.requirements_list(),
            resources=shape.resources() if shape else None,
            gpu_models=list(shape.gpu_models) if shape else [])


# -- validation ------------------------------------------------------------------------


def _refuse_unsupported(cls: type, h: ClassicHandler) -> None:
    where = f"{cls.__name__}.{h.func.__name__}"
    if h.options.get("mount"):
        raise PhotonDefinitionError(
            f"handler {where!r} mounts a sub-app (@Photon.handler(mount=True): Gradio, "
            f"Flask or FastAPI), which leptonic does not support; serve that UI as its own "
            f"service calling this photon over HTTP, and keep only @Photon.handler "
            f"functions here")
    if h.options.get("use_raw_args"):
        raise PhotonDefinitionError(
            f"handler {where!r} uses use_raw_args=True, which leptonic does not support; "
            f"declare each input as a typed parameter")
    unknown = sorted(set(h.options) - _KNOWN_OPTIONS)
    if unknown:
        raise PhotonDefinitionError(
            f"handler {where!r}: unknown @Photon.handler option(s) {', '.join(unknown)}; "
            f"leptonic supports {', '.join(sorted(_KNOWN_OPTIONS - {'mount', 'use_raw_args'}))}")


def _check_template(cls: type) -> None:
    name = cls.__name__
    tpl = cls.deployment_template  # type: ignore[attr-defined]
    if tpl is None:
        return
    if not isinstance(tpl, dict):
        raise PhotonDefinitionError(f"photon {name!r}: deployment_template must be a dict")
    extra = [k for k in tpl if k not in _TEMPLATE_FIELDS]
    if extra:
        raise PhotonDefinitionError(
            f"photon {name!r}: deployment_template has unsupported field(s) "
            f"{', '.join(map(str, extra))}; supported: {', '.join(_TEMPLATE_FIELDS)}")
    shape = tpl.get("resource_shape")
    if shape is not None and not isinstance(shape, str):
        raise PhotonDefinitionError(
            f"photon {name!r}: deployment_template resource_shape must be a string")
    if shape:
        try:
            shapes.shape(shape)
        except ValueError as exc:
            raise PhotonDefinitionError(
                f"photon {name!r}: deployment_template {exc}; or leave resource_shape out "
                f"and give the deployment --cpu/--memory/--gpu") from None
    env = tpl.get("env") or {}
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _ENV_NAME.match(k)
            for k, v in env.items()):
        raise PhotonDefinitionError(
            f"photon {name!r}: deployment_template env must map variable names to string "
            f"values (ENV_VAR_REQUIRED for a value the user must set)")
    secret = tpl.get("secret") or []
    if not isinstance(secret, list) or not all(
            isinstance(s, str) and _ENV_NAME.match(s) for s in secret):
        raise PhotonDefinitionError(
            f"photon {name!r}: deployment_template secret must be a list of secret names")


def _extra_files(cls: type) -> dict[str, str]:
    """``{path at run time: path in the bundle}``, as leptonai's ``_extra_files``."""
    files = cls.extra_files  # type: ignore[attr-defined]
    if isinstance(files, list | tuple):
        return {str(p): str(p) for p in files}
    if isinstance(files, dict):
        return {str(k): str(v) for k, v in files.items()}
    raise PhotonDefinitionError(
        f"photon {cls.__name__!r}: extra_files should be a list of paths or a dict "
        f"{{path at run time: local path}}, not {files!r}")


def _roots(cls: type) -> list[Path]:
    """Where relative extra files are looked up: the working folder (a replica's is the
    bundle), then the folder of the photon's file."""
    roots = [Path.cwd().resolve()]
    try:
        roots.append(Path(inspect.getfile(cls)).resolve().parent)
    except (OSError, TypeError):
        pass
    return roots


def _find(local: str, roots: list[Path]) -> Path | None:
    if Path(local).is_absolute():
        return None
    for root in roots:
        src = (root / local).resolve()
        if src.is_relative_to(root) and src.exists():
            return src
    return None


def _check_extra_files(cls: type) -> None:
    """Each extra file must be in the bundle: leptonic bundles the photon's folder, so
    listing a file there is all it takes; one outside it would be missing at run time."""
    roots = _roots(cls)
    for remote, local in _extra_files(cls).items():
        if _find(local, roots) is None:
            raise PhotonDefinitionError(
                f"photon {cls.__name__!r}: extra file {local!r} is not in the bundle; "
                f"leptonic bundles the photon's folder, so copy the file into it and list "
                f"it by its relative path")
        if Path(remote).is_absolute() or ".." in Path(remote).parts:
            raise PhotonDefinitionError(
                f"photon {cls.__name__!r}: extra file target {remote!r} must be a relative "
                f"path inside the photon's folder")


def _place_extra_files(cls: type) -> None:
    """Copy ``{remote: local}`` extra files whose run-time path differs into place."""
    try:
        files = _extra_files(cls)
    except PhotonDefinitionError:
        return
    roots = _roots(cls)
    for remote, local in files.items():
        src = _find(local, roots)
        dst = roots[0] / remote
        if remote != local and src is not None and not dst.exists():
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dst)
                else:
                    shutil.copyfile(src, dst)
            except OSError as exc:
                warnings.warn(f"cannot place extra file {local!r} at {remote!r}: {exc}",
                              RuntimeWarning, stacklevel=2)


def _apply_template(cls: type) -> None:
    """As leptonai's ``Photon.init``: set env defaults, warn of missing env and secrets."""
    tpl = cls.deployment_template or {}  # type: ignore[attr-defined]
    for key, value in (tpl.get("env") or {}).items():
        if os.environ.get(key) is None:
            if value == ENV_VAR_REQUIRED:
                warnings.warn(f"This photon expects env variable {key}, but it's not set.",
                              RuntimeWarning, stacklevel=2)
            else:
                os.environ[key] = value
    for key in tpl.get("secret") or []:
        if os.environ.get(key) is None:
            warnings.warn(f"This photon expects secret {key}, but it's not set.",
                          RuntimeWarning, stacklevel=2)


def _signature(cls: type, h: ClassicHandler) -> HandlerSignature:
    func = h.func
    where = f"{cls.__name__}.{func.__name__}"
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise PhotonDefinitionError(
            f"handler {where!r}: cannot resolve its type hints ({type(exc).__name__}: "
            f"{exc}); make every annotated type importable at module level") from exc
    params = list(inspect.signature(func).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    fields: dict[str, Any] = {}
    extra = "ignore"
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            extra = "allow"
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        ann = hints.get(p.name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (ann, default)
    mbs = h.options.get("max_batch_size")
    try:
        model = create_model(
            f"{cls.__name__}_{h.path or 'root'}_{h.method.lower()}_input".replace("/", "_"),
            __config__=ConfigDict(extra=extra, arbitrary_types_allowed=True),  # type: ignore[typeddict-item]
            **fields)
        model.model_json_schema()
    except Exception as exc:
        raise PhotonDefinitionError(
            f"handler {where!r}: cannot build its request model from the parameters' "
            f"types: {exc}".splitlines()[0]) from exc
    ret = hints.get("return", Any)
    output: TypeAdapter[Any]
    if isinstance(ret, type) and issubclass(ret, Response):
        output = TypeAdapter(Any)
    else:
        try:
            output = TypeAdapter(ret)
            output.json_schema()
        except Exception:
            output = TypeAdapter(Any)
    timeout = cls.handler_timeout  # type: ignore[attr-defined]
    spec = HandlerSpec(
        name=h.attr or func.__name__, path="/" + h.path, stream=False,
        batch=int(mbs) if mbs is not None else None,
        max_wait_ms=float(h.options.get("max_wait_time") or 0) * 1000, max_queue=None,
        adaptive_wait=False, is_async=inspect.iscoroutinefunction(func),
        fn=getattr(cls, h.attr or func.__name__), timeout_s=float(timeout) if timeout else None,
        method=h.method)
    # serialised as the bare value (classic photons' outputs are not validated)
    return HandlerSignature(spec=spec, request_model=model, params=tuple(fields),
                            output_type=Any, output=output)
