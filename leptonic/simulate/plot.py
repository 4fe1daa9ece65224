"""A PNG of replays side by side: active nodes and power over time, one line per policy.

matplotlib is an optional dependency (``pip install 'leptonic[sim]'``), imported only
when a plot is drawn, with the Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from leptonic.errors import InvalidInput
from leptonic.simulate.schedule import Result

_DAY_S = 86400.0


class PlotUnavailable(InvalidInput):
    """matplotlib is not installed."""


def plot(results: Sequence[Result], path: Path | str, title: str = "") -> Path:
    """Draw ``results`` (each with its series) into the PNG file ``path``; returns it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise PlotUnavailable("a plot needs matplotlib: pip install 'leptonic[sim]' "
                              "(or pip install 'matplotlib>=3.8')") from None
    out = Path(path)
    span = max((r.horizon_s for r in results), default=0.0)
    scale, unit = (_DAY_S, "days") if span >= 2 * _DAY_S else (1.0, "s")
    fig, (nodes_ax, power_ax) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    try:
        for r in results:
            t = [(x - r.series.t_s[0]) / scale for x in r.series.t_s] if r.series.t_s else []
            label = f"{r.policy} ({r.energy_kwh:,.0f} kWh)"
            nodes_ax.step(t, r.series.active_nodes, where="post", label=label, linewidth=1)
            power_ax.step(t, [w / 1000 for w in r.series.power_w], where="post",
                          label=label, linewidth=1)
        # log scale: the whole cluster awake before its first standby, and a handful of
        # nodes later, both stay readable
        nodes_ax.set_ylabel("active nodes (log)")
        power_ax.set_ylabel("power, kW (log)")
        power_ax.set_xlabel(f"trace time ({unit})")
        for ax in (nodes_ax, power_ax):
            ax.set_yscale("log")
            plain = FuncFormatter(lambda y, _: f"{y:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(FuncFormatter(
                lambda y, _: f"{y:g}" if f"{y:g}"[0] in "25" else ""))
            ax.grid(True, which="both", alpha=0.3)
        nodes_ax.legend(loc="upper right", fontsize="small")
        if title:
            nodes_ax.set_title(title)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
