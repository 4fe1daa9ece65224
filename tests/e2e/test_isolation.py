"""User code cannot reach the platform, other deployments, or hold a replica hostage.

Against a real ``leptonic up`` (as root in CI: a uid per deployment in a bubblewrap
sandbox): a hostile photon at create time and as a replica tries to read the admin token,
the secret key, the database, the control plane's environment, another deployment's bundle
and env, and to write into the data dir; every attempt is denied and nothing changes. A
handler past its timeout answers 504 on time while 40 such calls leave another handler
answering; a replica over its memory limit is killed with ``OOMKilled``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOSTILE = Path(__file__).parent / "photons" / "hostile.py"


def _bundle(tmp_path: Path, name: str, import_paths: list[str] | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(HOSTILE, folder / "app.py")
    if import_paths:
        (folder / "import_paths.txt").write_text("\n".join(import_paths))
    return folder


def _snapshot(data: Path) -> dict[str, tuple[int, str]]:
    """Every file of the data dir but the ones the platform rewrites as it runs."""
    out = {}
    for p in sorted(data.rglob("*")):
        if p.is_file() and not p.name.startswith("leptonic.db") and "logs" not in p.parts:
            out[str(p.relative_to(data))] = (p.stat().st_mode & 0o777,
                                            hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _work_root(data: Path) -> Path:
    digest = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:12]
    if os.geteuid() == 0:
        return Path("/var/lib/leptonic/work") / digest
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "leptonic" / \
        "work" / digest


def test_hostile_photon_is_denied_everything(platform: RunningPlatform,
                                             tmp_path: Path) -> None:
    p = platform
    data = p.data_dir
    assert "isolation: user code runs" in p.read_log()
    token = p.token
    secrets_ = [str(data / "admin-token"), str(data / "secret-key"),
                str(data / "leptonic.db"), f"/proc/{p.proc.pid}/environ"]

    # 1. at create time: the module reads at import and raises what it read
    before = _snapshot(data)
    res = p.cli("photon", "create", "--name", "evil", "-m", "app.py:Hostile", "--path",
                str(_bundle(tmp_path, "at-import", secrets_)), check=False)
    assert res.returncode != 0
    said = res.stdout + res.stderr
    assert token not in said
    for path in secrets_:
        assert f"{path} -> denied" in said, said
    assert "write -> denied" in said
    assert p.api("GET", "/photons").json() == []

    # 2. a victim deployment with a secret env, and the hostile one beside it
    p.cli("secret", "create", "VICTIM_TOKEN", input_text="s3cr3t-value\n")
    p.cli("photon", "create", "--name", "victim", "-m", "app.py:Hostile", "--path",
          str(_bundle(tmp_path, "victim")))
    p.cli("photon", "create", "--name", "hostile", "-m", "app.py:Hostile", "--path",
          str(_bundle(tmp_path, "hostile")))
    p.cli("deployment", "create", "--name", "victim", "--photon", "victim",
          "--env", "VICTIM_SECRET=env-value-42", "--secret", "VICTIM_TOKEN")
    p.cli("deployment", "create", "--name", "hostile", "--photon", "hostile")
    victim = p.wait_ready("victim", 1)[0]
    hostile = p.wait_ready("hostile", 1)[0]
    work = _work_root(data)
    victim_bundle = work / victim["id"] / "bundle" / "app.py"
    assert victim_bundle.exists()            # it is there; the hostile replica cannot see it
    artifact = next((data / "artifacts").iterdir())
    reads = [*secrets_, f"/proc/{victim['pid']}/environ", str(victim_bundle),
             str(artifact / "app.py"), str(data / "logs" / f"{victim['id']}.log")]
    writes = [str(data / "pwned"), str(data / "artifacts" / "pwned"),
              str(victim_bundle.parent / "pwned")]
    r = httpx.post(f"{p.url}/run/hostile/probe", headers=p.headers, timeout=30,
                   json={"read": reads, "write": writes})
    assert r.status_code == 200, r.text
    seen = r.json()
    for path in reads + writes:
        assert seen[path].startswith("denied"), (path, seen[path])
    assert token not in r.text
    assert "env-value-42" not in r.text
    assert "s3cr3t-value" not in r.text
    # its own environment holds no platform setting; it sees no other process
    assert "LEPTONIC_DATA_DIR" not in seen["env"]
    assert "LEPTONIC_URL" not in seen["env"]
    if "bubblewrap sandbox" in p.read_log():      # its own pid namespace
        assert str(p.proc.pid) not in seen["pids"].split()
        assert str(victim["pid"]) not in seen["pids"].split()
    if os.geteuid() == 0:                    # a uid of its own, not root, not the victim's
        assert seen["uid"] != "0"
        victim_uid = httpx.post(f"{p.url}/run/victim/probe", headers=p.headers, timeout=30,
                                json={"read": [], "write": []}).json()["uid"]
        assert victim_uid not in ("0", seen["uid"])
    # the victim has its own env and secret all the same
    got = httpx.post(f"{p.url}/run/victim/secret_env", headers=p.headers, json={}, timeout=30)
    assert got.json() == "env-value-42"

    # 3. the platform is unchanged: same files, same modes, same token
    assert p.token == token
    after = _snapshot(data)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not (data / "pwned").exists()
    assert not (data / "artifacts" / "pwned").exists()
    for rel, (mode, _) in after.items():
        assert mode & 0o077 == 0, f"{rel} is {oct(mode)}"
    assert hostile["pid"] != victim["pid"]


async def _timeouts(p: RunningPlatform) -> tuple[list[int], list[float], float]:
    async with httpx.AsyncClient(headers=p.headers, timeout=30) as c:
        url = f"{p.url}/run/hostile"
        started = time.monotonic()
        hung = [asyncio.ensure_future(c.post(f"{url}/sleep", json={"seconds": 30}))
                for _ in range(40)]
        await asyncio.sleep(0.3)
        latencies = []
        for _ in range(5):
            t0 = time.monotonic()
            r = await c.post(f"{url}/info", json={})
            assert r.status_code == 200
            latencies.append(time.monotonic() - t0)
        codes = [x.status_code for x in await asyncio.gather(*hung)]
        return codes, latencies, time.monotonic() - started


def test_hanging_handler_times_out_and_others_keep_answering(platform: RunningPlatform,
                                                              tmp_path: Path) -> None:
    p = platform
    p.cli("photon", "create", "--name", "hostile", "-m", "app.py:Hostile", "--path",
          str(_bundle(tmp_path, "hostile")))
    p.cli("deployment", "create", "--name", "hostile", "--photon", "hostile")
    p.wait_ready("hostile", 1)
    codes, latencies, took = asyncio.run(_timeouts(p))
    assert codes == [504] * 40
    assert took < 5.0                        # timeout 1 s: on time, not after 30 s
    assert max(latencies) < 1.0, latencies
    r = httpx.post(f"{p.url}/run/hostile/sleep", headers=p.headers, json={"seconds": 5},
                   timeout=30)
    assert r.status_code == 504
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "did not answer within 1s" in r.json()["detail"]


def test_memory_hog_is_killed_as_oomkilled(platform: RunningPlatform,
                                           tmp_path: Path) -> None:
    p = platform
    p.cli("photon", "create", "--name", "hog", "-m", "app.py:Hostile", "--path",
          str(_bundle(tmp_path, "hog")))
    p.cli("deployment", "create", "--name", "hog", "--photon", "hog",
          "--memory-limit", "300Mi")
    first = p.wait_ready("hog", 1)[0]
    r = httpx.post(f"{p.url}/run/hog/hog", headers=p.headers, timeout=60,
                   json={"mb_per_step": 20, "steps": 60})
    assert r.status_code >= 500            # the replica died under it
    deadline = time.monotonic() + 30
    events = ""
    while time.monotonic() < deadline:
        events = p.cli("deployment", "events", "hog", "--output", "json").stdout
        if "OOMKilled" in events:
            break
        time.sleep(0.3)
    assert "OOMKilled" in events
    assert "300 MiB" in events
    dep = p.api("GET", "/deployments/hog").json()
    replicas = p.replicas("hog")
    assert any(x.get("reason") == "OOMKilled" for x in replicas) or \
        "OOMKilled" in (dep["status"].get("last_error") or "")
    # and it is replaced by a fresh replica
    again = p.wait_ready("hog", 1, timeout=60, exclude_pids={first["pid"]})
    assert again[0]["pid"] != first["pid"]


def test_a_replica_whose_workers_all_hang_is_replaced(platform: RunningPlatform,
                                                      tmp_path: Path) -> None:
    p = platform
    p.cli("photon", "create", "--name", "stuck", "-m", "app.py:Hostile", "--path",
          str(_bundle(tmp_path, "stuck")))
    # one worker, one write-off allowed: two hung calls leave nothing to serve with
    p.cli("deployment", "create", "--name", "stuck", "--photon", "stuck",
          "--max-concurrency", "1")
    first = p.wait_ready("stuck", 1)[0]
    for _ in range(2):
        r = httpx.post(f"{p.url}/run/stuck/sleep", headers=p.headers, timeout=30,
                       json={"seconds": 120})
        assert r.status_code == 504
    started = time.monotonic()
    again = p.wait_ready("stuck", 1, timeout=30, exclude_pids={first["pid"]})
    took = time.monotonic() - started
    assert again[0]["pid"] != first["pid"]
    assert took < 15, took                   # 2x the timeout, then 3 probes a second apart
    events = p.cli("deployment", "events", "stuck", "--output", "json").stdout
    assert "liveness" in events
    r = httpx.post(f"{p.url}/run/stuck/info", headers=p.headers, json={}, timeout=30)
    assert r.status_code == 200
