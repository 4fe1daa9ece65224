"""The tables. Spec and status are JSON documents of the pydantic models in ``core.models``,
kept in separate columns so the API (spec) and the controllers (status) never overwrite
each other's half of a row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

metadata = MetaData()

photons = Table(
    "photons", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("entry", String(512), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("class_name", String(256), nullable=False),
    Column("manifest", JSON, nullable=False),      # handlers, requirements
    Column("created_at", Float, nullable=False),
    UniqueConstraint("name", "version", name="uq_photon_version"),
)

deployments = Table(
    "deployments", metadata,
    Column("name", String(64), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("status", JSON, nullable=False),
    Column("generation", Integer, nullable=False, default=1),
    Column("deleting", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

replicas = Table(
    "replicas", metadata,
    Column("id", String(96), primary_key=True),
    Column("deployment", String(64), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("data", JSON, nullable=False),          # the whole core.models.Replica
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("object", String(160), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
)

nodes = Table(
    "nodes", metadata,
    Column("name", String(128), primary_key=True),
    Column("data", JSON, nullable=False),          # core.models.Node, controller-written
    Column("control", JSON, nullable=True),        # core.models.NodeControl, API-written
    Column("power", JSON, nullable=True),          # power override (0008), API-written
)

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),   # sha256 of the token
    Column("role", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    # added by migration 0004 (users and roles)
    Column("kind", String(16), nullable=False, default="api"),   # api|session|invite
    Column("user_id", Integer, nullable=True, index=True),       # the user it acts for
    Column("deployment", String(64), nullable=True),   # only /run/<deployment> when set
    Column("rate_limit_rps", Float, nullable=True),    # gateway requests/s, None: no limit
    Column("created_by", String(128), nullable=True),
)

# -- observability (migration 0003) ---------------------------------------------------------
# Built-in time series: one row per (series, resolution, timestamp) holding every metric of
# that sample as JSON; ``resolution`` 0 is the raw samples, others are downsampled buckets.
metric_samples = Table(
    "metric_samples", metadata,
    Column("series", String(160), primary_key=True),     # "deployment/echo", "node/local"
    Column("resolution", Integer, primary_key=True),     # seconds per point; 0 = raw
    Column("ts", Float, primary_key=True),
    Column("data", JSON, nullable=False),                # {"requests_per_s": 1.5, ...}
    Index("ix_metric_samples_resolution_ts", "resolution", "ts"),
)

alert_rules = Table(
    "alert_rules", metadata,
    Column("name", String(64), primary_key=True),
    Column("deployment", String(64), nullable=True, index=True),   # None: every deployment
    Column("expr", String(500), nullable=False),
    Column("for_s", Float, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("notify", JSON, nullable=False),              # ["webhook:URL", "email:ADDR"]
    Column("description", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

alert_states = Table(
    "alert_states", metadata,
    Column("rule", String(64), primary_key=True),
    Column("target", String(160), primary_key=True),     # "deployment/echo", "node/local"
    Column("state", String(16), nullable=False),         # inactive|pending|firing|resolved
    Column("since", Float, nullable=False),
    Column("value", Float, nullable=True),
    Column("fired_at", Float, nullable=True),
    Column("resolved_at", Float, nullable=True),
    Column("evaluated_at", Float, nullable=False),
)

alert_notifications = Table(
    "alert_notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(400), nullable=False, unique=True),
    Column("rule", String(64), nullable=False, index=True),
    Column("target", String(160), nullable=False),
    Column("destination", Text, nullable=False),         # the clear notify target
    Column("status", String(16), nullable=False),        # pending|sent|failed
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False, index=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
)

# -- users, secrets, audit (migration 0004) --------------------------------------------------
users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),    # argon2id
    Column("role", String(16), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("last_login_at", Float, nullable=True),
)

secrets = Table(
    "secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("ciphertext", Text, nullable=False),              # Fernet token
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("created_by", String(128), nullable=True),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("actor", String(128), nullable=False),            # "user:alice", "token:ci"
    Column("action", String(16), nullable=False),            # HTTP method
    Column("object", String(300), nullable=False),           # the path acted on
    Column("status", Integer, nullable=False),
    Column("source", String(64), nullable=False),            # client address
)

# -- leadership (migration 0005) -------------------------------------------------------------
leases = Table(
    "leases", metadata,
    Column("name", String(64), primary_key=True),            # "controller"
    Column("holder", String(128), nullable=False),           # "host:pid:port:random"
    Column("expires_at", Float, nullable=False),
    Column("renewed_at", Float, nullable=False),
)

# -- rollouts (migration 0002) ---------------------------------------------------------------
# One row per deployment: its latest rollout. ``status`` is the controller's
# core.models.RolloutStatus, ``control`` the user's RolloutControl (pause, promote, abort).
rollouts = Table(
    "rollouts", metadata,
    Column("deployment", String(64), primary_key=True),
    Column("status", JSON, nullable=False),
    Column("control", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# -- isolation (migration 0006) --------------------------------------------------------------
# The uid each deployment's user code runs as, when the platform runs as root: unique, so
# two control planes sharing the database never hand one uid to two deployments.
run_uids = Table(
    "run_uids", metadata,
    Column("owner", String(96), primary_key=True),           # deployment name
    Column("uid", Integer, nullable=False, unique=True),
)

# -- energy (migration 0008) -----------------------------------------------------------------
# Running totals of the live energy accounting, so a restart goes on from where it was.
energy_totals = Table(
    "energy_totals", metadata,
    Column("kind", String(16), primary_key=True),            # "node" | "deployment"
    Column("name", String(128), primary_key=True),
    Column("joules", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# -- jobs (migration 0009) ---------------------------------------------------------------------
# A job's spec (API-written) and status (controller-written) in separate columns, like
# deployments; ``finished`` mirrors the status so the controller reads only live jobs.
jobs = Table(
    "jobs", metadata,
    Column("name", String(64), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("status", JSON, nullable=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("deleting", Boolean, nullable=False, default=False),
    Column("finished", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

job_attempts = Table(
    "job_attempts", metadata,
    Column("id", String(96), primary_key=True),
    Column("job", String(64), nullable=False, index=True),
    Column("idx", Integer, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("data", JSON, nullable=False),          # the whole core.models.JobAttempt
)


# -- the model registry (migration 0010) --------------------------------------------------------
# A version's artifact lives in DATA_DIR/models/<model>/<version>/; its row holds the rest
# (core.registry.ModelVersion). Aliases point at a version; every move is kept.
models = Table(
    "models", metadata,
    Column("name", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(128), nullable=True),
)

model_versions = Table(
    "model_versions", metadata,
    Column("model", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("data", JSON, nullable=False),          # core.registry.ModelVersion (no aliases)
    Column("reference", JSON, nullable=True),      # its drift reference profile
    Column("created_at", Float, nullable=False),
)

model_aliases = Table(
    "model_aliases", metadata,
    Column("model", String(64), primary_key=True),
    Column("alias", String(40), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(128), nullable=True),
)

model_alias_moves = Table(
    "model_alias_moves", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False, index=True),
    Column("alias", String(40), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("at", Float, nullable=False),
    Column("by", String(128), nullable=True),
)

# -- usage, prices and budgets (migration 0011) ---------------------------------------------------
# One row per run (a replica's process, a job attempt) says until when it was metered, so a
# restart goes on from there and never meters a second past twice; what was metered is in
# usage_buckets, one row per run and UTC hour (deployment traffic and node idle capacity
# have buckets of their own, with no run row).
usage_runs = Table(
    "usage_runs", metadata,
    Column("run", String(160), primary_key=True),        # replica id#restarts, attempt id
    Column("kind", String(16), nullable=False),          # replica | attempt
    Column("owner_kind", String(16), nullable=False),    # deployment | job
    Column("owner", String(64), nullable=False),
    Column("user", String(128), nullable=True),           # who created the owner
    Column("labels", JSON, nullable=False),
    Column("node", String(128), nullable=False),
    Column("shape", JSON, nullable=False),               # the last billed cpu, memory, gpu
    Column("started_at", Float, nullable=False),
    Column("until", Float, nullable=False),              # metered up to here
    Column("closed", Boolean, nullable=False, default=False),
)

usage_buckets = Table(
    "usage_buckets", metadata,
    Column("run", String(160), primary_key=True),
    Column("hour", Float, primary_key=True),             # UTC hour start
    Column("owner_kind", String(16), nullable=False),    # deployment | job | node (idle)
    Column("owner", String(128), nullable=False),
    Column("user", String(128), nullable=True),
    Column("labels", JSON, nullable=False),
    Column("node", String(128), nullable=False),
    Column("seconds", Float, nullable=False, default=0.0),
    Column("cpu_s", Float, nullable=False, default=0.0),
    Column("memory_gib_s", Float, nullable=False, default=0.0),
    Column("gpu_s", Float, nullable=False, default=0.0),
    Column("energy_j", Float, nullable=False, default=0.0),
    Column("requests", Float, nullable=False, default=0.0),
    Column("errors", Float, nullable=False, default=0.0),
    Column("cost", Float, nullable=False, default=0.0),
    Index("ix_usage_buckets_hour", "hour"),
)

prices = Table(
    "prices", metadata,
    Column("resource", String(64), primary_key=True),    # cpu, memory, gpu, gpu:A100, energy
    Column("price", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(128), nullable=True),
)

budgets = Table(
    "budgets", metadata,
    Column("name", String(64), primary_key=True),
    Column("data", JSON, nullable=False),                # core.usage.BudgetSpec
    Column("created_at", Float, nullable=False),
    Column("created_by", String(128), nullable=True),
)

# a threshold notified for a month: the primary key makes it exactly once
budget_notices = Table(
    "budget_notices", metadata,
    Column("budget", String(64), primary_key=True),
    Column("month", String(7), primary_key=True),        # 2026-12
    Column("threshold", Float, primary_key=True),        # percent
    Column("spent", Float, nullable=False),
    Column("at", Float, nullable=False),
)


# -- traffic of the other gateways (migration 0012) ----------------------------------------------
# What each follower's gateway counted, for the leader to add to its own (observe/traffic.py).
gateway_traffic = Table(
    "gateway_traffic", metadata,
    Column("holder", String(160), primary_key=True),     # the control plane (leases.holder)
    Column("updated_at", Float, nullable=False),
    Column("data", JSON, nullable=False),
)


def upsert(conn: Connection, table: Table, key: dict[str, Any],
           values: dict[str, Any]) -> None:
    """Insert the row ``key`` + ``values``, or update ``values`` where ``key`` exists,
    in one statement: two writers of one new row (two control planes, a controller
    and an API call) never race into a duplicate key, which an UPDATE-then-INSERT
    does under PostgreSQL's read committed. Columns outside ``values`` keep their
    stored value on update."""
    make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = make(table).values(**key, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=values))
