"""An echo photon: the smallest service leptonic runs. Replace the handlers with yours."""

from __future__ import annotations

from leptonic import Photon, handler


class Echo(Photon):
    """Answers with what it is sent."""

    requirements = []                   # pip requirements, e.g. ["numpy>=1.26"]

    def init(self) -> None:
        # runs once per replica before it serves: load models here, not at import time
        self.calls = 0

    @handler
    def echo(self, text: str) -> str:
        """The text, unchanged."""
        self.calls += 1
        return text

    @handler
    def info(self) -> dict[str, int]:
        """How many echoes this replica has answered."""
        return {"calls": self.calls}
