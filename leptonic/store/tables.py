"""The tables. Spec and status are JSON documents of the pydantic models in ``core.models``,
kept in separate columns so the API (spec) and the controllers (status) never overwrite
each other's half of a row."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

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
    Column("data", JSON, nullable=False),
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
)
