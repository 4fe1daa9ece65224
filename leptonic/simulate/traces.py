"""Readers of public cluster traces, named by ``FORMAT:FILE`` specs.

A *format* (``alibaba``, ...) is a registered :class:`TraceFormat` with one reader per
*kind* of record it holds (``nodes``, ``pods``; request traces add their own kinds).
:func:`load` parses a spec, finds the reader and returns its records; every failure is one
:class:`TraceError` whose message is one line naming the file (and the line or column)::

    load("alibaba:traces/alibaba-gpu-v2023/openb_pod_list_default.csv.gz", "pods")

Files are CSV, plain or gzip-compressed (``.gz``). Readers return plain records
(:class:`TraceNode`, :class:`TracePod`), not scheduler types, so other simulators
(autoscaling, forecasting) can share them.

Formats here:

* ``alibaba``: the Alibaba GPU cluster trace v2023 ("openb", Weng et al., USENIX ATC '23):
  node lists ``sn,cpu_milli,memory_mib,gpu,model`` and pod lists ``name,cpu_milli,
  memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,
  scheduled_time``. Every ``openb_pod_list_*`` sample reads; the ``multigpu*`` samples
  carry no times: read alone, their pods arrive one second apart in file order and never
  leave (a cluster fill); :func:`borrow_times` gives them the default list's times.
* ``azure-llm``: the Azure LLM inference traces 2023 (code, conversation; Patel et al.,
  "Splitwise", ISCA '24): ``TIMESTAMP,ContextTokens,GeneratedTokens``, one request a line.
* ``alibaba-lora``: ``lora_request_trace.csv`` of the Alibaba GenAI trace v2026:
  ``gmt_create`` and ``exec_time_seconds`` (the service time) per request.
* ``qps-series``: ``timestamp,value[,...]`` rows giving a rate, summed per timestamp across
  sources (the GenAI trace's per-container ``qps.csv``).

Request traces hold ``requests`` (:class:`TraceRequest`) or ``rates`` (:class:`TraceRate`),
times counted from the trace's first record; a trace with no rows is an error.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leptonic.errors import InvalidInput

#: spellings of "no value" in the trace files (pandas writes NaN as empty or ``nan``)
MISSING = frozenset({"", "nan", "NaN", "none", "None", "null"})


class TraceError(InvalidInput):
    """A trace that cannot be read: unknown format, missing file or column, bad value."""


# -- records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TraceNode:
    """One machine of a trace's cluster."""

    name: str
    cpu: float                  # cores
    memory_mib: float
    gpus: int = 0
    gpu_model: str | None = None


@dataclass(frozen=True)
class TracePod:
    """One pod of a trace: what it asked for and when it came and went (seconds)."""

    name: str
    cpu: float                  # cores
    memory_mib: float
    num_gpu: int = 0
    gpu_milli: int = 0          # of one GPU, for a pod that shares one (num_gpu == 1)
    gpu_models: tuple[str, ...] = ()   # allowed GPU models; empty: any
    qos: str = ""
    phase: str = ""
    creation_s: float = 0.0
    deletion_s: float | None = None    # None: still there when the trace ends
    scheduled_s: float | None = None   # None: never scheduled in production
    timed: bool = True                 # False: the file has no times (multigpu* samples)

    @property
    def gpu(self) -> float:
        """GPUs asked for: a share of one GPU below 1, else that many whole GPUs."""
        if self.num_gpu == 1 and 0 < self.gpu_milli < 1000:
            return self.gpu_milli / 1000
        return float(self.num_gpu)

    @property
    def duration_s(self) -> float | None:
        """How long it ran: deletion minus scheduled (or creation) time; None: to the end."""
        if self.deletion_s is None:
            return None
        start = self.creation_s if self.scheduled_s is None else self.scheduled_s
        return max(0.0, self.deletion_s - start)


# -- the registry -------------------------------------------------------------------------

Reader = Callable[[Path], Any]


@dataclass(frozen=True)
class TraceFormat:
    """A trace format: its name, what it is, and a reader per kind of record it holds."""

    name: str
    summary: str
    readers: Mapping[str, Reader] = field(default_factory=dict)


_FORMATS: dict[str, TraceFormat] = {}


def register(fmt: TraceFormat) -> TraceFormat:
    """Add (or replace) a format; returns it."""
    _FORMATS[fmt.name] = fmt
    return fmt


def formats(kind: str | None = None) -> list[str]:
    """Names of the registered formats (that hold ``kind``, if given), sorted."""
    return sorted(n for n, f in _FORMATS.items() if kind is None or kind in f.readers)


