"""``leptonic model ...``: the model registry (register, list, get, alias, history, delete)
and its jobs (train, evaluate)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from leptonic.cli._context import OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import console, fail, fields, show, table
from leptonic.core.registry import (
    AliasMove,
    ModelRef,
    ModelVersion,
    RegisteredModel,
    parse_dataset,
    parse_ref,
)
from leptonic.errors import InvalidInput

app = typer.Typer(help="Registered models: versions, aliases (champion), promotion gate.",
                  no_args_is_help=True)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _metrics(m: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in sorted(m.items()))


def models_table(models: list[RegisteredModel]) -> object:
    return table(["NAME", "VERSIONS", "LATEST", "ALIASES", "CREATED"], [
        (m.name, len(m.versions), m.latest,
         " ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())), _when(m.created_at))
        for m in models])


def versions_table(versions: list[ModelVersion]) -> object:
    return table(["VERSION", "FRAMEWORK", "ALIASES", "METRICS", "SIZE", "CREATED", "BY"], [
        (v.version, f"{v.framework.value} ({v.format})", " ".join(v.aliases),
         _metrics(v.metrics), f"{v.size_bytes / 2**10:,.1f} KiB", _when(v.created_at),
         v.created_by) for v in versions])


def version_fields(v: ModelVersion) -> object:
    sig = v.signature
    return fields([
        ("model", f"{v.model}@{v.version}"), ("framework", f"{v.framework.value} "
                                                           f"({v.format})"),
        ("artifact", f"{v.artifact} ({v.size_bytes:,} bytes, sha256 {v.sha256[:16]}...)"),
        ("aliases", " ".join(v.aliases) or "-"),
        ("features", sig.expected_features() or "-"),
        ("classes", ", ".join(map(str, sig.classes)) if sig.classes else "-"),
        ("metrics", _metrics(v.metrics) or "-"), ("params", json.dumps(v.params) or "-"),
        ("dataset", v.dataset or "-"), ("drift reference", "yes" if v.has_reference else "no"),
        ("lineage", json.dumps(v.lineage) if v.lineage else "-"),
        ("created", f"{_when(v.created_at)} by {v.created_by or '-'}")])


def _ref(text: str) -> ModelRef:
    """``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS``; a bad one ends the command in one line."""
    try:
        return parse_ref(text)
    except InvalidInput as exc:
        fail(exc.detail)


def _parse_pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"invalid {what} {item!r}: write KEY=VALUE")
        out[key] = value
    return out


def _read_metrics(path: Path | None, given: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if path is not None:
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            fail(f"cannot read --metrics {path}: {exc.strerror}")
        except ValueError as exc:
            fail(f"--metrics {path} is not JSON ({exc}); write an object such as "
                 '{"accuracy": 0.95}')
        if not isinstance(data, dict):
            fail(f"--metrics {path} must hold a JSON object of metric -> number")
        for k, v in data.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                fail(f"--metrics {path}: {k!r} is not a number")
            metrics[str(k)] = float(v)
    for k, v in _parse_pairs(given, "--metric").items():
        try:
            metrics[k] = float(v)
        except ValueError:
            fail(f"invalid --metric {k}={v}: the value must be a number")
    return metrics


@app.command("register")
def register(
    ctx: typer.Context, name: str,
    file: Annotated[Path, typer.Option("--file", "-f", help="The artifact: .joblib/.pkl/"
                                       ".skops (scikit-learn), .pt/.ts/.pt2 (torch).")],
    metrics: Annotated[Path | None, typer.Option("--metrics", help="A JSON file of metric "
                                                 "-> number.", show_default=False)] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="METRIC=NUMBER "
                                                     "(repeatable).", show_default=False)
                      ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="KEY=VALUE "
                                                    "(repeatable).", show_default=False)
                     ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE (repeatable).",
                                                  show_default=False)] = None,
    features: Annotated[int | None, typer.Option("--features", min=1, help="How many "
                                                 "features it takes.", show_default=False)
                        ] = None,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Register FILE as the next version of model NAME."""
    opts = options(ctx, output, url, token)
    if not file.is_file():
        fail(f"--file {file}: no such file")
    found = _read_metrics(metrics, metric or [])
    with connect(opts) as client:
        v = client.register_model(
            name, file, metrics=found, params=_parse_pairs(param or [], "--param"),
            tags=_parse_pairs(tag or [], "--tag"),
            signature={"n_features": features} if features else None,
            description=description)
    show(opts, v, lambda v: f"registered {v.model}@{v.version} ({v.framework.value}, "
                            f"{v.size_bytes:,} bytes)")


