"""The application factory: settings in, a configured aiohttp Application out; no I/O here."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from .api import setup_routes
from .config import Settings
from .engine import end_streams, engine_ctx
from .keys import CONTAINER_STATS, REGISTRY, SAMPLER, SETTINGS
from .middlewares import auth_middleware, error_middleware
from .prometheus import ContainerCollector, HostCollector, request_metrics
from .sampler import HostSampler, sampling


async def hide_server_version(request: web.Request, response: web.StreamResponse) -> None:
    """Name no versions to unauthenticated callers: aiohttp's default Server header lists Python's and its own."""
    response.headers["Server"] = "moorage"


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The host sampler runs, and the host's and the containers' figures are in the app's registry."""
    settings = app[SETTINGS].metrics
    sampler = app[SAMPLER] = HostSampler(settings)
    collectors = (HostCollector(sampler), ContainerCollector(app[CONTAINER_STATS]))
    for collector in collectors:
        app[REGISTRY].register(collector)
    try:
        async with sampling(sampler, settings.interval):
            yield
    finally:
        for collector in collectors:
            app[REGISTRY].unregister(collector)


def create_app(settings: Settings) -> web.Application:
    # A registry per app, not prometheus_client's global one: an app's figures are its own.
    registry = CollectorRegistry()
    # Request metrics outermost, to count what the client got; then errors, so auth failures are rendered too.
    app = web.Application(
        middlewares=[request_metrics(registry), error_middleware, auth_middleware],
        client_max_size=settings.server.max_body_size,
    )
    app[SETTINGS] = settings
    app[REGISTRY] = registry
    app.cleanup_ctx.append(engine_ctx)
    app.cleanup_ctx.append(metrics_ctx)  # after engine_ctx: it reads the container watcher
    app.on_shutdown.append(end_streams)
    app.on_response_prepare.append(hide_server_version)
    setup_routes(app)
    return app
