"""The repository: every read and write of platform state goes through ``Store``.

Calls are synchronous (SQLAlchemy Core) and short; async callers run them in a thread.
Each method is one transaction, so a crash never leaves half a change behind. Missing
rows raise ``NotFound`` naming the object; name clashes raise ``Conflict``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from leptonic.core.models import (
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    Event,
    HandlerInfo,
    Node,
    NodeControl,
    PhotonVersion,
    Replica,
    Resources,
)
from leptonic.errors import Conflict, GenerationChanged, NotFound
from leptonic.store import tables as t
from leptonic.store.accounts import AccountsMixin
from leptonic.store.jobs import JobsMixin
from leptonic.store.leases import LeasesMixin
from leptonic.store.models import ModelsMixin
from leptonic.store.rollouts import RolloutsMixin

MIGRATIONS = Path(__file__).parent / "migrations"




def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")     # readers never block the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store(AccountsMixin, LeasesMixin, RolloutsMixin, JobsMixin, ModelsMixin):
    """Platform state on SQLite (default) or PostgreSQL."""

    def __init__(self, url: str) -> None:
        super().__init__(_engine(url))
        self.url = url

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revisions (idempotent). Features add
        their tables in their own revisions; independent branches are all applied."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")

    def close(self) -> None:
        self.engine.dispose()


    # -- photons ------------------------------------------------------------------------
    @staticmethod
    def _photon(row: Any) -> PhotonVersion:
        manifest = row.manifest or {}
        return PhotonVersion(
            name=row.name, version=row.version, entry=row.entry, digest=row.digest,
            class_name=row.class_name,
            handlers=[HandlerInfo.model_validate(h) for h in manifest.get("handlers", [])],
            requirements=list(manifest.get("requirements", [])),
            resources=(Resources.model_validate(manifest["resources"])
                       if manifest.get("resources") else None),
            gpu_models=list(manifest.get("gpu_models", [])), created_at=row.created_at)

    def add_photon_version(self, name: str, entry: str, digest: str, class_name: str,
                           handlers: list[HandlerInfo], requirements: list[str],
                           now: float | None = None, resources: Resources | None = None,
                           gpu_models: list[str] | tuple[str, ...] = ()) -> PhotonVersion:
        """Store the next version of ``name`` (1 for a new photon); ``resources`` and
        ``gpu_models``: the defaults of its deployments (a classic resource_shape)."""
        manifest: dict[str, Any] = {"handlers": [h.model_dump() for h in handlers],
                                    "requirements": list(requirements)}
        if resources is not None:
            manifest["resources"] = resources.model_dump()
        if gpu_models:
            manifest["gpu_models"] = list(gpu_models)
        for _ in range(5):     # two uploads racing for the same number: the loser retries
            try:
                with self._tx() as conn:
                    latest = conn.execute(select(func.max(t.photons.c.version))
                                          .where(t.photons.c.name == name)).scalar()
                    version = (latest or 0) + 1
                    conn.execute(insert(t.photons).values(
                        name=name, version=version, entry=entry, digest=digest,
                        class_name=class_name, manifest=manifest,
                        created_at=now if now is not None else time.time()))
                return self.get_photon(name, version)
            except IntegrityError:
                continue
        raise Conflict(f"photon {name!r} is being created concurrently; try again")

    def get_photon(self, name: str, version: int | None = None) -> PhotonVersion:
        """Version ``version`` of ``name``, or its latest version when ``version`` is
        None or 0."""
        q = select(t.photons).where(t.photons.c.name == name)
        if version:
            q = q.where(t.photons.c.version == version)
        q = q.order_by(t.photons.c.version.desc()).limit(1)
        with self._tx() as conn:
            row = conn.execute(q).first()
        if row is None:
            if version:
                raise NotFound(f"photon {name!r} has no version {version}; "
                               f"`leptonic photon get {name}` lists its versions")
            raise NotFound(f"photon {name!r} does not exist; create it with "
                           "`leptonic photon create`")
        return self._photon(row)

    def list_photons(self) -> list[PhotonVersion]:
        """The latest version of every photon, by name."""
        latest = (select(t.photons.c.name, func.max(t.photons.c.version).label("v"))
                  .group_by(t.photons.c.name).subquery())
        q = (select(t.photons).join(latest, (t.photons.c.name == latest.c.name)
                                    & (t.photons.c.version == latest.c.v))
             .order_by(t.photons.c.name))
        with self._tx() as conn:
            return [self._photon(r) for r in conn.execute(q)]

    def list_photon_versions(self, name: str) -> list[PhotonVersion]:
        with self._tx() as conn:
            rows = conn.execute(select(t.photons).where(t.photons.c.name == name)
                                .order_by(t.photons.c.version)).all()
        if not rows:
            raise NotFound(f"photon {name!r} does not exist; create it with "
                           "`leptonic photon create`")
        return [self._photon(r) for r in rows]

    def delete_photon(self, name: str) -> list[str]:
        """Delete every version of ``name``; returns their digests. Refuses (409) while a
        deployment uses it."""
        with self._tx() as conn:
            digests = list(conn.execute(select(t.photons.c.digest)
                                        .where(t.photons.c.name == name)).scalars())
            if not digests:
                raise NotFound(f"photon {name!r} does not exist")
            users = self._photon_users(conn, name)
            if users:
                raise Conflict(f"photon {name!r} is used by deployment(s) "
                               f"{', '.join(sorted(users))}; delete them first")
            # delete first, then look again inside this transaction: the delete holds the
            # rows (PostgreSQL) or the database (SQLite), so a deployment created on the
            # photon meanwhile is either seen here or waits and then finds no photon
            conn.execute(delete(t.photons).where(t.photons.c.name == name))
            users = self._photon_users(conn, name)
            if users:
                raise Conflict(f"photon {name!r} is used by deployment(s) "
                               f"{', '.join(sorted(users))}; delete them first")
        return digests

    @staticmethod
    def _photon_users(conn: Connection, name: str) -> list[str]:
        return [r.name for r in conn.execute(select(t.deployments.c.name,
                                                    t.deployments.c.spec))
                if (r.spec or {}).get("photon") == name]

    @staticmethod
    def _check_photon_kept(conn: Connection, spec: DeploymentSpec) -> None:
        """Inside a transaction that wrote ``spec``: its photon version still exists, and
        stays so until the commit (a shared row lock on PostgreSQL; SQLite's writer holds
        the database). A photon deleted meanwhile rolls the write back."""
        if spec.photon.startswith("builtin:"):
            return
        c = t.photons.c
        q = select(c.id).where((c.name == spec.photon) & (c.version == spec.photon_version))
        if conn.execute(q.with_for_update(read=True)).first() is None:
            raise NotFound(f"photon {spec.photon!r} has no version {spec.photon_version} "
                           "(deleted meanwhile?); `leptonic photon list` shows the photons")

    def digest_in_use(self, digest: str) -> bool:
        with self._tx() as conn:
            return conn.execute(select(func.count()).select_from(t.photons)
                                .where(t.photons.c.digest == digest)).scalar_one() > 0

    # -- deployments ----------------------------------------------------------------------
    @staticmethod
    def _deployment(row: Any) -> Deployment:
        return Deployment(name=row.name, spec=DeploymentSpec.model_validate(row.spec),
                          status=DeploymentStatus.model_validate(row.status),
                          generation=row.generation, deleting=bool(row.deleting),
                          created_at=row.created_at, updated_at=row.updated_at)

    def create_deployment(self, name: str, spec: DeploymentSpec,
                          now: float | None = None) -> Deployment:
        now = time.time() if now is None else now
        try:
            with self._tx() as conn:
                conn.execute(insert(t.deployments).values(
                    name=name, spec=spec.model_dump(mode="json"),
                    status=DeploymentStatus(updated_at=now).model_dump(mode="json"),
                    generation=1, deleting=False, created_at=now, updated_at=now))
                self._check_photon_kept(conn, spec)
        except IntegrityError as exc:
            raise Conflict(f"deployment {name!r} already exists; update it with "
                           f"`leptonic deployment update {name}` or delete it first") from exc
        return self.get_deployment(name)

    def get_deployment(self, name: str) -> Deployment:
        with self._tx() as conn:
            row = conn.execute(select(t.deployments)
                               .where(t.deployments.c.name == name)).first()
        if row is None:
            raise NotFound(f"deployment {name!r} does not exist; "
                           "`leptonic deployment list` shows the deployments")
        return self._deployment(row)

    def list_deployments(self) -> list[Deployment]:
        with self._tx() as conn:
            rows = conn.execute(select(t.deployments).order_by(t.deployments.c.name)).all()
        return [self._deployment(r) for r in rows]

    def update_deployment_spec(self, name: str, spec: DeploymentSpec,
                               now: float | None = None, *, expected_generation: int
                               ) -> Deployment:
        """Replace the spec of the deployment read at ``expected_generation``; the
        generation goes up only when the spec really changed. Raises
        ``GenerationChanged`` when the stored generation is another one (the spec was
        changed since it was read): re-read, apply the change again, retry."""
        now = time.time() if now is None else now
        c = t.deployments.c
        with self._tx() as conn:
            row = conn.execute(select(t.deployments).where(c.name == name)
                               .with_for_update()).first()
            if row is None:
                raise NotFound(f"deployment {name!r} does not exist")
            if row.deleting:
                raise Conflict(f"deployment {name!r} is being deleted")
            new = spec.model_dump(mode="json")
            changed = new != row.spec
            # one conditional UPDATE: on SQLite the SELECT above locks nothing
            res = conn.execute(update(t.deployments)
                               .where((c.name == name) & (c.generation == expected_generation))
                               .values(spec=new,
                                       updated_at=now if changed else c.updated_at,
                                       generation=c.generation + (1 if changed else 0)))
            if res.rowcount == 0:
                raise GenerationChanged(
                    f"deployment {name!r} was changed meanwhile (generation "
                    f"{row.generation}, read at {expected_generation}): read it again and "
                    "apply the change to what it is now")
            self._check_photon_kept(conn, spec)
            # read back in this transaction: what this write made, not a later one
            written = conn.execute(select(t.deployments).where(c.name == name)).one()
        return self._deployment(written)

    def mark_deleting(self, name: str, now: float | None = None) -> Deployment:
        now = time.time() if now is None else now
        with self._tx() as conn:
            res = conn.execute(update(t.deployments).where(t.deployments.c.name == name)
                               .values(deleting=True, updated_at=now))
            if res.rowcount == 0:
                raise NotFound(f"deployment {name!r} does not exist")
        return self.get_deployment(name)

    def set_deployment_status(self, name: str, status: DeploymentStatus) -> None:
        """Controllers only. A deployment deleted meanwhile is silently skipped."""
        with self._tx() as conn:
            conn.execute(update(t.deployments).where(t.deployments.c.name == name)
                         .values(status=status.model_dump(mode="json")))

    def remove_deployment(self, name: str) -> None:
        with self._tx() as conn:
            conn.execute(delete(t.replicas).where(t.replicas.c.deployment == name))
            conn.execute(delete(t.deployments).where(t.deployments.c.name == name))
            conn.execute(delete(t.run_uids).where(t.run_uids.c.owner == name))

    def run_uid(self, owner: str, low: int, high: int) -> int:
        """The uid ``owner``'s user code runs as: its own, else the lowest free one in
        [low, high], kept until the deployment is removed."""
        for _ in range(5):
            with self._tx() as conn:
                uid = conn.execute(select(t.run_uids.c.uid).where(
                    t.run_uids.c.owner == owner)).scalar()
                if uid is not None:
                    return int(uid)
                taken = set(conn.execute(select(t.run_uids.c.uid)).scalars())
            free = next((u for u in range(low, high + 1) if u not in taken), None)
            if free is None:
                raise Conflict(f"all {high - low + 1} uids for user code are in use; "
                               "delete unused deployments")
            try:
                with self._tx() as conn:
                    conn.execute(insert(t.run_uids).values(owner=owner, uid=free))
                return free
            except IntegrityError:
                continue        # another control plane took it meanwhile: look again
        raise Conflict(f"cannot allocate a uid for {owner!r}; try again")

    # -- replicas -------------------------------------------------------------------------
    def list_replicas(self, deployment: str | None = None) -> list[Replica]:
        q = select(t.replicas.c.data)
        if deployment is not None:
            q = q.where(t.replicas.c.deployment == deployment)
        with self._tx() as conn:
            rows = conn.execute(q).scalars().all()
        out = [Replica.model_validate(d) for d in rows]
        out.sort(key=lambda r: (r.deployment, r.created_at, r.id))
        return out

    def upsert_replica(self, replica: Replica) -> None:
        data = replica.model_dump(mode="json")
        with self._tx() as conn:
            t.upsert(conn, t.replicas, {"id": replica.id},
                     {"state": replica.state.value, "data": data,
                      "deployment": replica.deployment})

    def delete_replica(self, replica_id: str) -> None:
        with self._tx() as conn:
            conn.execute(delete(t.replicas).where(t.replicas.c.id == replica_id))

    # -- events ---------------------------------------------------------------------------
    def add_event(self, object: str, reason: str, message: str, *, kind: str = "Normal",
                  time: float | None = None) -> None:
        import time as _time
        with self._tx() as conn:
            conn.execute(insert(t.events).values(
                object=object, reason=reason, message=message[:4000], kind=kind,
                time=_time.time() if time is None else time))

    def list_events(self, object: str | None = None, limit: int = 100) -> list[Event]:
        """Newest first."""
        q = select(t.events)
        if object is not None:
            q = q.where(t.events.c.object == object)
        q = q.order_by(t.events.c.id.desc()).limit(limit)
        with self._tx() as conn:
            rows = conn.execute(q).all()
        return [Event(id=r.id, time=r.time, object=r.object, kind=r.kind, reason=r.reason,
                      message=r.message) for r in rows]

    # -- nodes ----------------------------------------------------------------------------
    def upsert_node(self, node: Node) -> None:
        """Write what the controller observed of a node (its admin control and power
        override are kept)."""
        data = node.model_dump(mode="json", exclude={"control", "power"})
        with self._tx() as conn:
            t.upsert(conn, t.nodes, {"name": node.name}, {"data": data})

    @staticmethod
    def _node(row: Any) -> Node:
        node = Node.model_validate(row.data)
        control = NodeControl.model_validate(row.control or {})
        return node.model_copy(update={"control": control, "power": row.power or None,
                                       "status": node.model_copy(
                                           update={"control": control}).state().value})

    def list_nodes(self) -> list[Node]:
        with self._tx() as conn:
            rows = conn.execute(select(t.nodes.c.data, t.nodes.c.control, t.nodes.c.power)
                                .order_by(t.nodes.c.name)).all()
        return [self._node(r) for r in rows]

    def get_node(self, name: str) -> Node:
        """A node by name, or by its runtime id (or a unique prefix of it)."""
        nodes = self.list_nodes()
        for n in nodes:
            if n.name == name:
                return n
        found = [n for n in nodes if n.id and len(name) >= 6 and n.id.startswith(name)]
        if len(found) == 1:
            return found[0]
        raise NotFound(f"node {name!r} not found; `leptonic node list` shows the nodes")

    def set_node_control(self, name: str, control: NodeControl) -> Node:
        node = self.get_node(name)
        with self._tx() as conn:
            conn.execute(update(t.nodes).where(t.nodes.c.name == node.name)
                         .values(control=control.model_dump(mode="json")))
        return self.get_node(node.name)

    def set_node_power(self, name: str, power: dict[str, Any] | None) -> Node:
        """Store the admin's power override of a node (None: back to the defaults)."""
        node = self.get_node(name)
        with self._tx() as conn:
            conn.execute(update(t.nodes).where(t.nodes.c.name == node.name)
                         .values(power=power))
        return self.get_node(node.name)

    def delete_node(self, name: str) -> None:
        with self._tx() as conn:
            conn.execute(delete(t.nodes).where(t.nodes.c.name == name))

    # -- tokens ---------------------------------------------------------------------------
    def add_token(self, name: str, token_hash: str, role: str,
                  expires_at: float | None = None) -> int:
        with self._tx() as conn:
            res = conn.execute(insert(t.tokens).values(
                name=name, hash=token_hash, role=role, created_at=time.time(),
                expires_at=expires_at, revoked=False))
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def token_by_hash(self, token_hash: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = conn.execute(select(t.tokens).where(t.tokens.c.hash == token_hash)).first()
        return dict(row._mapping) if row is not None else None

    def count_tokens(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(select(func.count()).select_from(t.tokens)).scalar_one())

    def touch_token(self, token_id: int, now: float) -> None:
        with self._tx() as conn:
            conn.execute(update(t.tokens).where(t.tokens.c.id == token_id)
                         .values(last_used_at=now))