@app.command("list")
def list_(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
          token: TokenOpt = None) -> None:
    """Every model with its versions and aliases."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        models = client.list_models()
    show(opts, models, models_table)


@app.command("get")
def get(ctx: typer.Context,
        ref: Annotated[str, typer.Argument(help="NAME (its versions), NAME@VERSION or "
                                                "NAME@ALIAS (one version).")],
        output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """A model's versions, or one version in full."""
    opts = options(ctx, output, url, token)
    parsed = _ref(ref)
    with connect(opts) as client:
        if "@" not in ref:
            model = client.get_model(parsed.name)
            if opts.json:
                show(opts, model, str)
                return
            out = console()
            out.print(fields([("model", model.name), ("aliases", " ".join(
                f"{a}=v{v}" for a, v in sorted(model.aliases.items())) or "-")]))
            out.print()
            out.print(versions_table(model.versions))
            return
        v = client.get_model_version(parsed.name, parsed.version or parsed.alias or "latest")
    show(opts, v, version_fields)


@app.command("alias")
def alias(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME@ALIAS) to point at.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. champion.")],
    require: Annotated[list[str] | None, typer.Option(
        "--require", help="METRIC OP NUMBER the version must meet, e.g. 'f1>=0.9' "
        "(repeatable).", show_default=False)] = None,
    better_than: Annotated[str | None, typer.Option(
        "--better-than", help="An alias (e.g. champion) whose version it must beat.",
        show_default=False)] = None,
    metric: Annotated[str | None, typer.Option(
        "--metric", help="The metric --better-than compares (default: f1, accuracy or "
        "r2).", show_default=False)] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove ALIAS instead.")] = False,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Point ALIAS at a version, if it passes the gate; refused with the figures if not."""
    opts = options(ctx, output, url, token)
    parsed = _ref(ref)
    with connect(opts) as client:
        if remove:
            move = client.remove_model_alias(parsed.name, alias_name)
        else:
            version = parsed.version
            if version is None:
                version = client.get_model_version(parsed.name,
                                                   parsed.alias or "latest").version
            move = client.set_model_alias(parsed.name, alias_name, version,
                                          require=require or (), better_than=better_than,
                                          metric=metric)
    show(opts, move, _move_line)


def _move_line(m: AliasMove) -> str:
    if m.to_version is None:
        return f"{m.model}: removed {m.alias} (was version {m.from_version})"
    was = f" (was version {m.from_version})" if m.from_version is not None else ""
    return f"{m.model}@{m.to_version} is now {m.alias}{was}"


@app.command("history")
def history(ctx: typer.Context, name: str, output: OutputOpt = None, url: UrlOpt = None,
            token: TokenOpt = None) -> None:
    """Every alias move of a model, oldest first: which version held which alias when."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        moves = client.model_history(name)
    show(opts, moves, lambda ms: table(["WHEN", "ALIAS", "FROM", "TO", "BY"], [
        (_when(m.at), m.alias, m.from_version or "-", m.to_version or "(removed)", m.by)
        for m in ms]))


@app.command("delete")
def delete(ctx: typer.Context,
           ref: Annotated[str, typer.Argument(help="NAME (the whole model) or NAME@VERSION.")],
           output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a model, or one version (refused while an alias points at it)."""
    opts = options(ctx, output, url, token)
    parsed = _ref(ref)
    if "@" in ref and parsed.version is None:
        fail(f"delete takes NAME or NAME@VERSION, not an alias ({ref}); move the alias with "
             "`leptonic model alias`")
    with connect(opts) as client:
        if parsed.version is not None:
            client.delete_model_version(parsed.name, parsed.version)
        else:
            client.delete_model(parsed.name)
    result: dict[str, Any] = {"model": parsed.name, "version": parsed.version,
                              "deleted": True}
    show(opts, result, lambda r: f"deleted {ref}")


