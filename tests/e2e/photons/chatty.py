"""A photon that writes log lines on demand (for the log rotation and search tests)."""

from leptonic import Photon, handler


class Chatty(Photon):
    @handler
    def say(self, text: str, n: int = 1) -> int:
        for i in range(n):
            print(f"{text} line {i} " + "x" * 80, flush=True)
        return n
