"""``leptonic simulate schedule`` through typer's CliRunner: JSON and table output, the
plot's missing extra, and bad input as one ``error:`` line with a non-zero exit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from leptonic.cli.main import app

NODES = """sn,cpu_milli,memory_mib,gpu,model
node-a,32000,262144,0,
node-b,32000,262144,0,
node-c,96000,786432,8,V100M32
"""
HEADER = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
          "creation_time,deletion_time,scheduled_time\n")
PODS = HEADER + """pod-0,4000,8192,0,0,,LS,Running,0,36000,0
pod-1,4000,8192,0,0,,LS,Running,10,36000,10
pod-2,8000,16384,1,500,V100M32,LS,Running,20,30000,20
pod-3,8000,16384,2,1000,,BE,Running,30,20000,
"""
KEYS = {"policy", "pods", "placed", "unscheduled", "max_wait_s", "energy_kwh",
        "mean_active_nodes", "gpu_fragmentation", "wall_s", "scheduler_s", "mean_wait_s"}


@pytest.fixture
def trace(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "pods.csv").write_text(PODS)
    return f"alibaba:{tmp_path / 'nodes.csv'}", f"alibaba:{tmp_path / 'pods.csv'}"


def simulate(*args: str) -> Any:
    return CliRunner().invoke(app, ["simulate", "schedule", *args], catch_exceptions=False)


def one_error_line(result: Any) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return str(lines[0])


def test_json_for_one_policy_is_an_object(trace: tuple[str, str]) -> None:
    nodes, pods = trace
    res = simulate("--nodes", nodes, "--pods", pods, "--policy", "energy", "-o", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) >= KEYS
    assert (doc["policy"], doc["pods"], doc["placed"], doc["unscheduled"]) == ("energy", 4, 4, 0)
    assert "series" not in doc


def test_json_for_several_policies_is_a_list_in_order(trace: tuple[str, str]) -> None:
    nodes, pods = trace
    res = simulate("--nodes", nodes, "--pods", pods, "-p", "spread,pack", "-p", "energy",
                   "-p", "pack", "--standby-after", "60", "--series", "--output", "json")
    assert res.exit_code == 0, res.stderr
    docs = json.loads(res.stdout)
    assert [d["policy"] for d in docs] == ["spread", "pack", "energy"]
    assert all(d["standby_after_s"] == 60 for d in docs)
    assert all(len(d["series"]["power_w"]) > 1 for d in docs)
    assert all((d["pods"], d["placed"]) == (4, 4) for d in docs)


def test_table_for_people_with_all_policies(trace: tuple[str, str]) -> None:
    nodes, pods = trace
    res = simulate("--nodes", nodes, "--pods", pods, "--no-standby", "--limit", "2")
    assert res.exit_code == 0, res.stderr
    assert "ENERGY kWh" in res.stdout
    for policy in ("spread", "pack", "ray-hybrid", "energy"):
        assert policy in res.stdout


def test_plot_without_matplotlib_says_what_to_install(
        trace: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    nodes, pods = trace
    res = simulate("--nodes", nodes, "--pods", pods, "-p", "pack", "--plot",
                   str(tmp_path / "x.png"))
    assert "pip install 'leptonic[sim]'" in one_error_line(res)


UNTIMED = """name,cpu_milli,memory_mib,num_gpu,gpu_milli
pod-0,4000,8192,0,0
pod-3,8000,16384,2,1000
pod-9,8000,16384,2,1000
"""


def test_a_sample_without_times_is_a_fill_unless_it_borrows_times(
        trace: tuple[str, str], tmp_path: Path) -> None:
    nodes, pods = trace
    untimed = tmp_path / "multigpu.csv"
    untimed.write_text(UNTIMED)
    fill = simulate("--nodes", nodes, "--pods", f"alibaba:{untimed}", "-p", "energy",
                    "-o", "json")
    assert fill.exit_code == 0, fill.stderr
    assert "has no times, so it is replayed as a fill" in fill.stderr
    assert "--times-from" in fill.stderr
    # a fill: arrivals 1 s apart, nothing leaves, the replay ends at the last arrival
    assert json.loads(fill.stdout)["horizon_s"] == 2
    timed = simulate("--nodes", nodes, "--pods", f"alibaba:{untimed}", "--times-from", pods,
                     "-p", "energy", "-o", "json")
    assert timed.exit_code == 0, timed.stderr
    assert timed.stderr == ""
    doc = json.loads(timed.stdout)
    # pod-0 and pod-3 keep the default's times (by name), pod-9 takes pod-3's (its
    # shape): the last departure is pod-0's at 36,000 s
    assert (doc["pods"], doc["placed"], doc["unscheduled"], doc["horizon_s"]) == \
        (3, 3, 0, 36000)


def test_times_from_a_timed_sample_changes_nothing(trace: tuple[str, str]) -> None:
    nodes, pods = trace
    plain = simulate("--nodes", nodes, "--pods", pods, "-p", "pack", "-o", "json")
    lent = simulate("--nodes", nodes, "--pods", pods, "--times-from", pods, "-p", "pack",
                    "-o", "json")
    assert lent.exit_code == 0
    assert "has times of its own; --times-from is not used" in lent.stderr
    drop = {"wall_s", "scheduler_s"}
    assert {k: v for k, v in json.loads(lent.stdout).items() if k not in drop} == \
        {k: v for k, v in json.loads(plain.stdout).items() if k not in drop}


def test_times_from_a_sample_without_times_is_one_line(trace: tuple[str, str],
                                                       tmp_path: Path) -> None:
    nodes, _ = trace
    untimed = tmp_path / "multigpu.csv"
    untimed.write_text(UNTIMED)
    line = one_error_line(simulate("--nodes", nodes, "--pods", f"alibaba:{untimed}",
                                   "--times-from", f"alibaba:{untimed}"))
    assert f"{untimed}: has no times to lend" in line


def test_missing_column_is_one_line_naming_file_and_column(tmp_path: Path,
                                                          trace: tuple[str, str]) -> None:
    nodes, _ = trace
    bad = tmp_path / "bad.csv"
    bad.write_text("name,cpu_milli,memory_mib,num_gpu,creation_time\np,1000,1024,0,0\n")
    line = one_error_line(simulate("--nodes", nodes, "--pods", f"alibaba:{bad}"))
    assert str(bad) in line
    assert "missing column gpu_milli" in line


@pytest.mark.parametrize(("args", "words"), [
    (["--pods", "borg:pods.csv"], ["pods.csv", "unknown trace format 'borg'"]),
    (["--pods", "alibaba:/no/such/pods.csv"], ["/no/such/pods.csv", "no such file"]),
    (["--policy", "greedy"], ["unknown policy 'greedy'"]),
])
def test_bad_input_is_one_line(trace: tuple[str, str], args: list[str],
                               words: list[str]) -> None:
    nodes, pods = trace
    base = {"--nodes": nodes, "--pods": pods}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    line = one_error_line(simulate(*[x for kv in base.items() for x in kv]))
    for word in words:
        assert word in line
