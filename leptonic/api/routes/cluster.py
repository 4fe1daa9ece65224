"""Replicas, nodes and events across the platform.

Nodes are observed by the controller; what an admin asks of one (cordon, drain) is its
``control``, and how it draws power (an override of its power model) its ``power``: both
written here only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from leptonic.api.deps import ApiPlatform, get_platform
from leptonic.core.models import Event, Node, NodeControl, Replica
from leptonic.core.power import PowerModelError, check_override
from leptonic.errors import InvalidInput
from leptonic.observe.energy import power_info

router = APIRouter(tags=["cluster"])


@router.get("/replicas", response_model=list[Replica])
def list_replicas(deployment: str | None = None,
                  platform: ApiPlatform = Depends(get_platform)) -> list[Replica]:
    if deployment is not None:
        platform.store.get_deployment(deployment)
    return list(platform.store.list_replicas(deployment))


@router.get("/nodes", response_model=list[Node])
def list_nodes(platform: ApiPlatform = Depends(get_platform)) -> list[Node]:
    return list(platform.store.list_nodes())


@router.get("/nodes/{name}", response_model=Node)
def get_node(name: str, platform: ApiPlatform = Depends(get_platform)) -> Node:
    """A node by name, or by its runtime id (or a unique prefix of it)."""
    node: Node = platform.store.get_node(name)
    return node


def _control(platform: ApiPlatform, name: str, change: Callable[[NodeControl], NodeControl],
             reason: str, message: str) -> Node:
    current: Node = platform.store.get_node(name)       # 404 before anything is written
    node: Node = platform.store.set_node_control(current.name, change(current.control))
    platform.store.add_event(f"node/{node.name}", reason, message)
    platform.wake()
    return node


@router.post("/nodes/{name}/cordon", response_model=Node)
def cordon_node(name: str, platform: ApiPlatform = Depends(get_platform)) -> Node:
    """No new replicas on the node; those it runs stay."""
    return _control(platform, name, lambda c: c.model_copy(update={"cordoned": True}),
                    "Cordoned", "cordoned: no new replicas are placed here")


@router.post("/nodes/{name}/uncordon", response_model=Node)
def uncordon_node(name: str, platform: ApiPlatform = Depends(get_platform)) -> Node:
    """The node takes new replicas again (a drain in progress stops)."""
    return _control(platform, name, lambda _: NodeControl(), "Uncordoned",
                    "uncordoned: new replicas may be placed here")


@router.post("/nodes/{name}/drain", response_model=Node)
def drain_node(name: str, platform: ApiPlatform = Depends(get_platform)) -> Node:
    """Cordon the node and move its replicas elsewhere (a new replica is ready on another
    node before an old one stops, as in a rolling update)."""
    return _control(platform, name, lambda _: NodeControl(cordoned=True, draining=True),
                    "Draining", "draining: its replicas are moved to other nodes")


Watts = Annotated[float, Field(le=1e6)]


class PowerOverride(BaseModel):
    """A node's power model, replacing its defaults: CPU watts as ``idle_w`` and ``max_w``
    (linear) or an 11-point ``table`` (watts at 0%, 10%, ..., 100% utilisation); the same
    per GPU (``gpu_*``); standby watts and the seconds it takes to wake."""

    # negative watts and falling tables are left to core.power, whose message names the
    # point; here only what no node could draw (a megawatt, infinity)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    idle_w: Watts | None = None
    max_w: Watts | None = None
    table: list[Watts] | None = Field(None, max_length=64)
    gpu_idle_w: Watts | None = None
    gpu_max_w: Watts | None = None
    gpu_table: list[Watts] | None = Field(None, max_length=64)
    standby_w: Watts | None = None
    wake_s: float | None = Field(None, le=86400.0)


@router.get("/nodes/{name}/power")
def get_node_power(name: str, platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """The node's power model, its override, where its watts come from (``rapl``,
    ``override`` or ``model``) and what it draws now."""
    return power_info(platform.observe.energy, platform.store.get_node(name))


@router.put("/nodes/{name}/power")
def set_node_power(name: str, body: PowerOverride,
                   platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """Replace the node's power override (422 naming the table point that is wrong)."""
    current: Node = platform.store.get_node(name)
    try:
        override = check_override(body.model_dump(exclude_none=True))
    except PowerModelError as exc:
        raise InvalidInput(f"node {current.name}: {exc}") from exc
    node: Node = platform.store.set_node_power(current.name, override)
    platform.store.add_event(f"node/{node.name}", "PowerSet",
                             "power model overridden: " + ", ".join(
                                 f"{k}={v}" for k, v in override.items()))
    return power_info(platform.observe.energy, node)


@router.delete("/nodes/{name}/power")
def reset_node_power(name: str, platform: ApiPlatform = Depends(get_platform)) -> dict[str, Any]:
    """Drop the node's power override: the defaults for its CPUs and GPU model again."""
    current: Node = platform.store.get_node(name)
    node: Node = platform.store.set_node_power(current.name, None)
    if current.power:
        platform.store.add_event(f"node/{node.name}", "PowerReset",
                                 "power model back to the defaults")
    return power_info(platform.observe.energy, node)


@router.get("/events", response_model=list[Event])
def list_events(object: str | None = Query(None, max_length=160),
                limit: int = Query(100, ge=1, le=1000),
                platform: ApiPlatform = Depends(get_platform)) -> list[Event]:
    return list(platform.store.list_events(object, limit))
