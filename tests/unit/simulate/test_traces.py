"""Trace readers: good files (plain and gzip), every sample's columns, and bad input as
one line naming the file and the line or column."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from leptonic.simulate import traces
from leptonic.simulate.traces import TraceError, TraceFormat, TraceNode, TracePod

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "traces" / "alibaba-gpu-v2023"

NODES = """sn,cpu_milli,memory_mib,gpu,model
openb-node-0000,32000,262144,0,
openb-node-0001,96000,786432,8,V100M32
"""
HEADER = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
          "creation_time,deletion_time,scheduled_time\n")
PODS = HEADER + """openb-pod-0001,6000,12288,1,460,,LS,Running,427061,12902960,427061
openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
openb-pod-0002,16000,32768,1,1000,V100M16|V100M32,LS,Running,9967058,9968575,9967063
openb-pod-0003,88000,327680,8,1000,,Burstable,Pending,100,160,
openb-pod-0004,2000,4096,0,0,,BE,Running,200,,
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_node_list(tmp_path: Path) -> None:
    path = write(tmp_path, "nodes.csv", NODES)
    assert traces.read_nodes(f"alibaba:{path}") == [
        TraceNode("openb-node-0000", 32.0, 262144.0, 0, None),
        TraceNode("openb-node-0001", 96.0, 786432.0, 8, "V100M32"),
    ]


def test_pod_list_sorted_by_creation_with_shares_models_and_durations(tmp_path: Path) -> None:
    pods = traces.read_pods(f"alibaba:{write(tmp_path, 'pods.csv', PODS)}")
    assert [p.name for p in pods] == ["openb-pod-0000", "openb-pod-0003", "openb-pod-0004",
                                      "openb-pod-0001", "openb-pod-0002"]
    by = {p.name: p for p in pods}
    assert by["openb-pod-0001"].gpu == pytest.approx(0.46)       # a share of one GPU
    assert by["openb-pod-0000"].gpu == 1.0
    assert by["openb-pod-0003"].gpu == 8.0
    assert by["openb-pod-0004"].gpu == 0.0
    assert by["openb-pod-0002"].gpu_models == ("V100M16", "V100M32")
    assert by["openb-pod-0000"].gpu_models == ()
    # duration: deletion minus scheduled time; never scheduled: minus creation time
    assert by["openb-pod-0002"].duration_s == 9968575 - 9967063
    assert by["openb-pod-0003"].scheduled_s is None
    assert by["openb-pod-0003"].duration_s == 60
    assert by["openb-pod-0004"].deletion_s is None
    assert by["openb-pod-0004"].duration_s is None               # runs to the end
    assert by["openb-pod-0000"] == TracePod(
        "openb-pod-0000", 12.0, 16384.0, 1, 1000, (), "LS", "Running", 0.0, 12537496.0, 0.0)


def test_gzip_reads_like_plain(tmp_path: Path) -> None:
    plain = traces.read_pods(f"alibaba:{write(tmp_path, 'pods.csv', PODS)}")
    packed = traces.read_pods(f"alibaba:{write(tmp_path, 'pods.csv.gz', PODS)}")
    assert packed == plain


def test_sample_without_times_arrives_in_file_order_and_stays(tmp_path: Path) -> None:
    text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np-a,1000,1024,2,1000\np-b,500,512,1,250\n"
    pods = traces.read_pods(f"alibaba:{write(tmp_path, 'multigpu.csv', text)}")
    assert [(p.name, p.creation_s, p.duration_s, p.gpu) for p in pods] == [
        ("p-a", 0.0, None, 2.0), ("p-b", 1.0, None, 0.25)]


UNTIMED = """name,cpu_milli,memory_mib,num_gpu,gpu_milli
openb-pod-0003,88000,327680,8,1000
openb-pod-0000,12000,16384,1,1000
openb-pod-9000,88000,327680,8,1000
openb-pod-9001,88000,327680,8,1000
"""
LENDER = HEADER + """openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
openb-pod-0003,88000,327680,8,1000,,Burstable,Pending,100,160,
openb-pod-0005,88000,327680,8,1000,,LS,Running,50,500,55
"""


