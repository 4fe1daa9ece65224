"""``Photon``: the base class of a model service, and its validated manifest.

A photon is a class with two optional lifecycle hooks (``init`` to load a model once per
replica, ``shutdown`` to release it) and one or more ``@handler`` methods. ``describe``
validates the class up front so a bad definition is rejected when it is uploaded, with a
message that says what to change, rather than when a replica first serves a request.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from leptonic.core.models import HandlerInfo, Resources
from leptonic.errors import PhotonDefinitionError
from leptonic.photon.handler import HandlerSignature, HandlerSpec, get_spec, signature_of


class PhotonManifest(BaseModel):
    """What the inspector found in a photon class: its name, handlers and requirements."""

    class_name: str
    handlers: list[HandlerInfo] = Field(default_factory=list)
    requirements: list[str] = Field(default_factory=list)
    # what deployments of it ask for when they say nothing (a classic resource_shape)
    resources: Resources | None = None
    gpu_models: list[str] = Field(default_factory=list)


class Photon:
    """Subclass this and mark methods with ``@handler`` to serve them over HTTP.

    ``requirements`` lists the pip requirements the photon needs. ``init`` runs once per
    replica, in a worker thread, before the replica reports ready; ``shutdown`` runs once
    when the replica stops gracefully.
    """

    requirements: ClassVar[list[str]] = []

    def init(self) -> None:
        """Load models and other expensive state. Runs before ``/readyz`` turns 200."""

    def shutdown(self) -> None:
        """Release what ``init`` acquired. Runs when the replica stops gracefully."""

    @classmethod
    def handler_specs(cls) -> list[HandlerSpec]:
        """The ``@handler`` methods of this class and its bases, in definition order.

        A subclass attribute of the same name hides a base's handler, as Python does.
        """
        specs: list[HandlerSpec] = []
        for attr in _ordered_attrs(cls):
            spec = get_spec(getattr(cls, attr, None))
            if spec is not None:
                specs.append(spec)
        return specs

    @classmethod
    def signatures(cls) -> list[HandlerSignature]:
        """Validate the class and return each handler's typed signature.

        Raises PhotonDefinitionError naming the problem and what to do about it.
        """
        name = cls.__name__
        if not isinstance(cls.requirements, list | tuple) or not all(
                isinstance(r, str) for r in cls.requirements):
            raise PhotonDefinitionError(
                f"photon {name!r}: requirements must be a list of pip requirement strings, "
                f"e.g. requirements = ['numpy>=1.26']")
        for hook in ("init", "shutdown"):
            if not callable(getattr(cls, hook, None)):
                raise PhotonDefinitionError(
                    f"photon {name!r}: {hook} must be a method, not {getattr(cls, hook)!r}")
        specs = cls.handler_specs()
        if not specs:
            raise PhotonDefinitionError(
                f"photon {name!r} has no handlers; mark at least one method with @handler "
                f"(from leptonic import handler)")
        paths: dict[str, str] = {}
        for spec in specs:
            if spec.path in paths:
                raise PhotonDefinitionError(
                    f"photon {name!r}: handlers {paths[spec.path]!r} and {spec.name!r} both "
                    f"use path {spec.path!r}; give one of them another path=")
            paths[spec.path] = spec.name
        return [signature_of(spec, cls) for spec in specs]

    @classmethod
    def describe(cls) -> PhotonManifest:
        """Validate the class and return its manifest (raises PhotonDefinitionError)."""
        sigs = cls.signatures()
        return PhotonManifest(
            class_name=cls.__name__,
            handlers=[HandlerInfo(name=s.spec.name, path=s.spec.path, stream=s.spec.stream,
                                  batch=s.spec.batch,
                                  max_wait_ms=s.spec.max_wait_ms if s.spec.batch else None)
                      for s in sigs],
            requirements=list(cls.requirements))


def _ordered_attrs(cls: type) -> list[str]:
    """Attribute names visible on ``cls``, bases first, each in definition order."""
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass):
            names.setdefault(attr, None)
    return list(names)
