"""Replicas, nodes and events across the platform.

Nodes are observed by the controller; what an admin asks of one (cordon, drain) is its
``control``, written here only, and the controller acts on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query

from leptonic.api.deps import get_platform
from leptonic.core.models import Event, Node, NodeControl, Replica

router = APIRouter(tags=["cluster"])


@router.get("/replicas", response_model=list[Replica])
def list_replicas(deployment: str | None = None,
                  platform: Any = Depends(get_platform)) -> list[Replica]:
    if deployment is not None:
        platform.store.get_deployment(deployment)
    return list(platform.store.list_replicas(deployment))


@router.get("/nodes", response_model=list[Node])
def list_nodes(platform: Any = Depends(get_platform)) -> list[Node]:
    return list(platform.store.list_nodes())


@router.get("/nodes/{name}", response_model=Node)
def get_node(name: str, platform: Any = Depends(get_platform)) -> Node:
    """A node by name, or by its runtime id (or a unique prefix of it)."""
    node: Node = platform.store.get_node(name)
    return node


def _control(platform: Any, name: str, change: Callable[[NodeControl], NodeControl],
             reason: str, message: str) -> Node:
    current: Node = platform.store.get_node(name)       # 404 before anything is written
    node: Node = platform.store.set_node_control(current.name, change(current.control))
    platform.store.add_event(f"node/{node.name}", reason, message)
    platform.wake()
    return node


@router.post("/nodes/{name}/cordon", response_model=Node)
def cordon_node(name: str, platform: Any = Depends(get_platform)) -> Node:
    """No new replicas on the node; those it runs stay."""
    return _control(platform, name, lambda c: c.model_copy(update={"cordoned": True}),
                    "Cordoned", "cordoned: no new replicas are placed here")


@router.post("/nodes/{name}/uncordon", response_model=Node)
def uncordon_node(name: str, platform: Any = Depends(get_platform)) -> Node:
    """The node takes new replicas again (a drain in progress stops)."""
    return _control(platform, name, lambda _: NodeControl(), "Uncordoned",
                    "uncordoned: new replicas may be placed here")


@router.post("/nodes/{name}/drain", response_model=Node)
def drain_node(name: str, platform: Any = Depends(get_platform)) -> Node:
    """Cordon the node and move its replicas elsewhere (a new replica is ready on another
    node before an old one stops, as in a rolling update)."""
    return _control(platform, name, lambda _: NodeControl(cordoned=True, draining=True),
                    "Draining", "draining: its replicas are moved to other nodes")


@router.get("/events", response_model=list[Event])
def list_events(object: str | None = Query(None, max_length=160),
                limit: int = Query(100, ge=1, le=1000),
                platform: Any = Depends(get_platform)) -> list[Event]:
    return list(platform.store.list_events(object, limit))