def test_a_sample_without_times_borrows_them_by_name_then_by_shape(tmp_path: Path) -> None:
    pods = traces.read_pods(f"alibaba:{write(tmp_path, 'multigpu.csv', UNTIMED)}")
    assert not any(p.timed for p in pods)
    lender = traces.read_pods(f"alibaba:{write(tmp_path, 'default.csv', LENDER)}")
    out = traces.borrow_times(pods, lender)
    assert all(p.timed for p in out)
    # pods named in the lender take their own times; the added 8-GPU pods take the
    # times of the lender's 8-GPU pods in turn, in name order (0003, then 0005)
    # (sorted by the new creation time; file order among equal times)
    assert [(p.name, p.creation_s, p.scheduled_s, p.deletion_s, p.duration_s)
            for p in out] == [
        ("openb-pod-0000", 0.0, 0.0, 12537496.0, 12537496.0),
        ("openb-pod-9001", 50.0, 55.0, 500.0, 445.0),
        ("openb-pod-0003", 100.0, None, 160.0, 60.0),
        ("openb-pod-9000", 100.0, None, 160.0, 60.0),
    ]
    assert [p.gpu for p in out] == [1.0, 8.0, 8.0, 8.0]     # shapes are the sample's own


def test_pods_with_times_keep_them(tmp_path: Path) -> None:
    timed = traces.read_pods(f"alibaba:{write(tmp_path, 'pods.csv', PODS)}")
    lender = traces.read_pods(f"alibaba:{write(tmp_path, 'default.csv', LENDER)}")
    assert traces.borrow_times(timed, lender) == timed


def test_borrowing_from_a_sample_without_times_or_without_the_shape(tmp_path: Path) -> None:
    pods = traces.read_pods(f"alibaba:{write(tmp_path, 'multigpu.csv', UNTIMED)}")
    with pytest.raises(TraceError) as exc:
        traces.borrow_times(pods, pods, sample="multigpu.csv", source="multigpu.csv")
    assert one_line(exc).startswith("multigpu.csv: has no times to lend")
    lender = traces.read_pods(f"alibaba:{write(tmp_path, 'default.csv', LENDER)}")
    odd_csv = write(tmp_path, "odd.csv", UNTIMED + "p-x,4000,8192,4,1000\n")
    odd = traces.read_pods(f"alibaba:{odd_csv}")
    with pytest.raises(TraceError) as exc:
        traces.borrow_times(odd, lender, sample="odd.csv", source="default.csv")
    assert one_line(exc) == ("odd.csv: pod p-x (4 CPU, 8192 MiB, 4 GPU) is not in "
                             "default.csv and no pod there has its shape to lend it times")


def test_the_project_multigpu_sample_is_the_default_list_plus_multi_gpu_pods() -> None:
    """The reading borrow_times relies on, checked on the samples themselves."""
    default = traces.read_pods(f"alibaba:{SAMPLES / 'openb_pod_list_default.csv.gz'}")
    multi = traces.read_pods(f"alibaba:{SAMPLES / 'openb_pod_list_multigpu50.csv.gz'}")
    shape = {p.name: (p.cpu, p.memory_mib, p.num_gpu, p.gpu_milli) for p in default}
    added = [p for p in multi if p.name not in shape]
    assert all(shape[p.name] == (p.cpu, p.memory_mib, p.num_gpu, p.gpu_milli)
               for p in multi if p.name in shape)
    assert len(multi) - len(added) == len(default) == 8152
    assert {p.num_gpu for p in added} == {2, 4, 8}
    timed = traces.borrow_times(multi, default)
    assert len(timed) == 9061
    assert sum(p.duration_s is not None for p in timed) == \
        sum(p.duration_s is not None for p in default) + len(added)


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("openb_pod_list_*")))
def test_every_sample_in_the_project_reads(sample: str) -> None:
    pods = traces.read_pods(f"alibaba:{SAMPLES / sample}")
    assert len(pods) > 7000
    assert all(p.cpu >= 0 and p.gpu >= 0 for p in pods)