def parse_spec(spec: str) -> tuple[TraceFormat, Path]:
    """``FORMAT:FILE`` -> (format, path); a :class:`TraceError` when the format is unknown."""
    name, sep, path = spec.partition(":")
    if not sep or not path:
        raise TraceError(f"{spec!r}: a trace is FORMAT:FILE (formats: "
                         f"{', '.join(formats())}), e.g. alibaba:openb_pod_list_default.csv")
    fmt = _FORMATS.get(name)
    if fmt is None:
        raise TraceError(f"{path}: unknown trace format {name!r} (known: "
                         f"{', '.join(formats())})")
    return fmt, Path(path)


def load(spec: str, kind: str) -> Any:
    """Read the ``kind`` records (``nodes``, ``pods``, ...) of the trace ``spec`` names."""
    fmt, path = parse_spec(spec)
    reader = fmt.readers.get(kind)
    if reader is None:
        raise TraceError(f"{path}: a {fmt.name} trace holds no {kind} (it holds "
                         f"{', '.join(sorted(fmt.readers))}; {kind} come from "
                         f"{', '.join(formats(kind)) or 'no format'})")
    return reader(path)


def read_nodes(spec: str) -> list[TraceNode]:
    nodes: list[TraceNode] = load(spec, "nodes")
    return nodes


def read_pods(spec: str) -> list[TracePod]:
    pods: list[TracePod] = load(spec, "pods")
    return pods


# -- CSV with messages that name the file, line and column --------------------------------

class Row:
    """One CSV row; typed getters raise a :class:`TraceError` naming file, line, column."""

    __slots__ = ("_cells", "_columns", "line", "path")

    def __init__(self, path: Path, line: int, columns: Mapping[str, int],
                 cells: Sequence[str]) -> None:
        self.path, self.line, self._columns, self._cells = path, line, columns, cells

    def has(self, column: str) -> bool:
        return column in self._columns

    def text(self, column: str) -> str | None:
        """The cell, stripped; None when the column is absent or the cell says "no value"."""
        i = self._columns.get(column)
        if i is None:
            return None
        value = self._cells[i].strip()
        return None if value in MISSING else value

    def error(self, column: str, why: str) -> TraceError:
        return TraceError(f"{self.path} line {self.line}: column {column}: {why}")

    def number(self, column: str, *, integer: bool = False) -> float:
        value = self.text(column)
        if value is None:
            raise self.error(column, "no value")
        try:
            out = float(value)
        except ValueError:
            raise self.error(column, f"{value!r} is not a number") from None
        if not math.isfinite(out) or out < 0:
            raise self.error(column, f"{value!r} is not a non-negative number")
        if integer and not out.is_integer():
            raise self.error(column, f"{value!r} is not a whole number")
        return out

    def optional(self, column: str) -> float | None:
        return None if self.text(column) is None else self.number(column)


def _open(path: Path) -> io.TextIOBase:
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
        return path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror or exc}") from None


