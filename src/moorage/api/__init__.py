"""The HTTP API: one module per resource, each with its own RouteTableDef."""

from __future__ import annotations

from aiohttp import web

from moorage.api import (
    alerts,
    audit,
    auth,
    containers,
    events,
    execs,
    files,
    health,
    hooks,
    images,
    lifecycle,
    logs,
    mergedlogs,
    metrics,
    networks,
    policy,
    prune,
    recreate,
    session,
    system,
    updates,
    volumes,
)


def setup_routes(app: web.Application) -> None:
    modules = (
        health,
        auth,
        audit,
        hooks,
        containers,
        lifecycle,
        recreate,
        execs,
        files,
        session,
        updates,
        images,
        volumes,
        networks,
        prune,
        system,
        policy,
        logs,
        mergedlogs,
        events,
        metrics,
        alerts,
    )
    for module in modules:
        app.router.add_routes(module.routes)
