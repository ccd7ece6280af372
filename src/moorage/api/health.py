"""Liveness and readiness probes: public, so that systemd and load balancers need no key."""

from __future__ import annotations

from aiohttp import web

from moorage.web.operations import ENGINE, documented, shape
from moorage.web.responses import ok
from moorage.web.roles import public
from moorage.web.state import docker

routes = web.RouteTableDef()


@routes.get("/healthz")
@public
@documented("Liveness", tag="health", data=shape(status="string"))
async def get_liveness(request: web.Request) -> web.Response:
    """The process is up and serving; says nothing about the engine, so a down engine never restarts us."""
    return ok({"status": "up"})


@routes.get("/readyz")
@public
@documented("Readiness: the engine answers", tag="health", data=shape(status="string"), errors=ENGINE)
async def get_readiness(request: web.Request) -> web.Response:
    """Ready when the Docker engine answers; 503 in the error format when it does not.

    Public, so it names no versions: those are for authenticated callers.
    """
    await docker(request).version()
    return ok({"status": "ready"})