def _params(items: list[str]) -> dict[str, Any]:
    """``--param k=v``: the value as JSON where it parses (50, 0.1, true, null), else text."""
    out: dict[str, Any] = {}
    for k, v in _parse_pairs(items, "--param").items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _dataset(text: str) -> str:
    try:
        ref = parse_dataset(text)
    except InvalidInput as exc:
        fail(exc.detail)
    if ref.kind == "csv" and not Path(ref.name).expanduser().is_file():
        fail(f"--dataset {text}: no such file {ref.name}")
    return text


def report_table(report: dict[str, Any]) -> object:
    rows = [(k, f"{v:.4f}") for k, v in sorted(report.get("metrics", {}).items())]
    return table(["METRIC", "VALUE"], rows)


def _finished(opts: Any, client: Any, job: Any, timeout: float | None) -> dict[str, Any]:
    from leptonic.cli.job import wait_with_progress

    done = wait_with_progress(client, opts, job.name, timeout)
    return {"job": done.name, "phase": done.status.phase.value,
            "report": client.model_job_report(done.name)}


def _show_report(opts: Any, result: dict[str, Any], headline: str) -> None:
    def text(r: dict[str, Any]) -> object:
        from rich.console import Group

        parts: list[Any] = [headline]
        rep = r.get("report")
        if rep:
            part = "held-out " if rep.get("test_size") else ""
            parts += [f"{rep.get('rows')} {part}rows of {rep.get('dataset')}",
                      report_table(rep)]
            cm = rep.get("confusion_matrix")
            if cm and len(cm) <= 20:
                parts.append("confusion matrix (rows: truth, columns: predicted; labels "
                             + ", ".join(map(str, rep.get("labels", []))) + ")")
                parts += ["  " + " ".join(f"{x:>5}" for x in row) for row in cm]
        return Group(*parts)
    show(opts, result, text)


WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the job and show its "
                                                      "report.")]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", help="With --wait: give up "
                                                  "after this many seconds.",
                                                  show_default=False)]


@app.command("train")
def train(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="The model to register into.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="sklearn:NAME (iris, "
                                         "digits, wine, breast_cancer, diabetes) or "
                                         "csv:PATH[:target=COLUMN] (default: the last "
                                         "column).")],
    estimator: Annotated[str, typer.Option("--estimator", "-e", help="Its dotted path, e.g. "
                                           "sklearn.ensemble.RandomForestClassifier.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE for "
                                                    "the estimator (repeatable; JSON values)",
                                                    show_default=False)] = None,
    cv: Annotated[int | None, typer.Option("--cv", min=2, max=50, help="K-fold "
                                           "cross-validation as well.",
                                           show_default=False)] = None,
    test_size: Annotated[float, typer.Option("--test-size", min=0.01, max=0.99,
                                             help="The held-out share.")] = 0.25,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Of the split and folds.")] = 0,
    job: Annotated[str | None, typer.Option("--job", help="The job's name (default: "
                                            "generated).", show_default=False)] = None,
    wait: WaitOpt = False, timeout: TimeoutOpt = None,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Train, evaluate and register a version of model NAME, as a job."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        started = client.train_model(name, dataset=_dataset(dataset), estimator=estimator,
                                     params=_params(param or []), cv=cv,
                                     test_size=test_size, seed=seed, job=job)
        if not wait:
            show(opts, started, lambda j: f"started job {j.name}: train {estimator} on "
                                          f"{dataset} for model {name} (follow it with "
                                          f"`leptonic job logs {j.name} -f`)")
            return
        result = _finished(opts, client, started, timeout)
        model = client.get_model(name)
        version = next((v for v in model.versions if v.lineage.get("job") == started.name),
                       None)
        result["version"] = version.version if version else None
    _show_report(opts, result, f"registered {name}@{result['version']} from job "
                               f"{started.name}")


