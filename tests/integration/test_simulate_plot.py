"""``leptonic simulate schedule --plot``: a PNG is written. Here, not in the unit tier:
matplotlib asks fontconfig (``fc-list``, a process) for the system's fonts the first time
it runs on a machine."""

from __future__ import annotations

from pathlib import Path

from tests.unit.cli.test_simulate_cli import NODES, PODS, simulate


def test_plot_is_written(tmp_path: Path) -> None:
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "pods.csv").write_text(PODS)
    png = tmp_path / "out" / "sim.png"
    png.parent.mkdir()
    res = simulate("--nodes", f"alibaba:{tmp_path / 'nodes.csv'}", "--pods",
                   f"alibaba:{tmp_path / 'pods.csv'}", "-p", "all", "--plot", str(png))
    assert res.exit_code == 0, res.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: {png}" in res.stderr