def csv_rows(path: Path, required: Sequence[str], what: str) -> Iterator[Row]:
    """The rows of the CSV file ``path`` whose header must name every ``required`` column."""
    with _open(path) as stream:
        reader = csv.reader(stream)
        try:
            try:
                header = [c.strip() for c in next(reader)]
            except StopIteration:
                raise TraceError(f"{path}: empty file; {what} has a header line "
                                 f"{','.join(required)}") from None
            missing = [c for c in required if c not in header]
            if missing:
                raise TraceError(
                    f"{path}: missing column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(missing)} ({what} has {','.join(required)})")
            columns = {c: i for i, c in enumerate(header)}
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise TraceError(f"{path} line {reader.line_num}: {len(cells)} fields, "
                                     f"the header has {len(header)}")
                yield Row(path, reader.line_num, columns, cells)
        except (csv.Error, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
            line = f" line {reader.line_num}" if reader.line_num else ""
            raise TraceError(f"{path}{line}: not a readable CSV file ({exc})") from None
        except OSError as exc:
            raise TraceError(f"{path}: {exc.strerror or exc}") from None


# -- alibaba: the GPU cluster trace v2023 -------------------------------------------------

ALIBABA_NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
ALIBABA_POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
#: present in every sample but the multigpu* ones (which have no times)
ALIBABA_POD_OPTIONAL = ("gpu_spec", "qos", "pod_phase", "creation_time", "deletion_time",
                        "scheduled_time")


def read_alibaba_nodes(path: Path) -> list[TraceNode]:
    """An ``openb_node_list_*`` file: one node per line."""
    out = []
    for row in csv_rows(path, ALIBABA_NODE_COLUMNS, "an alibaba node list"):
        name = row.text("sn")
        if name is None:
            raise row.error("sn", "no node name")
        gpus = int(row.number("gpu", integer=True))
        out.append(TraceNode(name=name, cpu=row.number("cpu_milli") / 1000,
                             memory_mib=row.number("memory_mib"), gpus=gpus,
                             gpu_model=row.text("model") if gpus else None))
    return out


def read_alibaba_pods(path: Path) -> list[TracePod]:
    """An ``openb_pod_list_*`` file: one pod per line, sorted by creation time.

    A file without ``creation_time`` (the ``multigpu*`` samples) reads as arrivals one
    second apart in file order that never leave (a cluster fill, ``timed`` False), unless
    :func:`borrow_times` gives its pods the default list's times.
    """
    out = []
    for index, row in enumerate(csv_rows(path, ALIBABA_POD_COLUMNS, "an alibaba pod list")):
        name = row.text("name")
        if name is None:
            raise row.error("name", "no pod name")
        num_gpu = int(row.number("num_gpu", integer=True))
        gpu_milli = int(row.number("gpu_milli", integer=True))
        if gpu_milli > 1000:
            raise row.error("gpu_milli", f"{gpu_milli} is more than one GPU (1000)")
        spec = row.text("gpu_spec") or ""
        timed = row.has("creation_time")
        out.append(TracePod(
            name=name, cpu=row.number("cpu_milli") / 1000,
            memory_mib=row.number("memory_mib"), num_gpu=num_gpu, gpu_milli=gpu_milli,
            gpu_models=tuple(m.strip() for m in spec.split("|") if m.strip()),
            qos=row.text("qos") or "", phase=row.text("pod_phase") or "",
            creation_s=row.number("creation_time") if timed else float(index),
            deletion_s=row.optional("deletion_time") if timed else None,
            scheduled_s=row.optional("scheduled_time") if timed else None, timed=timed))
    out.sort(key=lambda p: p.creation_s)     # stable: file order among equal times
    return out


def _shape(pod: TracePod) -> tuple[float, float, int, int]:
    return (pod.cpu, pod.memory_mib, pod.num_gpu, pod.gpu_milli)


def borrow_times(pods: Sequence[TracePod], lender: Sequence[TracePod], *,
                 sample: str = "the sample", source: str = "the lender") -> list[TracePod]:
    """``pods`` of a sample without times, given the times of a timed sample (``lender``,
    the trace's default list), sorted by their new creation time.

    The trace's authors made every other sample from the default list: the ``cpu*`` and
    ``gpushare*`` samples keep its pods' names and times and change their shapes, and the
    pods they add carry the times of a default pod; the ``multigpu*`` samples are the
    default list unchanged (same names and shapes) plus multi-GPU pods of shapes it
    holds, with the time columns dropped. So a pod named in the lender takes that pod's
    times, and an added pod those of a lender pod of its shape (CPU, memory, GPUs), taken
    in turn in name order, so that copies of one shape spread over its pods. Pods that
    have times keep them.
    """
    if any(not p.timed for p in lender):
        raise TraceError(f"{source}: has no times to lend (no creation_time column); give "
                         "a timed sample such as openb_pod_list_default")
    by_name = {p.name: p for p in lender}
    by_shape: dict[tuple[float, float, int, int], list[TracePod]] = {}
    for p in sorted(lender, key=lambda p: p.name):
        by_shape.setdefault(_shape(p), []).append(p)
    turns: dict[tuple[float, float, int, int], int] = {}
    out = []
    for pod in sorted(pods, key=lambda p: p.creation_s):    # file order, when untimed
        if pod.timed:
            out.append(pod)
            continue
        times = by_name.get(pod.name)
        if times is None:
            shape = _shape(pod)
            same = by_shape.get(shape)
            if not same:
                raise TraceError(
                    f"{sample}: pod {pod.name} ({pod.cpu:g} CPU, {pod.memory_mib:g} MiB, "
                    f"{pod.gpu:g} GPU) is not in {source} and no pod there has its shape "
                    "to lend it times")
            turn = turns[shape] = turns.get(shape, -1) + 1
            times = same[turn % len(same)]
        out.append(dataclasses.replace(pod, creation_s=times.creation_s,
                                       deletion_s=times.deletion_s,
                                       scheduled_s=times.scheduled_s, timed=True))
    out.sort(key=lambda p: p.creation_s)
    return out


ALIBABA = register(TraceFormat(
    "alibaba", "Alibaba GPU cluster trace v2023 (openb node and pod lists)",
    {"nodes": read_alibaba_nodes, "pods": read_alibaba_pods}))


# -- request traces: arrivals (and service times) or rates --------------------------------

@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace: when it came (seconds from the trace's start) and what the
    trace says of its size (a service time, or tokens)."""

    at_s: float
    service_s: float | None = None      # measured in the trace (the GenAI LoRA trace)
    context_tokens: int | None = None   # the Azure LLM traces
    generated_tokens: int | None = None


@dataclass(frozen=True)
class TraceRate:
    """A rate of requests at one time (seconds from the trace's start), summed over the
    trace's sources."""

    at_s: float
    rate: float


def _timestamp(row: Row, column: str) -> float:
    """Seconds since the epoch: a number, or an ISO date and time (``2023-11-16
    18:17:03.9799600``: more than 6 fractional digits are cut, UTC when no zone)."""
    value = row.text(column)
    if value is None:
        raise row.error(column, "no timestamp")
    try:
        out = float(value)
        if math.isfinite(out):
            return out
    except ValueError:
        pass
    text = value.replace("T", " ", 1)
    head, dot, frac = text.partition(".")
    if dot:
        digits = "".join(itertools.takewhile(str.isdigit, frac))
        text = f"{head}.{digits[:6]}{frac[len(digits):]}"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise row.error(column, f"{value!r} is not a timestamp (seconds, or "
                                "YYYY-MM-DD HH:MM:SS[.ffffff])") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _no_rows(path: Path, what: str) -> TraceError:
    return TraceError(f"{path}: no rows (only a header); {what} needs at least one")


def _from_start(items: list[Any]) -> list[Any]:
    """Records in time order with times counted from the first one."""
    items.sort(key=lambda r: r.at_s)
    t0 = items[0].at_s
    return [dataclasses.replace(r, at_s=round(r.at_s - t0, 6)) for r in items]


AZURE_LLM_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def read_azure_llm(path: Path) -> list[TraceRequest]:
    """``AzureLLMInferenceTrace_*.csv`` (code, conversation): one request per line."""
    out = []
    for row in csv_rows(path, AZURE_LLM_COLUMNS, "an azure-llm trace"):
        out.append(TraceRequest(
            _timestamp(row, "TIMESTAMP"),
            context_tokens=int(row.number("ContextTokens", integer=True)),
            generated_tokens=int(row.number("GeneratedTokens", integer=True))))
    if not out:
        raise _no_rows(path, "an azure-llm trace")
    return _from_start(out)


ALIBABA_LORA_COLUMNS = ("gmt_create", "exec_time_seconds")


def read_alibaba_lora(path: Path) -> list[TraceRequest]:
    """``lora_request_trace.csv`` of the Alibaba GenAI trace v2026: one request per line,
    its ``exec_time_seconds`` the service time (None where the trace has none)."""
    out = []
    for row in csv_rows(path, ALIBABA_LORA_COLUMNS, "an alibaba-lora trace"):
        out.append(TraceRequest(_timestamp(row, "gmt_create"),
                                service_s=row.optional("exec_time_seconds")))
    if not out:
        raise _no_rows(path, "an alibaba-lora trace")
    return _from_start(out)


def read_qps_series(path: Path) -> list[TraceRate]:
    """Rows of ``timestamp,value[,...]`` giving a rate (the GenAI trace's ``qps.csv``:
    ``timestamp_anon,value,container_ip,request_type``), summed per timestamp across the
    rows' sources. The time column is the first of timestamp, timestamp_anon, time, ts
    (else the first column); the rate is ``value`` (else the second column)."""
    with _open(path) as stream:
        first = stream.readline()
    header = [c.strip() for c in next(csv.reader([first]), [])]
    t_col = next((c for c in ("timestamp", "timestamp_anon", "time", "ts") if c in header),
                 header[0] if header else "timestamp")
    v_col = "value" if "value" in header else header[1] if len(header) > 1 else "value"
    sums: dict[float, float] = {}
    for row in csv_rows(path, (t_col, v_col), "a qps-series trace"):
        at = _timestamp(row, t_col)
        sums[at] = sums.get(at, 0.0) + row.number(v_col)
    if not sums:
        raise _no_rows(path, "a qps-series trace")
    return _from_start([TraceRate(at, rate) for at, rate in sums.items()])


AZURE_LLM = register(TraceFormat(
    "azure-llm", "Azure LLM inference traces 2023 (TIMESTAMP,ContextTokens,GeneratedTokens)",
    {"requests": read_azure_llm}))
ALIBABA_LORA = register(TraceFormat(
    "alibaba-lora", "Alibaba GenAI trace v2026, lora_request_trace.csv (gmt_create, "
    "exec_time_seconds)", {"requests": read_alibaba_lora}))
QPS_SERIES = register(TraceFormat(
    "qps-series", "a request rate over time: timestamp,value[,...] summed per timestamp",
    {"rates": read_qps_series}))
