"""What the dashboard uses of the platform: the store it reads, the observability service
whose series and energy it shows, and the token verifier and login limits behind its
sessions. ``leptonic.platform.Platform`` is one; so is any stand-in with these four."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from leptonic.auth.ratelimit import FailureWindow
    from leptonic.auth.tokens import TokenVerifier
    from leptonic.observe.service import Observability
    from leptonic.store.store import Store


class DashboardPlatform(Protocol):
    store: Store
    observe: Observability
    verifier: TokenVerifier
    login_limits: dict[str, FailureWindow]
