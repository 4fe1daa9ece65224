"""The typed errors of leptonic, translated to ``application/problem+json`` at the edge.

Every error a user can cause or see is one of these; backend failures are re-raised as
ours (``raise BackendError(...) from exc``) so the API layer has exactly one place that
renders them (``leptonic.api.problems``)::

    LeptonicError (500)
     ├── InvalidInput (422)          a request or definition that breaks a rule
     │    └── PhotonDefinitionError  a photon class/bundle that cannot be served
     ├── Unauthorized (401)          no token, or a token that is not valid
     ├── Forbidden (403)             a valid token without the needed role
     ├── NotFound (404)              a named photon, deployment, replica... is not there
     ├── Conflict (409)              the name is taken, or the object is in use
     ├── PayloadTooLarge (413)       a body or bundle over the configured limit
 │    └── OutputTooLarge         a job attempt left more output than its job allows
     ├── TooManyRequests (429)       a queue or rate limit is full
     ├── Unavailable (503)           no ready replica, or the platform is not ready
     └── BackendError (500)          the runtime failed to start/stop something
"""

from __future__ import annotations

from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


class LeptonicError(Exception):
    """Base of every leptonic error; carries an HTTP status and a human ``detail``."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class InvalidInput(LeptonicError):
    status = 422
    title = "Invalid input"


class PhotonDefinitionError(InvalidInput):
    title = "Invalid photon"


class Unauthorized(LeptonicError):
    status = 401
    title = "Unauthorized"


class Forbidden(LeptonicError):
    status = 403
    title = "Forbidden"


class NotFound(LeptonicError):
    status = 404
    title = "Not found"


class Conflict(LeptonicError):
    status = 409
    title = "Conflict"


class GenerationChanged(Conflict):
    """A spec write that stated the generation it read found another one: someone else
    changed the spec meanwhile."""

    title = "Generation changed"


class PayloadTooLarge(LeptonicError):
    status = 413
    title = "Payload too large"


class OutputTooLarge(PayloadTooLarge):
    title = "Output too large"


class TooManyRequests(LeptonicError):
    status = 429
    title = "Too many requests"


class Unavailable(LeptonicError):
    status = 503
    title = "Service unavailable"


class BackendError(LeptonicError):
    status = 500
    title = "Runtime backend error"


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """A problem document for places that have no exception object (proxies, runners)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    body.update(extra)
    return body
