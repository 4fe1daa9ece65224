"""Deployments of registered models: ``--model NAME@champion`` (or ``NAME@3``).

A model reference resolves to one version; its artifact is copied into a content-addressed
bundle (what the replicas load, so deleting the version later does not pull the file from
under a running deployment or a rollback to it), and the deployment runs the built-in
server of its framework: ``builtin:sklearn`` for joblib files, ``builtin:torch`` for
TorchScript and ``.pt2``. A deployment that names an alias follows it: moving the alias
updates the deployment's spec, which rolls the new version out by its strategy (a canary
between model versions uses the same analysis as any other).
"""

from __future__ import annotations

import logging
import shutil

from leptonic.api.deps import ApiPlatform
from leptonic.core.models import Deployment, ModelServing
from leptonic.core.registry import ModelVersion, parse_ref
from leptonic.errors import GenerationChanged, InvalidInput, NotFound
from leptonic.store.model_files import version_dir

log = logging.getLogger(__name__)

#: (framework, format) -> the built-in photon that serves it and the variable naming its file
SERVERS = {("sklearn", "joblib"): ("builtin:sklearn", "SKLEARN_MODEL_PATH"),
           ("torch", "torchscript"): ("builtin:torch", "TORCH_MODEL_PATH"),
           ("torch", "pt2"): ("builtin:torch", "TORCH_MODEL_PATH")}
_TRIES = 5


def server_of(framework: str, fmt: str) -> tuple[str, str]:
    found = SERVERS.get((framework, fmt))
    if found is None:
        raise InvalidInput(f"a {framework} model in {fmt} format cannot be served yet: "
                           "register it as joblib (scikit-learn), TorchScript or .pt2 (torch)")
    return found


def serving_for(platform: ApiPlatform, text: str, version: ModelVersion | None = None
                ) -> ModelServing:
    """Resolve ``NAME@ALIAS`` / ``NAME@N`` (404 for a missing model, alias or version) and
    put a copy of the version's artifact in a bundle."""
    from leptonic.api.routes.models import resolve

    ref = parse_ref(text)
    if ref.version is None and ref.alias is None:
        raise InvalidInput(f"--model {text!r}: name a version or an alias (e.g. "
                           f"{ref.name}@champion or {ref.name}@1), so a new registration does "
                           "not change what is served")
    if version is None:
        version = resolve(platform, ref.name, str(ref.version) if ref.version else
                          str(ref.alias))
    photon, path_env = server_of(version.framework.value, version.format)
    src = version_dir(platform.layout.models, ref.name, version.version) / version.artifact
    if not src.is_file():
        raise NotFound(f"the artifact of {ref.name}@{version.version} is missing from the "
                       "data dir; register the model again")
    artifacts = platform.artifacts
    folder = artifacts.staging_dir()
    try:
        shutil.copyfile(src, folder / version.artifact)
        digest = artifacts.commit(folder)
    finally:
        artifacts.discard(folder)
    return ModelServing(ref=str(ref), model=ref.name, version=version.version,
                        alias=ref.alias, framework=version.framework.value,
                        photon=photon, path_env=path_env, artifact=version.artifact, digest=digest)


def follow_alias(platform: ApiPlatform, model: str, alias: str, version: ModelVersion,
                 by: str | None) -> list[str]:
    """Move every deployment that serves ``model@alias`` to ``version`` (a spec update,
    rolled out by its strategy); the deployments updated."""
    store = platform.store
    moved = []
    for d in store.list_deployments():
        m = d.spec.model
        if m is None or d.deleting or m.model != model or m.alias != alias \
                or m.version == version.version:
            continue
        serving = serving_for(platform, m.ref, version).model_copy(
            update={"monitor": m.monitor})
        for _ in range(_TRIES):
            current: Deployment = store.get_deployment(d.name)
            spec = current.spec.model_copy(update={"model": serving})
            try:
                updated = store.update_deployment_spec(d.name, spec,
                                                       expected_generation=current.generation)
            except GenerationChanged:
                continue
            store.add_event(f"deployment/{d.name}", "Updated",
                            f"generation {updated.generation}: model {model}@{alias} moved "
                            f"from version {m.version} to {version.version}"
                            + (f" (by {by})" if by else "") + "; rolling it out")
            moved.append(d.name)
            break
        else:
            log.warning("deployment %s: could not follow %s@%s to version %d (the spec kept "
                        "changing); update it with --model", d.name, model, alias,
                        version.version)
    if moved:
        platform.wake()
    return moved
