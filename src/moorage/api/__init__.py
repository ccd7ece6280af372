"""The HTTP API: one module per resource, each with its own RouteTableDef."""

from __future__ import annotations

from aiohttp import web

from moorage.api import auth, containers, events, health, images, lifecycle, logs, metrics, updates


def setup_routes(app: web.Application) -> None:
    for module in (health, auth, containers, lifecycle, updates, images, logs, events, metrics):
        app.router.add_routes(module.routes)
