"""The application factory: settings in, a configured aiohttp Application out; no I/O here."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web, web_response
from prometheus_client import CollectorRegistry

from .api import setup_routes
from .api.paths import API_PREFIX
from .audit import AuditLog
from .config import LiveSettings, Settings
from .engine import end_streams, engine_ctx
from .keys import AUDIT, CONTAINER_STATS, LIMITER, LIVE, REGISTRY, SAMPLER, SETTINGS, TOKENS
from .middlewares import (
    answer_headers,
    audit_middleware,
    auth_middleware,
    compress_json,
    error_middleware,
    request_context,
    run_to_end,
)
from .openapi import serve_document
from .prometheus import ContainerCollector, HostCollector, request_metrics
from .ratelimit import FailedAuthLimiter
from .sampler import HostSampler, sampling
from .tokens import TokenIssuer, load_or_make_secret

# Name no versions to unauthenticated callers: aiohttp's Server header lists Python's and its own, on every
# answer, including its own 400s for requests it cannot parse, which no hook of the app sees.
web_response.SERVER_SOFTWARE = "moorage"


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


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """The audit file and the token signing secret: files, so opened here rather than in the factory."""
    settings = app[SETTINGS]
    state = settings.server.state_dir
    app[AUDIT] = AuditLog(settings.audit.path or state / "audit.log")
    app[AUDIT].open()
    secret = load_or_make_secret(settings.auth.token_secret_file or state / "token-secret")
    app[TOKENS] = TokenIssuer(secret, state / "revoked-tokens.json")
    try:
        yield
    finally:
        app[AUDIT].close()


def create_app(settings: Settings) -> web.Application:
    # A registry per app, not prometheus_client's global one: an app's figures are its own.
    registry = CollectorRegistry()
    # The request's id first, for every line logged about it; request metrics and the audit next, to see
    # what the client got; a mutation runs to its end beneath them, so that they see how it ended; then
    # compression and errors, so that auth failures are rendered (and compressed) too.
    app = web.Application(
        middlewares=[
            request_context,
            request_metrics(registry),
            audit_middleware,
            run_to_end,
            compress_json,
            error_middleware,
            auth_middleware,
        ],
        client_max_size=settings.server.max_body_size,
    )
    app.on_response_prepare.append(answer_headers)
    app[SETTINGS] = settings
    app[LIVE] = LiveSettings(settings)
    app[REGISTRY] = registry
    auth = settings.auth
    app[LIMITER] = FailedAuthLimiter(auth.failed_limit, auth.failed_window, auth.limit_loopback)
    app.cleanup_ctx.append(auth_ctx)
    app.cleanup_ctx.append(engine_ctx)
    app.cleanup_ctx.append(metrics_ctx)  # after engine_ctx: it reads the container watcher
    app.on_shutdown.append(end_streams)
    setup_routes(app)
    serve_document(app, f"{API_PREFIX}/openapi.json")  # last: it documents every route
    return app
