"""A counter photon written for the classic leptonai API (leptonai 0.27), unchanged."""
# ruff: noqa: UP006, UP035  (written as leptonai 0.27-era photons were)

from typing import Tuple

from leptonai.photon import HTTPException, Photon


class Counter(Photon):
    requirement_dependency = []
    deployment_template = {
        "resource_shape": "cpu.small",
        "env": {"COUNTER_START": "0"},
        "secret": [],
    }

    def init(self):
        self.counter = int(__import__("os").environ["COUNTER_START"])

    @Photon.handler("add")
    def add(self, x: int) -> int:
        self.counter += x
        return self.counter

    @Photon.handler("sub")
    def sub(self, x: int) -> int:
        if x < 0:
            raise HTTPException(status_code=400, detail="x must not be negative")
        self.counter -= x
        return self.counter

    @Photon.handler(method="GET")
    def value(self) -> int:
        return self.counter

    @Photon.handler(method="GET")
    def divmod(self, a: int, b: int) -> Tuple[int, int]:
        return a // b, a % b

    @Photon.handler
    def reset(self) -> None:
        self.counter = 0


if __name__ == "__main__":
    Counter().launch()
