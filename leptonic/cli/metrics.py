"""How a time series prints for people: one row per metric with a sparkline."""

from __future__ import annotations

from leptonic.cli._output import table
from leptonic.core.observe import SeriesResult

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None], width: int = 40) -> str:
    """``values`` squeezed into ``width`` characters (gaps: a space)."""
    if not values:
        return ""
    step = max(1, -(-len(values) // width))
    cells: list[float | None] = []
    for i in range(0, len(values), step):
        chunk = [v for v in values[i:i + step] if v is not None]
        cells.append(sum(chunk) / len(chunk) if chunk else None)
    present = [c for c in cells if c is not None]
    if not present:
        return " " * len(cells)
    lo, hi = min(present), max(present)
    span = (hi - lo) or 1.0
    return "".join(" " if c is None else _BARS[int((c - lo) / span * (len(_BARS) - 1))]
                   for c in cells)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def series_table(result: SeriesResult) -> object:
    rows = []
    for m in result.metrics:
        values = result.values.get(m, [])
        present = [v for v in values if v is not None]
        last = next((v for v in reversed(values) if v is not None), None)
        rows.append((m, _num(last), _num(min(present) if present else None),
                     _num(sum(present) / len(present) if present else None),
                     _num(max(present) if present else None), sparkline(values)))
    res = "raw" if result.resolution_s == 0 else f"{result.resolution_s}s"
    title = f"{result.series}: {len(result.t)} points ({res} resolution)"
    return table(["METRIC", "LAST", "MIN", "MEAN", "MAX", "TREND"], rows, title=title)
