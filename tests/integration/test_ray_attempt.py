"""The Ray attempt actor as a plain object (no Ray): it runs the command in its own folder,
keeps the exit code and the output until released, and its output tar holds regular files
only, within the size limit."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from leptonic.runtime.ray_attempt import AttemptActor


async def test_an_attempt_keeps_its_code_output_and_log_until_released() -> None:
    actor = AttemptActor(
        "j-0-1-abcd", ["/bin/sh", "-c", 'echo "index $JOB_COMPLETION_INDEX"; '
                       'echo -n hi > $LEPTONIC_OUTPUT_DIR/a.txt; mkdir $LEPTONIC_OUTPUT_DIR/d; '
                       'echo -n there > $LEPTONIC_OUTPUT_DIR/d/b.txt; '
                       'ln -s /etc/passwd $LEPTONIC_OUTPUT_DIR/link; exit 3'],
        None, None, {"JOB_COMPLETION_INDEX": "0"}, None)
    assert await actor.start() > 0
    status = await actor.wait()
    assert status["exit_code"] == 3
    assert status["alive"] is False
    assert actor.status()["exit_code"] == 3              # kept after the end
    files, size, data = actor.output_tar(1 << 20)
    assert (files, size) == (2, 7)
    assert data is not None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["a.txt", "d/b.txt"]   # the link is not output
    assert actor.output_tar(5)[2] is None                 # past the limit: nothing
    _, log = actor.read_log(0)
    assert b"index 0" in log
    assert b"exited with code 3" in log
    root = actor.root
    await actor.release()
    assert not root.exists()


async def test_stop_ends_the_whole_session() -> None:
    actor = AttemptActor("j-1-1-abcd", ["/bin/sh", "-c", "sleep 30 & sleep 30"], None, None,
                         {}, None)
    await actor.start()
    await actor.stop(grace_s=2.0)
    status = await actor.wait()
    assert status["exit_code"] is not None
    assert status["exit_code"] < 0
    await actor.release()


async def test_an_attempt_is_isolated_from_the_platform_data_dir(tmp_path: Path) -> None:
    """As the control plane asks (:meth:`Isolation.node_spec`): the platform's data dir is
    out of reach, the environment holds only the attempt's own, and as root the command
    runs under the uid the control plane allocated."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "admin-token").write_text("platform-secret")
    (data / "admin-token").chmod(0o600)
    os.environ["LEPTONIC_SECRET_SETTING"] = "do-not-pass"
    try:
        actor = AttemptActor(
            "j-2-1-abcd", ["/bin/sh", "-c", f'id -u; cat {data}/admin-token || echo denied; '
                           'env; echo -n ok > "$LEPTONIC_OUTPUT_DIR/o.txt"'],
            None, None, {"MINE": "yes"}, None,
            {"mode": "auto", "data_dir": str(data), "uid": 61999, "run_as": None})
        await actor.start()
        status = await actor.wait()
    finally:
        del os.environ["LEPTONIC_SECRET_SETTING"]
    _, raw = actor.read_log(0)
    log = raw.decode()
    assert status["exit_code"] == 0, log
    assert "platform-secret" not in log
    assert "denied" in log
    assert "MINE=yes" in log
    assert "LEPTONIC_SECRET_SETTING" not in log
    if os.geteuid() == 0:
        assert "\n61999\n" in log
    assert actor.output_tar(1 << 20)[:2] == (1, 2)     # its output came back all the same
    work = actor.iso.work_root / "j-2-1-abcd"
    assert work.exists()
    await actor.release()
    assert not work.exists()
