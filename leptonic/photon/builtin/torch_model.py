"""``builtin:torch``: serves a saved PyTorch module (TorchScript or ``torch.export``).

Each request carries one sample (no batch dimension); concurrent samples are stacked into
one batch, run through the module once, and each client gets its own row of the output.

Handlers:

* ``POST /predict`` ``{"input": [[...], ...]}`` -> that sample's output (nested lists)
* ``POST /info`` ``{}`` -> ``{"format", "input_shape", "dtype", "device"}``

A sample whose shape is not the declared one (``TORCH_INPUT_SHAPE``, or the shape the
exported program was traced with) gets a 422; without a declared shape, samples of
different shapes in one batch are run as separate groups.

Environment (set on the deployment: ``--env KEY=VALUE``):

* ``TORCH_MODEL_PATH`` (required): a TorchScript file (``torch.jit.save``, usually
  ``.pt``) or an exported program (``torch.export.save``, ``.pt2``; export it with a
  dynamic batch dimension, ``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``).
  The module takes one tensor whose first dimension is the batch and returns one tensor
  with the same first dimension.
* ``TORCH_INPUT_SHAPE``: one sample's shape, e.g. ``4`` or ``3,32,32`` (optional)
* ``TORCH_DTYPE``: the input dtype, default ``float32``
* ``TORCH_DEVICE``: default ``cpu``
* ``TORCH_NUM_THREADS``: torch's intra-op threads (default: torch's own choice)
* ``PHOTON_BATCH_SIZE`` / ``PHOTON_BATCH_WAIT_MS`` / ``PHOTON_BATCH_QUEUE``: the
  batching (default 64 samples, 10 ms, 1024 waiting)
"""

from __future__ import annotations

import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from leptonic.errors import InvalidInput, PhotonDefinitionError
from leptonic.photon.builtin._config import env_file, env_str, set_torch_threads
from leptonic.photon.handler import handler
from leptonic.photon.photon import Photon

NAME = "torch"


class TorchInfo(BaseModel):
    """What the replica serves."""

    format: str                       # "torchscript" | "export"
    input_shape: list[int] | None     # one sample's shape, when declared or known
    dtype: str
    device: str


def _parse_shape(raw: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in raw.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise PhotonDefinitionError(
            f"builtin:{NAME}: TORCH_INPUT_SHAPE={raw!r} must be positive integers separated "
            f"by commas, one sample's shape without the batch dimension (e.g. 3,32,32)")
    return shape


def _is_export_archive(path: Path) -> bool:
    """torch.export archives carry an ``archive_format`` record; TorchScript ones do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("archive_format") for n in archive.namelist())
    except zipfile.BadZipFile:
        return False


class TorchModel(Photon):
    """A saved PyTorch module (``TORCH_MODEL_PATH``), dynamically batched."""

    requirements = ["torch"]

    def init(self) -> None:
        import torch

        set_torch_threads(NAME)
        path = env_file("TORCH_MODEL_PATH", NAME,
                        "a TorchScript (.pt) or torch.export (.pt2) file")
        self.device = env_str("TORCH_DEVICE", "cpu") or "cpu"
        dtype_name = env_str("TORCH_DTYPE", "float32") or "float32"
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise PhotonDefinitionError(
                f"builtin:{NAME}: TORCH_DTYPE={dtype_name!r} is not a torch dtype "
                f"(e.g. float32, float64, int64)")
        self.dtype = dtype
        self.dtype_name = dtype_name
        declared = env_str("TORCH_INPUT_SHAPE")
        self.shape: tuple[int, ...] | None = _parse_shape(declared) if declared else None
        try:
            if _is_export_archive(path):
                self.format = "export"
                program = torch.export.load(str(path))
                self.module: Any = program.module().to(self.device)
                if self.shape is None:
                    self.shape = _exported_sample_shape(program)
            else:
                self.format = "torchscript"
                with warnings.catch_warnings():
                    # TorchScript is deprecated upstream, still what many models ship as
                    warnings.filterwarnings("ignore", category=DeprecationWarning,
                                            message=".*torch.jit.*deprecated")
                    self.module = torch.jit.load(str(path), map_location=self.device)  # type: ignore[no-untyped-call]
                self.module.eval()
        except PhotonDefinitionError:
            raise
        except Exception as exc:
            raise PhotonDefinitionError(
                f"builtin:{NAME}: cannot load TORCH_MODEL_PATH={str(path)!r} as TorchScript "
                f"or a torch.export program: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        self.lock = threading.Lock()

    def _tensor(self, sample: Any) -> Any:
        import torch

        try:
            tensor = torch.as_tensor(sample, dtype=self.dtype)
        except (ValueError, TypeError, RuntimeError) as exc:
            return InvalidInput(f"input is not a rectangular array of numbers: {exc}")
        if self.shape is not None and tuple(tensor.shape) != self.shape:
            return InvalidInput(
                f"input has shape {list(tensor.shape)}; the model takes {list(self.shape)}",
                expected=list(self.shape), got=list(tensor.shape))
        return tensor

    @handler(batch=64, max_wait_ms=10)
    def predict(self, input: list[Any]) -> list[Any]:
        """The module's output for one sample."""
        import torch

        samples = [self._tensor(s) for s in input]
        outputs: list[Any] = [s if isinstance(s, InvalidInput) else None for s in samples]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, s in enumerate(samples):
            if not isinstance(s, InvalidInput):
                groups.setdefault(tuple(s.shape), []).append(i)
        for rows in groups.values():
            batch = torch.stack([samples[i] for i in rows]).to(self.device)
            with self.lock, torch.inference_mode():
                result = self.module(batch)
            if not isinstance(result, torch.Tensor) or result.dim() == 0 \
                    or result.shape[0] != len(rows):
                got = (f"a tensor of shape {list(result.shape)}"
                       if isinstance(result, torch.Tensor) else type(result).__name__)
                raise TypeError(
                    f"the module returned {got} for a batch of {len(rows)}; builtin:{NAME} "
                    f"needs one tensor whose first dimension is the batch")
            for i, row in zip(rows, result.cpu().tolist(), strict=True):
                outputs[i] = row
        return outputs

    @handler
    def info(self) -> TorchInfo:
        """The module's format, one sample's shape (if known), dtype and device."""
        return TorchInfo(format=self.format,
                         input_shape=list(self.shape) if self.shape is not None else None,
                         dtype=self.dtype_name, device=self.device)


def _exported_sample_shape(program: Any) -> tuple[int, ...] | None:
    """One sample's shape from an exported program's first input, if its dims are static."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            dims = getattr(val, "shape", None)
            if dims is None or len(dims) < 2:
                return None
            if all(isinstance(d, int) for d in dims[1:]):
                return tuple(int(d) for d in dims[1:])
            return None
    return None
