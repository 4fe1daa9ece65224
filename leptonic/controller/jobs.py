"""The jobs phase: observe attempts, plan each job with ``core.jobs``, persist, then act.

Per tick: every running attempt is polled; one that ended is finished here (a success's
output folder copied into the content-addressed artifact store, within the job's size
limit; a failure's last log lines kept) and only then marked ended, so its index can
never have a second attempt running beside it. Then the live jobs, highest priority
first, are planned (``plan_job``); the new status is stored before any attempt is started
or stopped. An attempt row is written (``running``, its node chosen by the scheduler
among replicas and other attempts) before its process starts, so a control plane killed
between the two finds it on restart: adopted when its process lives or has left its exit
status, else failed as ``Lost`` and retried, after every unaccounted process of ours was
killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets as _secrets
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, cast

from leptonic.controller.context import ControllerContext
from leptonic.controller.held import held_work
from leptonic.controller.model_tasks import finish as finish_model_task
from leptonic.core.jobs import (
    Held,
    JobPlan,
    RemoveJob,
    StartAttempt,
    StopAttempt,
    attempt_resources,
    place_attempt,
    plan_job,
    preemption,
    queue_order,
    request_of,
    shares,
)
from leptonic.core.models import (
    AttemptState,
    Job,
    JobAttempt,
    JobPhase,
    JobReason,
    Node,
    Replica,
)
from leptonic.errors import BackendError, LeptonicError, OutputTooLarge
from leptonic.runtime.base import AttemptBackend, AttemptHandle, AttemptLaunch, ProcessState

log = logging.getLogger(__name__)

TTL_SWEEP_S = 1.0           # finished jobs are looked at for their TTL this often
STOP_GRACE_S = 5.0


def attempt_id(job: str, index: int, number: int) -> str:
    return f"{job}-{index}-{number}-{_secrets.token_hex(2)}"


class JobController:
    """``tick(replicas)`` converges every live job; ``recover()`` after a restart."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.nodes: list[Node] = []              # the node phase's latest snapshot
        self._waiting: dict[str, str] = {}       # job -> why its last start found no node
        self._swept_at = 0.0
        self._inputs: dict[str, list[bytes]] = {}   # inputs digest -> lines (cached)

    @property
    def backend(self) -> AttemptBackend:
        return cast(AttemptBackend, self.ctx.backend)

    # -- restart ------------------------------------------------------------------------------
    async def recover(self, wake: Any = None) -> None:
        """Adopt running attempts (alive, or ended with their status kept); fail the rest
        as Lost; stop processes of ours that no adopted attempt accounts for, before any
        new attempt can start."""
        ctx = self.ctx
        if wake is not None and hasattr(ctx.backend, "on_attempt_exit"):
            ctx.backend.on_attempt_exit = wake        # an ending attempt wakes the loop
        running = await ctx.db(ctx.store.list_attempts, running=True)
        adopted: set[str] = set()
        for a in running:
            ok = False
            with contextlib.suppress(LeptonicError):
                ok = await self.backend.adopt_attempt(AttemptHandle(
                    a.id, a.node, pid=a.pid, log_path=a.log_path,
                    memory_mb=None))
            if ok:
                adopted.add(a.id)
        killed = await self.backend.kill_orphan_attempts(adopted)
        lost = [a for a in running if a.id not in adopted]
        for a in lost:
            await self._ended(a, ProcessState(a.id, False, None, "Lost",
                                              "was gone after a control-plane restart"),
                              collect=False)
        if adopted or lost or killed:
            log.info("jobs recovered: %d attempt(s) adopted, %d lost, %d orphan(s) stopped",
                     len(adopted), len(lost), killed)

    async def interrupt_all(self) -> None:
        """Platform shutdown (one control plane on embedded SQLite): stop every running
        attempt; they are retried on the next start without counting as failures."""
        ctx = self.ctx
        for a in await ctx.db(ctx.store.list_attempts, running=True):
            with contextlib.suppress(LeptonicError):
                await self.backend.stop_attempt(a.id, grace_s=2.0)
            await ctx.db(ctx.store.upsert_attempt, a.model_copy(update={
                "state": AttemptState.STOPPED, "reason": "Interrupted",
                "message": "the platform was stopped", "finished_at": ctx.clock()}))

    # -- the tick -------------------------------------------------------------------------------
    async def tick(self, replicas: list[Replica]) -> None:
        ctx = self.ctx
        now = ctx.clock()
        jobs = {j.name: j for j in await ctx.db(ctx.store.list_jobs, live=True)}
        running = await ctx.db(ctx.store.list_attempts, running=True)
        stragglers = {a.job for a in running if a.job not in jobs}
        sweep = now - self._swept_at >= TTL_SWEEP_S
        if stragglers or sweep:
            for j in await ctx.db(ctx.store.list_jobs):
                if j.name in stragglers or (sweep and j.spec.ttl_after_finished_s is not None):
                    jobs.setdefault(j.name, j)
            self._swept_at = now if sweep else self._swept_at
        for a in running:
            await self._observe(a, jobs.get(a.job))
        if not jobs:
            return
        held = await held_work(ctx, replicas)
        for job in queue_order(jobs.values()):
            try:
                await self._reconcile(job, held)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciling job %s failed; will retry", job.name)

    async def _observe(self, a: JobAttempt, job: Job | None) -> None:
        try:
            state = await self.backend.poll_attempt(a.id)
        except LeptonicError as exc:
            state = ProcessState(a.id, False, None, "Lost", exc.detail)
        if not state.alive:
            await self._ended(a, state, job=job)

    async def _ended(self, a: JobAttempt, state: ProcessState, *, job: Job | None = None,
                     collect: bool = True) -> None:
        """Record how an attempt ended (collecting a success's output first), release it."""
        ctx = self.ctx
        now = ctx.clock()
        update: dict[str, Any] = {"exit_code": state.exit_code, "finished_at": now,
                                  "pid": None}
        if state.exit_code == 0 and state.reason is None and collect:
            update.update(await self._collect(a, job))
        else:
            tail = self.backend.attempt_log_tail(a.id, 20)
            lines = "\n".join(tail[-10:])
            reason = state.reason or ("Killed" if (state.exit_code or 0) < 0 else "Error")
            why = state.message or (f"exited with code {state.exit_code}"
                                    if state.exit_code is not None else "ended")
            update.update({"state": AttemptState.FAILED, "reason": reason,
                           "message": f"{reason}: attempt {a.id} {why}"
                                      + (f"\n{lines}" if lines else "")})
        new = a.model_copy(update=update)
        await ctx.db(ctx.store.upsert_attempt, new)
        with contextlib.suppress(LeptonicError, OSError):
            await self.backend.release_attempt(a.id)
        if new.state is AttemptState.SUCCEEDED:
            await ctx.event(f"job/{a.job}", "AttemptSucceeded",
                            f"index {a.index} attempt {a.number} ({a.id}) succeeded on node "
                            f"{a.node}: {new.output_files} output file(s), "
                            f"{new.output_bytes} bytes")
        else:
            first = (new.message or "").splitlines()[0] if new.message else ""
            await ctx.event(f"job/{a.job}", "AttemptFailed",
                            f"index {a.index} attempt {a.number} ({a.id}) {first}", "Warning")

    async def _collect(self, a: JobAttempt, job: Job | None) -> dict[str, Any]:
        """Copy a successful attempt's output folder into the artifact store."""
        ctx = self.ctx
        if job is None:
            return {"state": AttemptState.SUCCEEDED}
        others = [x for x in await ctx.db(ctx.store.list_attempts, a.job)
                  if x.state is AttemptState.SUCCEEDED and x.index != a.index]
        room = job.spec.max_output_mb * 2**20 - sum(x.output_bytes for x in others)
        staging = await asyncio.to_thread(_staging, Path(ctx.artifacts.root))
        try:
            files, size = await self.backend.collect_output(a.id, str(staging), max(0, room))
            digest = await asyncio.to_thread(ctx.artifacts.commit, staging) if files else None
        except OutputTooLarge as exc:
            return {"state": AttemptState.FAILED, "reason": JobReason.OUTPUT_TOO_LARGE.value,
                    "message": f"index {a.index}: {exc.detail}; the job keeps at most "
                               f"{job.spec.max_output_mb} MiB of output"}
        except LeptonicError as exc:
            return {"state": AttemptState.FAILED, "reason": "OutputLost",
                    "message": f"its output could not be collected: {exc.detail}"}
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        return {"state": AttemptState.SUCCEEDED, "output": digest, "output_bytes": size,
                "output_files": files}

    async def _reconcile(self, job: Job, held: list[Held]) -> None:
        ctx = self.ctx
        now = ctx.clock()
        attempts = await ctx.db(ctx.store.list_attempts, job.name)
        plan = plan_job(job, attempts, now, self._waiting.get(job.name))
        status = self._with_output(plan, attempts)
        if status.phase is JobPhase.SUCCEEDED and job.status.phase is not JobPhase.SUCCEEDED \
                and job.spec.model_task is not None:
            # the registry's job: take its model in before it is Succeeded (a restart in
            # between finds the version by its lineage and does not register it twice)
            why = await asyncio.to_thread(finish_model_task, ctx, job, attempts)
            if why is not None:
                status = status.model_copy(update={
                    "phase": JobPhase.FAILED, "reason": JobReason.REGISTER_FAILED.value,
                    "message": why})
        if _differs(status, job.status):        # persist the decision, then act on it
            await ctx.db(ctx.store.set_job_status, job.name, status)
            if status.phase != job.status.phase:
                kind = "Warning" if status.phase is JobPhase.FAILED else "Normal"
                what = f" ({status.reason})" if status.phase is JobPhase.FAILED else ""
                await ctx.event(f"job/{job.name}", f"Job{status.phase.value}",
                                f"{status.phase.value}{what}: {status.message}", kind)
        by_id = {a.id: a for a in attempts}
        self._waiting.pop(job.name, None)       # this tick's starts say it again
        placed: list[JobAttempt] = []
        for action in plan.actions:
            match action:
                case StopAttempt(attempt_id=aid, reason=why, message=msg):
                    await self._stop(by_id[aid], why, msg, held)
                case RemoveJob(why=why):
                    await self._remove(job, why)
                    return
                case StartAttempt():
                    if job.name in self._waiting:
                        continue        # the one before found no node: nor will this one
                    a = await self._place(job, action, attempts, held)
                    if a is not None:
                        placed.append(a)
                        attempts = [*attempts, a]
        # placed one by one (each counts against the next), started all at once: a Ray
        # attempt's actor takes a while to come up, and parallelism should not wait on it
        results = await asyncio.gather(*(self._start(job, a, held) for a in placed))
        started = any(results)
        if started or job.name in self._waiting:
            # what the starts made of it (Running at once, or why it waits): status only
            attempts = await ctx.db(ctx.store.list_attempts, job.name)
            after = plan_job(job.model_copy(update={"status": status}), attempts, now,
                             self._waiting.get(job.name))
            fresh = self._with_output(after, attempts)
            if _differs(fresh, status):
                await ctx.db(ctx.store.set_job_status, job.name, fresh)

    def _with_output(self, plan: JobPlan, attempts: list[JobAttempt]) -> Any:
        done = [a for a in attempts if a.state is AttemptState.SUCCEEDED]
        return plan.status.model_copy(update={
            "output_bytes": sum(a.output_bytes for a in done),
            "output_files": sum(a.output_files for a in done)})

    async def _stop(self, a: JobAttempt, reason: str, message: str, held: list[Held]) -> None:
        ctx = self.ctx
        with contextlib.suppress(LeptonicError):
            await self.backend.stop_attempt(a.id, grace_s=STOP_GRACE_S)
        await ctx.db(ctx.store.upsert_attempt, a.model_copy(update={
            "state": AttemptState.STOPPED, "reason": reason, "message": message,
            "finished_at": ctx.clock(), "pid": None}))
        held[:] = [h for h in held if h.key != a.id]
        await ctx.event(f"job/{a.job}", "AttemptStopped",
                        f"index {a.index} attempt {a.number} ({a.id}) stopped: {reason}: "
                        f"{message}", "Warning" if reason == "Preempted" else "Normal")

    async def _remove(self, job: Job, why: str) -> None:
        ctx = self.ctx
        digests = await ctx.db(ctx.store.remove_job, job.name)
        in_use = await ctx.db(ctx.store.job_digests_in_use)
        for digest in digests - in_use:
            if not await ctx.db(ctx.store.digest_in_use, digest):
                await asyncio.to_thread(ctx.artifacts.remove, digest)
        self._waiting.pop(job.name, None)
        await ctx.event(f"job/{job.name}", "Deleted", f"job removed: {why}")

    async def _place(self, job: Job, start: StartAttempt, attempts: list[JobAttempt],
                     held: list[Held]) -> JobAttempt | None:
        """Place one attempt and store its row (``running``, before its process starts);
        None when no node has room."""
        ctx = self.ctx
        nodes = self.nodes or await ctx.backend.nodes()
        request = request_of(job, nodes)
        spread = Counter(a.node for a in attempts if a.state is AttemptState.RUNNING)
        placed = place_attempt(nodes, request, held, spread, job.spec.placement.policy)
        node = placed.node
        if node is None:
            pre = preemption(nodes, request, job.spec.priority, held, spread)
            if pre.node is None:
                self._waiting[job.name] = placed.reason
                return None
            victims = {a.id: a for a in await ctx.db(ctx.store.list_attempts, running=True)}
            for vid in pre.victims:
                if vid in victims:
                    await self._stop(victims[vid], "Preempted",
                                     f"preempted by job {job.name} (priority "
                                     f"{job.spec.priority})", held)
            node = pre.node
        now = ctx.clock()
        resources = attempt_resources(job.spec)
        a = JobAttempt(id=attempt_id(job.name, start.index, start.number), job=job.name,
                       index=start.index, number=start.number, state=AttemptState.RUNNING,
                       node=node, created_at=now, started_at=now, resources=resources,
                       priority=job.spec.priority)
        await ctx.db(ctx.store.upsert_attempt, a)         # the row first, then the process
        held.append(Held(a.id, node, request, job.spec.priority, now))
        return a

    async def _start(self, job: Job, a: JobAttempt, held: list[Held]) -> bool:
        """Start a placed attempt's process; True once it runs."""
        ctx = self.ctx
        node = a.node
        try:
            launch = await self._launch(job, a)
            handle = await self.backend.start_attempt(launch)
        except LeptonicError as exc:
            await ctx.db(ctx.store.upsert_attempt, a.model_copy(update={
                "state": AttemptState.FAILED, "reason": "StartFailed", "finished_at":
                ctx.clock(), "message": f"StartFailed: {exc.detail}"}))
            held[:] = [h for h in held if h.key != a.id]
            await ctx.event(f"job/{job.name}", "AttemptFailed",
                            f"index {a.index} attempt {a.number} could not start: "
                            f"{exc.detail}", "Warning")
            return False
        await ctx.db(ctx.store.upsert_attempt, a.model_copy(update={
            "pid": handle.pid, "log_path": handle.log_path, "node": handle.node}))
        await ctx.event(f"job/{job.name}", "AttemptStarted",
                        f"index {a.index} attempt {a.number} ({a.id}) on node {node}"
                        + (f" (pid {handle.pid})" if handle.pid else ""))
        return True

    async def _launch(self, job: Job, a: JobAttempt) -> AttemptLaunch:
        ctx = self.ctx
        spec = job.spec
        # the index count, as Kubernetes' indexed Jobs leave it to the pod spec: here given
        env = {"JOB_COMPLETIONS": str(spec.completions), **spec.env}
        for secret in spec.secrets:         # decrypted only here, on the way to the process
            if ctx.secrets is None:
                raise BackendError(f"secret {secret!r} is needed but this platform has no "
                                   "secrets key")
            ciphertext = await ctx.db(ctx.store.secret_ciphertext, secret)
            env[secret] = ctx.secrets.decrypt(ciphertext)
        res = a.resources or attempt_resources(spec)
        common: dict[str, Any] = {
            "attempt_id": a.id, "job": job.name, "index": a.index, "number": a.number,
            "env": env, "memory_mb": spec.memory_limit_mb, "node": a.node,
            "cpu_request": res.cpu, "memory_request_mb": res.memory_mb,
            "gpu_request": res.gpu}
        if spec.command is not None:
            bundle = str(ctx.artifacts.path(spec.code)) if spec.code else None
            return AttemptLaunch(command=spec.command, bundle_dir=bundle, **common)
        assert spec.photon is not None
        pv = await ctx.db(ctx.store.get_photon, spec.photon, spec.photon_version)
        lines = await self._input_lines(spec.inputs)
        start, stop = shares(len(lines), spec.completions)[a.index]
        return AttemptLaunch(entry=pv.entry, handler=spec.handler,
                             bundle_dir=str(ctx.artifacts.path(pv.digest)),
                             inputs=b"".join(lines[start:stop]), **common)

    async def _input_lines(self, digest: str | None) -> list[bytes]:
        if digest is None:
            return []
        if digest not in self._inputs:
            path = Path(self.ctx.artifacts.path(digest)) / "inputs.jsonl"
            data = await asyncio.to_thread(path.read_bytes)
            lines = [line + b"\n" for line in data.splitlines() if line.strip()]
            if len(self._inputs) > 16:
                self._inputs.clear()
            self._inputs[digest] = lines
        return self._inputs[digest]


def _staging(root: Path) -> Path:
    """A fresh staging folder in the artifact store (swept after a crash like uploads)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=root))


def _differs(a: Any, b: Any) -> bool:
    return bool(a.model_dump(exclude={"updated_at"}) != b.model_dump(exclude={"updated_at"}))
