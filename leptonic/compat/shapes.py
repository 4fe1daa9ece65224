"""Lepton's resource shapes (``deployment_template["resource_shape"]``) as leptonic resources.

A classic photon names the machine it needs, e.g. ``"gpu.a10"``; leptonai 0.27.3 accepts
the names of ``leptonai.config.VALID_SHAPES``, listed here. leptonic has no shapes: a
deployment asks for ``Resources(cpu, memory_mb, gpu)`` and may restrict the GPU model
(``PlacementSpec.gpu_models``). A photon's shape becomes the default of the deployments
created from it when the request gives no ``resources`` (and no ``placement.gpu_models``).

The SDK never said how many cores or how much memory a shape holds (the hosted cloud
decided), so the figures below are leptonic's: the CPU shapes double from 1 core / 4 GiB;
a GPU shape asks a modest share of CPU and memory per GPU (the GPU is what it is about),
so it fits the nodes that hold those GPUs. GPU models are named as Ray reports them
(``accelerator_type``), the plain family name included, so ``gpu.a100-80gb`` also accepts
a node that says only ``A100``.
"""

from __future__ import annotations

from dataclasses import dataclass

from leptonic.core.models import Resources

__all__ = ["SHAPES", "Shape", "shape"]

_GIB = 1024


@dataclass(frozen=True)
class Shape:
    """What one replica of a photon of this shape asks for."""

    cpu: float
    memory_mb: int
    gpu: int = 0
    gpu_models: tuple[str, ...] = ()   # any of these; empty: any (or none)

    def resources(self) -> Resources:
        return Resources(cpu=self.cpu, memory_mb=self.memory_mb, gpu=self.gpu)


def _gpus(n: int, models: tuple[str, ...], cpu: float, memory_gib: int) -> Shape:
    """``n`` GPUs of ``models``, with ``cpu`` cores and ``memory_gib`` GiB for each."""
    return Shape(cpu=cpu * n, memory_mb=memory_gib * _GIB * n, gpu=n, gpu_models=models)


_A10 = ("A10", "A10G")
_A100_40 = ("A100-40G", "A100")
_A100_80 = ("A100-80G", "A100")
_H100 = ("H100",)

#: every shape leptonai 0.27.3 accepts (``leptonai.config.VALID_SHAPES``), in its order
SHAPES: dict[str, Shape] = {
    "cpu.small": Shape(cpu=1, memory_mb=4 * _GIB),
    "cpu.medium": Shape(cpu=2, memory_mb=8 * _GIB),
    "cpu.large": Shape(cpu=4, memory_mb=16 * _GIB),
    "gpu.a10": _gpus(1, _A10, 4, 16),
    "gpu.a10.6xlarge": _gpus(1, _A10, 24, 96),     # as AWS g5.6xlarge: 24 vCPU, 96 GiB
    **{f"gpu.{p}a100-40gb": _gpus(n, _A100_40, 8, 64)
       for n, p in ((1, ""), (2, "2x"), (4, "4x"), (8, "8x"))},
    **{f"gpu.{p}a100-80gb": _gpus(n, _A100_80, 8, 96)
       for n, p in ((1, ""), (2, "2x"), (4, "4x"), (8, "8x"))},
    **{f"gpu.{p}h100-sxm": _gpus(n, _H100, 16, 128)
       for n, p in ((1, ""), (2, "2x"), (4, "4x"), (8, "8x"))},
}


def shape(name: str) -> Shape:
    """The shape called ``name`` (as written, any case); ValueError naming the valid ones."""
    found = SHAPES.get(name.strip().lower())
    if found is None:
        raise ValueError(f"unknown resource_shape {name!r}; leptonic knows the shapes of "
                         f"leptonai 0.27.3: {', '.join(SHAPES)}")
    return found
