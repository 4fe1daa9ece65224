"""A photon job's attempt: load the stored photon and call one handler per input line.

    python -m leptonic.photon.job_worker --entry app.py:Cls --handler NAME

Run in a copy of the photon's bundle (its cwd), as the user code's own uid. Reads this
index's share of the job's inputs from ``$LEPTONIC_INPUTS`` (JSON Lines, each line a JSON
object of the handler's inputs) and writes one JSON result per line, in the same order, to
``$LEPTONIC_OUTPUT_DIR/results.jsonl``. A batched handler gets its inputs in batches of its
batch size. The first input that fails ends the attempt with exit code 1 (the job retries
the index), its line number and error on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def _call(fn: Any, kwargs: dict[str, Any]) -> Any:
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    if inspect.isgenerator(result):
        result = list(result)
    return result


async def _await(value: Any) -> Any:
    return await value


def run(entry: str, handler: str, inputs: Path, output: Path) -> int:
    from leptonic.photon.handler import signature_of
    from leptonic.photon.loader import load_photon_class
    from leptonic.runtime.isolation import apply_limits

    apply_limits(int(os.environ.get("LEPTONIC_LIMIT_OPEN_FILES", "0")) or None, None)
    cls = load_photon_class(entry, Path.cwd())
    spec = next((s for s in cls.handler_specs() if s.name == handler), None)
    if spec is None:
        names = ", ".join(s.name for s in cls.handler_specs()) or "none"
        print(f"leptonic: photon {entry} has no handler {handler!r} (it has: {names})",
              file=sys.stderr)
        return 2
    sig = signature_of(spec, cls)
    photon = cls()
    photon.init()
    fn = getattr(photon, spec.fn.__name__)
    lines = [line for line in inputs.read_text().splitlines() if line.strip()] \
        if inputs.exists() else []
    size = spec.batch or 1
    done = 0
    with (output / "results.jsonl").open("w") as out:
        for start in range(0, len(lines), size):
            chunk = lines[start:start + size]
            try:
                items = [sig.request_model.model_validate(json.loads(line)).model_dump()
                         for line in chunk]
                if spec.batch:
                    results = _call(fn, {p: [i[p] for i in items] for p in sig.params})
                    if len(results) != len(items):
                        raise ValueError(f"the batched handler returned {len(results)} "
                                         f"outputs for {len(items)} inputs")
                else:
                    results = [_call(fn, items[0])]
            except Exception as exc:
                print(f"leptonic: input line {start + 1} failed: "
                      f"{traceback.format_exception_only(exc)[-1].strip()}", file=sys.stderr)
                return 1
            for r in results:
                out.write(json.dumps(sig.output.dump_python(r, mode="json")) + "\n")
            done += len(chunk)
    print(f"leptonic: {done} input(s) done by {cls.__name__}.{handler}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leptonic.photon.job_worker")
    parser.add_argument("--entry", required=True)
    parser.add_argument("--handler", required=True)
    opts = parser.parse_args(argv)
    inputs = Path(os.environ.get("LEPTONIC_INPUTS", "inputs.jsonl"))
    output = Path(os.environ.get("LEPTONIC_OUTPUT_DIR", "."))
    return run(opts.entry, opts.handler, inputs, output)


if __name__ == "__main__":
    sys.exit(main())
