"""Roles and the permission table: which role each ``/api/v1`` route needs.

    viewer     reads everything except users, tokens and the audit log
    developer  viewer + creates/updates/deletes photons, deployments, jobs, models, secrets
    admin      developer + users, API tokens, the audit log, cordoning and draining nodes

Every route has an explicit rule in ``RULES`` (a test walks the app and fails on a route
without one). A route missing from the table still gets a safe default at run time:
reads need ``viewer``, writes need ``admin``.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 0, Role.DEVELOPER: 1, Role.ADMIN: 2}

V, D, A = Role.VIEWER, Role.DEVELOPER, Role.ADMIN
PUBLIC = None       # no token needed (login, registration with an invitation)

#: (method, route path template) -> the least role that may call it
RULES: dict[tuple[str, str], Role | None] = {
    ("GET", "/api/v1/status"): V,
    # photons
    ("POST", "/api/v1/photons"): D,
    ("GET", "/api/v1/photons"): V,
    ("GET", "/api/v1/photons/{name}"): V,
    ("GET", "/api/v1/photons/{name}/versions/{version}"): V,
    ("DELETE", "/api/v1/photons/{name}"): D,
    # deployments
    ("POST", "/api/v1/deployments"): D,
    ("GET", "/api/v1/deployments"): V,
    ("GET", "/api/v1/deployments/{name}"): V,
    ("PATCH", "/api/v1/deployments/{name}"): D,
    ("DELETE", "/api/v1/deployments/{name}"): D,
    ("GET", "/api/v1/deployments/{name}/replicas"): V,
    ("GET", "/api/v1/deployments/{name}/events"): V,
    ("GET", "/api/v1/deployments/{name}/logs"): V,
    # rollouts
    ("GET", "/api/v1/deployments/{name}/rollout"): V,
    ("POST", "/api/v1/deployments/{name}/rollout/pause"): D,
    ("POST", "/api/v1/deployments/{name}/rollout/resume"): D,
    ("POST", "/api/v1/deployments/{name}/rollout/promote"): D,
    ("POST", "/api/v1/deployments/{name}/rollout/abort"): D,
    ("POST", "/api/v1/deployments/{name}/rollback"): D,
    ("GET", "/api/v1/deployments/{name}/routes"): V,
    # live model monitoring
    ("POST", "/api/v1/deployments/{name}/feedback"): D,
    ("GET", "/api/v1/deployments/{name}/model-metrics"): V,
    # cluster
    ("GET", "/api/v1/replicas"): V,
    ("GET", "/api/v1/nodes"): V,
    ("GET", "/api/v1/nodes/{name}"): V,
    ("POST", "/api/v1/nodes/{name}/cordon"): A,
    ("POST", "/api/v1/nodes/{name}/uncordon"): A,
    ("POST", "/api/v1/nodes/{name}/drain"): A,
    ("GET", "/api/v1/nodes/{name}/power"): V,
    ("PUT", "/api/v1/nodes/{name}/power"): A,
    ("DELETE", "/api/v1/nodes/{name}/power"): A,
    ("GET", "/api/v1/energy"): V,
    # usage, prices, budgets
    ("GET", "/api/v1/usage"): V,
    ("GET", "/api/v1/usage/events"): V,
    ("GET", "/api/v1/usage/runs"): V,
    ("GET", "/api/v1/prices"): V,
    ("PUT", "/api/v1/prices/{resource}"): A,
    ("DELETE", "/api/v1/prices/{resource}"): A,
    ("POST", "/api/v1/budgets"): D,
    ("GET", "/api/v1/budgets"): V,
    ("GET", "/api/v1/budgets/{name}"): V,
    ("DELETE", "/api/v1/budgets/{name}"): D,
    ("GET", "/api/v1/events"): V,
    # the model registry
    ("POST", "/api/v1/models/{name}/versions"): D,
    ("GET", "/api/v1/models"): V,
    ("GET", "/api/v1/models/{name}"): V,
    ("GET", "/api/v1/models/{name}/versions/{ref}"): V,
    ("GET", "/api/v1/models/{name}/versions/{ref}/artifact"): V,
    ("PUT", "/api/v1/models/{name}/aliases/{alias}"): D,
    ("DELETE", "/api/v1/models/{name}/aliases/{alias}"): D,
    ("GET", "/api/v1/models/{name}/history"): V,
    ("DELETE", "/api/v1/models/{name}/versions/{version}"): D,
    ("DELETE", "/api/v1/models/{name}"): D,
    ("POST", "/api/v1/models/{name}/train"): D,
    ("POST", "/api/v1/models/{name}/versions/{ref}/evaluate"): D,
    # jobs
    ("POST", "/api/v1/jobs"): D,
    ("GET", "/api/v1/jobs"): V,
    ("GET", "/api/v1/jobs/{name}"): V,
    ("GET", "/api/v1/jobs/{name}/attempts"): V,
    ("GET", "/api/v1/jobs/{name}/events"): V,
    ("GET", "/api/v1/jobs/{name}/logs"): V,
    ("GET", "/api/v1/jobs/{name}/output"): V,
    ("POST", "/api/v1/jobs/{name}/cancel"): D,
    ("DELETE", "/api/v1/jobs/{name}"): D,
    # auth
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/register"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): V,
    ("GET", "/api/v1/auth/whoami"): V,
    ("POST", "/api/v1/users"): A,
    ("GET", "/api/v1/users"): A,
    ("GET", "/api/v1/users/{username}"): A,
    ("PATCH", "/api/v1/users/{username}"): A,
    ("DELETE", "/api/v1/users/{username}"): A,
    ("POST", "/api/v1/invitations"): A,
    ("POST", "/api/v1/tokens"): A,
    ("GET", "/api/v1/tokens"): A,
    ("DELETE", "/api/v1/tokens/{token_id}"): A,
    ("POST", "/api/v1/secrets"): D,
    ("GET", "/api/v1/secrets"): V,
    ("PUT", "/api/v1/secrets/{name}"): D,
    ("DELETE", "/api/v1/secrets/{name}"): D,
    ("GET", "/api/v1/audit"): A,
    # observability: metrics, alert rules
    ("GET", "/api/v1/metrics/query"): V,
    ("GET", "/api/v1/metrics/latest"): V,
    ("POST", "/api/v1/alerts"): D,
    ("GET", "/api/v1/alerts"): V,
    ("GET", "/api/v1/alerts/{name}"): V,
    ("DELETE", "/api/v1/alerts/{name}"): D,
    ("GET", "/api/v1/alerts/{name}/notifications"): V,
}

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_role(method: str, path: str) -> Role | None:
    """The least role for ``method path`` (a route template); None means public."""
    key = (method.upper(), path)
    if key in RULES:
        return RULES[key]
    return V if method.upper() in _READS else A


def has_rule(method: str, path: str) -> bool:
    return (method.upper(), path) in RULES
