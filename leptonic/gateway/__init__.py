"""The data plane: route table, power-of-two-choices balancer, keep-alive upstream client
and the proxy ASGI app that ties them together (``python -m leptonic.gateway`` runs it
on its own)."""

from leptonic.gateway.balancer import choose
from leptonic.gateway.proxy import Gateway
from leptonic.gateway.routes import Route, RouteTable, Upstream

__all__ = ["Gateway", "Route", "RouteTable", "Upstream", "choose"]
