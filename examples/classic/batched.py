"""A classic photon with a batched handler: written for one item, called with lists."""
# ruff: noqa: UP006, UP035  (written as leptonai 0.27-era photons were)

from typing import List

from leptonai.photon import Photon


class Doubler(Photon):
    handler_max_concurrency = 4

    def init(self):
        self.batches: List[int] = []

    @Photon.handler(max_batch_size=8, max_wait_time=0.05)
    def double(self, x: int) -> int:
        # leptonai passes a list when the call is batched
        if isinstance(x, list):
            self.batches.append(len(x))
            return [2 * v for v in x]
        return 2 * x

    @Photon.handler(method="GET")
    def largest_batch(self) -> int:
        return max(self.batches, default=0)


if __name__ == "__main__":
    Doubler().launch()