def test_the_project_node_list_reads() -> None:
    nodes = traces.read_nodes(f"alibaba:{SAMPLES / 'openb_node_list_all_node.csv.gz'}")
    assert len(nodes) == 1523
    assert sum(n.gpus for n in nodes) == 6212


def one_line(exc: pytest.ExceptionInfo[TraceError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "pods.csv", "name,cpu_milli,memory_mib,num_gpu\np,1,1,0\n")
    with pytest.raises(TraceError) as exc:
        traces.read_pods(f"alibaba:{path}")
    message = one_line(exc)
    assert str(path) in message
    assert "missing column gpu_milli" in message


def test_bad_value_names_file_line_and_column(tmp_path: Path) -> None:
    text = PODS.replace("openb-pod-0002,16000", "openb-pod-0002,lots")
    path = write(tmp_path, "pods.csv.gz", text)
    with pytest.raises(TraceError) as exc:
        traces.read_pods(f"alibaba:{path}")
    assert one_line(exc) == f"{path} line 4: column cpu_milli: 'lots' is not a number"


@pytest.mark.parametrize(("row", "why"), [
    ("n,-1000,1024,0,", "column cpu_milli: '-1000' is not a non-negative number"),
    ("n,1000,1024,1.5,A100", "column gpu: '1.5' is not a whole number"),
    ("n,1000,1024,0", "4 fields, the header has 5"),
    ("n,1000,,0,", "column memory_mib: no value"),
])
def test_bad_node_rows(tmp_path: Path, row: str, why: str) -> None:
    path = write(tmp_path, "nodes.csv", f"sn,cpu_milli,memory_mib,gpu,model\n{row}\n")
    with pytest.raises(TraceError) as exc:
        traces.read_nodes(f"alibaba:{path}")
    assert one_line(exc) == f"{path} line 2: {why}"


def test_gpu_milli_above_one_gpu(tmp_path: Path) -> None:
    path = write(tmp_path, "pods.csv", PODS.replace("1,460,", "1,1460,"))
    with pytest.raises(TraceError, match=r"line 2: column gpu_milli: 1460 is more than one"):
        traces.read_pods(f"alibaba:{path}")


def test_unknown_format_and_no_format(tmp_path: Path) -> None:
    with pytest.raises(TraceError) as exc:
        traces.read_pods("borg:pods.csv")
    assert one_line(exc) == ("pods.csv: unknown trace format 'borg' (known: alibaba, "
                             "alibaba-lora, azure-llm, qps-series)")
    with pytest.raises(TraceError, match=r"a trace is FORMAT:FILE"):
        traces.read_pods("pods.csv")


def test_missing_empty_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError) as exc:
        traces.read_nodes(f"alibaba:{tmp_path / 'nope.csv'}")
    assert one_line(exc) == f"{tmp_path / 'nope.csv'}: no such file"
    empty = write(tmp_path, "empty.csv", "")
    with pytest.raises(TraceError, match=r"empty\.csv: empty file"):
        traces.read_nodes(f"alibaba:{empty}")
    fake = tmp_path / "fake.csv.gz"
    fake.write_text("not gzip")
    with pytest.raises(TraceError, match=r"fake\.csv\.gz: not a readable CSV file"):
        traces.read_nodes(f"alibaba:{fake}")


def test_registry_knows_kinds(tmp_path: Path) -> None:
    fmt = traces.register(TraceFormat("test-requests", "a request trace",
                                      {"requests": lambda path: [path.name]}))
    try:
        assert "test-requests" in traces.formats("requests")
        assert "test-requests" not in traces.formats("pods")
        assert traces.load(f"test-requests:{tmp_path / 'r.csv'}", "requests") == ["r.csv"]
        with pytest.raises(TraceError, match=r"a test-requests trace holds no pods .* pods "
                                             r"come from alibaba"):
            traces.read_pods(f"test-requests:{tmp_path / 'r.csv'}")
    finally:
        traces._FORMATS.pop(fmt.name)
    assert "test-requests" not in traces.formats()
