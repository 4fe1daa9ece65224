"""Power models: watts drawn by a node's CPUs and GPUs at a given utilisation.

Pure. A model is 11 points, the watts at 0%, 10%, ..., 100% utilisation, read between
points by linear interpolation: the SPECpower shape CloudSim's ``PowerModelSpecPower``
uses. A linear model (idle W, max W) is the same with evenly spaced points. A node's power
is its CPU model at its CPU utilisation plus one GPU model per GPU at that GPU's
utilisation; a node in standby draws ``standby_w`` and takes ``wake_s`` (drawing its idle
power) to come back.

Utilisation here is what the scheduler knows: the share of a resource allocated to work
(the scheduler's view, as in CloudSim's allocation-based models); where a machine
measures its energy (RAPL), the live accounting uses the measurement instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

POINTS = 11   # 0%, 10%, ..., 100%


class PowerModelError(ValueError):
    """A power table that cannot be right (negative watts, not monotonic, wrong length)."""


@dataclass(frozen=True)
class PowerModel:
    """Watts at 0, 10, ..., 100% utilisation; ``source`` says where the figures come from."""

    points: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        validate(self.points)

    @classmethod
    def linear(cls, idle_w: float, max_w: float, source: str = "") -> PowerModel:
        if idle_w > max_w:
            raise PowerModelError(f"idle power {idle_w:g} W is above max power {max_w:g} W")
        step = (max_w - idle_w) / (POINTS - 1)
        return cls(tuple(idle_w + step * i for i in range(POINTS)), source)

    @property
    def idle_w(self) -> float:
        return self.points[0]

    @property
    def max_w(self) -> float:
        return self.points[-1]

    def watts(self, utilisation: float) -> float:
        """Power at ``utilisation`` (0..1, clamped), interpolated between the points."""
        u = min(max(utilisation, 0.0), 1.0) * (POINTS - 1)
        low = min(int(u), POINTS - 2)
        return self.points[low] + (self.points[low + 1] - self.points[low]) * (u - low)

    def to_dict(self) -> dict[str, object]:
        return {"points": list(self.points), "source": self.source}


def validate(points: Sequence[float]) -> None:
    """Raise :class:`PowerModelError` naming the first point that is wrong."""
    if len(points) != POINTS:
        raise PowerModelError(f"a power table has {POINTS} points (0%, 10%, ..., 100%), "
                              f"not {len(points)}")
    for i, watts in enumerate(points):
        if not watts >= 0:    # also NaN
            raise PowerModelError(f"point {i} ({i * 10}%) is {watts:g} W: watts cannot be "
                                  "negative")
        if i and watts < points[i - 1]:
            raise PowerModelError(
                f"point {i} ({i * 10}%) is {watts:g} W, below point {i - 1} "
                f"({(i - 1) * 10}%) at {points[i - 1]:g} W: power must not fall as "
                "utilisation rises")


# -- defaults, with where they come from -------------------------------------------------

#: SPECpower_ssj2008 results as CloudSim ships them (PowerModelSpecPowerHpProLiantMl110G5Xeon3075)
HP_ML110_G5 = PowerModel((93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0,
                          133.0, 135.0),
                         "SPECpower: HP ProLiant ML110 G5 (CloudSim PowerModelSpecPower"
                         "HpProLiantMl110G5Xeon3075)")
#: CloudSim's PowerModelSpecPowerIbmX3550XeonX5675 (a two-socket datacenter server)
IBM_X3550_M3 = PowerModel((58.4, 98.0, 109.0, 118.0, 128.0, 140.0, 153.0, 170.0, 189.0,
                           205.0, 222.0),
                          "SPECpower: IBM x3550 M3, Xeon X5675 (CloudSim PowerModelSpec"
                          "PowerIbmX3550XeonX5675)")

#: per GPU model: (idle W, max W). Max is the board power (TDP) in the vendor's data sheet;
#: idle is what nvidia-smi reports for an idle board with its memory clocked up.
GPU_WATTS: Mapping[str, tuple[float, float, str]] = {
    "A100": (50.0, 400.0, "NVIDIA A100 SXM4 data sheet: 400 W max; ~50 W idle"),
    "H100": (70.0, 700.0, "NVIDIA H100 SXM5 data sheet: 700 W max; ~70 W idle"),
    "H200": (75.0, 700.0, "NVIDIA H200 SXM data sheet: 700 W max; ~75 W idle"),
    "V100": (40.0, 300.0, "NVIDIA V100 SXM2 data sheet: 300 W max; ~40 W idle"),
    "V100M16": (40.0, 300.0, "NVIDIA V100 SXM2 16 GB data sheet: 300 W max; ~40 W idle"),
    "V100M32": (40.0, 300.0, "NVIDIA V100 SXM2 32 GB data sheet: 300 W max; ~40 W idle"),
    "P100": (30.0, 250.0, "NVIDIA Tesla P100 PCIe data sheet: 250 W max; ~30 W idle"),
    "T4": (10.0, 70.0, "NVIDIA T4 data sheet: 70 W max; ~10 W idle"),
    "A10": (20.0, 150.0, "NVIDIA A10 data sheet: 150 W max; ~20 W idle"),
    "L4": (12.0, 72.0, "NVIDIA L4 data sheet: 72 W max; ~12 W idle"),
    # the Alibaba GPU trace (v2023) hides two models as G2 and G3; treated as A100-class
    "G2": (50.0, 400.0, "unnamed model G2 of the Alibaba GPU trace: assumed A100-class"),
    "G3": (50.0, 400.0, "unnamed model G3 of the Alibaba GPU trace: assumed A100-class"),
}
#: a GPU whose model is not known: an A100's figures (the commonest datacenter GPU)
UNKNOWN_GPU = "A100"
#: a CPU node of a cluster: the IBM x3550 M3 (two sockets); per 32 cores, scaled by cores
CPU_CORES_PER_SERVER = 32
#: ACPI S3 (suspend to RAM) draws a few watts; Wake-on-LAN resume of a server ~30-60 s
STANDBY_W = 10.0
WAKE_S = 45.0


def gpu_power(model: str | None) -> PowerModel:
    """The default model of one GPU of ``model`` (matched without case; ``A100-80GB`` ->
    ``A100``)."""
    name = (model or UNKNOWN_GPU).upper()
    key = name if name in GPU_WATTS else next(
        (k for k in sorted(GPU_WATTS, key=len, reverse=True) if name.startswith(k)),
        UNKNOWN_GPU)
    idle, peak, source = GPU_WATTS[key]
    return PowerModel.linear(idle, peak, source)


def cpu_power(cores: float) -> PowerModel:
    """The default CPU model of a node with ``cores``: IBM x3550 M3 per 32 cores."""
    scale = max(cores, 1.0) / CPU_CORES_PER_SERVER
    return PowerModel(tuple(p * scale for p in IBM_X3550_M3.points),
                      f"{IBM_X3550_M3.source}, scaled to {cores:g} cores")


@dataclass(frozen=True)
class NodePower:
    """How a node draws power: its CPUs, each of its GPUs, standby and waking."""

    cpu: PowerModel
    gpu: PowerModel | None = None     # per GPU; None when the node has no GPU
    gpus: int = 0
    standby_w: float = STANDBY_W
    wake_s: float = WAKE_S
    source: str = "model"             # "model" | "override" | "rapl" (live measurement)
    extra: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def default(cls, cores: float, gpus: int = 0, gpu_model: str | None = None) -> NodePower:
        return cls(cpu_power(cores), gpu_power(gpu_model) if gpus else None, int(gpus))

    def idle_w(self) -> float:
        return self.cpu.idle_w + (self.gpu.idle_w * self.gpus if self.gpu else 0.0)

    def max_w(self) -> float:
        return self.cpu.max_w + (self.gpu.max_w * self.gpus if self.gpu else 0.0)

    def watts(self, cpu_util: float, gpu_utils: Iterable[float] = ()) -> float:
        """Power of the running node at these utilisations (one per GPU; missing = idle)."""
        out = self.cpu.watts(cpu_util)
        if self.gpu is not None:
            utils = list(gpu_utils)[: self.gpus]
            out += sum(self.gpu.watts(u) for u in utils)
            out += self.gpu.idle_w * (self.gpus - len(utils))
        return out

    def to_dict(self) -> dict[str, object]:
        return {"cpu": self.cpu.to_dict(), "gpu": self.gpu.to_dict() if self.gpu else None,
                "gpus": self.gpus, "standby_w": self.standby_w, "wake_s": self.wake_s,
                "source": self.source, "idle_w": round(self.idle_w(), 3),
                "max_w": round(self.max_w(), 3)}


# -- a node's power: its override or the defaults (the energy accounting's section) -------

#: the keys of a node's power override (what ``PUT /nodes/{name}/power`` stores)
OVERRIDE_KEYS = ("idle_w", "max_w", "table", "gpu_idle_w", "gpu_max_w", "gpu_table",
                 "standby_w", "wake_s")


class PoweredNode(Protocol):
    """What :func:`node_power` reads of a node (``core.models.Node`` has it)."""

    @property
    def capacity(self) -> Mapping[str, float]: ...

    @property
    def gpu_model(self) -> str | None: ...

    @property
    def power(self) -> Mapping[str, Any] | None: ...


def _override_model(o: Mapping[str, Any], prefix: str, what: str) -> PowerModel | None:
    idle, peak, table = o.get(f"{prefix}idle_w"), o.get(f"{prefix}max_w"), o.get(
        f"{prefix}table")
    if table is not None and (idle is not None or peak is not None):
        raise PowerModelError(f"give the {what} power as a table or as idle and max watts, "
                              "not both")
    if table is not None:
        try:
            points = tuple(float(w) for w in table)
        except (TypeError, ValueError) as exc:
            raise PowerModelError(f"the {what} table must be {POINTS} numbers (watts at "
                                  "0%, 10%, ..., 100%)") from exc
        try:
            return PowerModel(points, "override")
        except PowerModelError as exc:
            raise PowerModelError(f"{what} table: {exc}") from None
    if (idle is None) != (peak is None):
        raise PowerModelError(f"give the {what} idle and max watts together (or a table)")
    if idle is None or peak is None:
        return None
    for name, watts in ((f"{what} idle", idle), (f"{what} max", peak)):
        if not float(watts) >= 0:
            raise PowerModelError(f"{name} power is {float(watts):g} W: watts cannot be "
                                  "negative")
    try:
        return PowerModel.linear(float(idle), float(peak), "override")
    except PowerModelError as exc:
        raise PowerModelError(f"{what}: {exc}") from None


def check_override(override: Mapping[str, Any]) -> dict[str, Any]:
    """The override with only its given keys, or :class:`PowerModelError` saying what is
    wrong (the point of a table that is negative or falls, idle above max, ...)."""
    unknown = sorted(set(override) - set(OVERRIDE_KEYS))
    if unknown:
        raise PowerModelError(f"unknown power setting(s) {', '.join(unknown)}; settings "
                              f"are {', '.join(OVERRIDE_KEYS)}")
    out = {k: override[k] for k in OVERRIDE_KEYS if override.get(k) is not None}
    if not out:
        raise PowerModelError("nothing to set: give CPU or GPU watts, standby watts or a "
                              "wake-up time (a reset goes back to the defaults)")
    _override_model(out, "", "CPU")
    _override_model(out, "gpu_", "GPU")
    for key, unit in (("standby_w", "W"), ("wake_s", "s")):
        if key in out and not float(out[key]) >= 0:
            raise PowerModelError(f"{key} is {float(out[key]):g} {unit}: it cannot be "
                                  "negative")
    return out


def node_power(node: PoweredNode) -> NodePower:
    """How ``node`` draws power: the defaults for its cores, GPUs and GPU model, with its
    override (``node.power``) on top; ``source`` is ``override`` when the override sets
    the CPU or GPU watts."""
    cores = float(node.capacity.get("cpu", 0.0))
    gpus = int(node.capacity.get("gpu", 0.0))
    base = NodePower.default(cores, gpus, node.gpu_model)
    o = node.power or {}
    if not o:
        return base
    cpu = _override_model(o, "", "CPU")
    gpu = _override_model(o, "gpu_", "GPU")
    return NodePower(cpu or base.cpu, (gpu or base.gpu) if gpus else None, gpus,
                     float(o.get("standby_w", base.standby_w)),
                     float(o.get("wake_s", base.wake_s)),
                     "override" if cpu is not None or gpu is not None else base.source)
