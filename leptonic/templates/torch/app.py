"""A PyTorch model served with dynamic batching: concurrent samples are stacked into one
forward pass. The model here is a small fixed network; load your own in ``init``
(``torch.load``/``torch.jit.load`` of a file bundled next to this one)."""

from __future__ import annotations

from leptonic import Photon, handler


class Model(Photon):
    """Scores 4-feature samples with a two-layer network."""

    requirements = ["torch"]

    def init(self) -> None:
        import torch

        torch.manual_seed(0)                       # the same weights in every replica
        self.torch = torch
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                       torch.nn.Linear(8, 2), torch.nn.Softmax(dim=-1))
        self.net.eval()

    @handler(batch=64, max_wait_ms=5)
    def predict(self, features: list[list[float]]) -> list[list[float]]:
        """Class probabilities of each sample (each client sends one list of 4 floats)."""
        with self.torch.inference_mode():
            out = self.net(self.torch.tensor(features, dtype=self.torch.float32))
        return [[float(p) for p in row] for row in out]