@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="sklearn:NAME or "
                                         "csv:PATH[:target=COLUMN].")],
    test_size: Annotated[float, typer.Option("--test-size", min=0.0, max=0.99, help="0: "
                                             "every row; else the held-out share of a "
                                             "seeded split (as in training).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    job: Annotated[str | None, typer.Option("--job", show_default=False)] = None,
    wait: WaitOpt = False, timeout: TimeoutOpt = None,
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Evaluate a registered version on a data set, as a job."""
    opts = options(ctx, output, url, token)
    parsed = _ref(ref)
    which = parsed.version or parsed.alias or "latest"
    with connect(opts) as client:
        started = client.evaluate_model(parsed.name, which, dataset=_dataset(dataset),
                                        test_size=test_size, seed=seed, job=job)
        if not wait:
            show(opts, started, lambda j: f"started job {j.name}: evaluate {ref} on "
                                          f"{dataset}")
            return
        result = _finished(opts, client, started, timeout)
    _show_report(opts, result, f"evaluated {ref} on {dataset} (job {started.name})")


def _live_view(f: dict[str, Any]) -> object:
    from rich.console import Group

    def share(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}"

    drift = f["drift"]
    head = fields([
        ("deployment", f"{f['deployment']} serves {f['model']}@{f['version']}"),
        ("window", f"{f['window_s']:g}s"),
        ("accuracy", share(f.get("accuracy"))), ("f1 (macro)", share(f.get("f1"))),
        *([("mae / rmse / r2", f"{share(f['mae'])} / {share(f['rmse'])} / {share(f['r2'])}")]
          if f.get("mae") is not None else []),
        ("labelled", f"{f['labelled']} of {f['predictions']} answers "
                     f"({f['pending']} waiting for truth)"),
        ("feedback", ", ".join(f"{k} {v}" for k, v in f["feedback"].items())),
        ("drift share", share(drift.get("share")) + (" (drifted)" if drift.get("drifted")
                                                       else ""))])
    rows = [(name, share(d.get("psi")), d.get("test") or d.get("reason") or "-",
             share(d.get("statistic")), "yes" if d.get("drifted") else "no")
            for name, d in sorted(drift["features"].items())]
    return Group(head, table(["FEATURE", "PSI", "TEST", "STATISTIC", "DRIFTED"], rows)
                 if rows else "")


@app.command("metrics")
def metrics_(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="A deployment of a registered model.")],
    window: Annotated[str, typer.Option("--window", "-w", help="How far back: 30m, 1h, "
                                        "1d.")] = "1h",
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Live accuracy, F1 and drift per feature of a deployed model."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        figures = client.model_metrics(deployment, window)
    show(opts, figures, _live_view)


@app.command("feedback")
def feedback(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="A deployment of a registered model.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="JSON Lines: one "
                                       '{"request_id": ..., "truth": ...} per line.')],
    output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Send the truth of earlier answers (by their x-leptonic-request-id)."""
    opts = options(ctx, output, url, token)
    try:
        lines = [line for line in file.read_text().splitlines() if line.strip()]
    except OSError as exc:
        fail(f"cannot read --file {file}: {exc.strerror}")
    items = []
    for n, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
        except ValueError:
            fail(f"--file {file} line {n} is not JSON; write one "
                 '{"request_id": ..., "truth": ...} per line')
        if not isinstance(item, dict) or "request_id" not in item or "truth" not in item:
            fail(f"--file {file} line {n} needs request_id and truth")
        items.append(item)
    with connect(opts) as client:
        result = client.feedback(deployment, items)
    show(opts, result, lambda r: f"{r['matched']} of {r['items']} matched; {r['unknown']} "
                                 f"unknown, {r['expired']} expired, {r['duplicate']} "
                                 "duplicate")
