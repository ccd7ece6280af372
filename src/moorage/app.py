"""The application factory: settings in, a configured aiohttp Application out; no I/O here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web, web_response
from prometheus_client import CollectorRegistry, ProcessCollector

from moorage.access.audit import AuditLog
from moorage.access.lastuse import FILE as LAST_USED_FILE
from moorage.access.lastuse import KeyUse
from moorage.access.ratelimit import FailedAuthLimiter
from moorage.access.tokens import TokenIssuer, load_or_make_secret
from moorage.alerts.collector import AlertsCollector
from moorage.alerts.delivery import Deliverer
from moorage.alerts.watcher import AlertWatcher
from moorage.api import setup_routes
from moorage.api.paths import API_PREFIX
from moorage.background import running, watching
from moorage.containers.binds import BindLedger
from moorage.containers.bindwatch import BindWatch, PolicyStops
from moorage.containers.journal import RecreateJournal
from moorage.containers.ownership import policy_mark
from moorage.containers.recreate import Recreates
from moorage.engine.client import BoundedDocker, pooled_docker
from moorage.engine.streams import EngineStreams
from moorage.errors import ConfigError
from moorage.images.pulls import PullHub
from moorage.images.updates import UpdateChecks
from moorage.metrics.cadvisor import ContainerCollector
from moorage.metrics.containers import ContainerStats
from moorage.metrics.host import HostSampler, sampling
from moorage.metrics.node import HostCollector
from moorage.metrics.prometheus import DaemonCollector
from moorage.metrics.recorder import HistoryRecorder, kept, loaded
from moorage.settings import LiveSettings, Settings
from moorage.web.compression import compress_json
from moorage.web.middlewares import audit_middleware, auth_middleware, error_middleware
from moorage.web.mutations import Mutations, run_to_end
from moorage.web.openapi import serve_document
from moorage.web.proxies import forwarded_client
from moorage.web.requestid import answer_headers, request_context
from moorage.web.requestmetrics import request_metrics
from moorage.web.state import (
    ALERTS,
    AUDIT,
    BIND_LEDGER,
    CONTAINER_STATS,
    DOCKER,
    EXEC_DOCKER,
    HISTORY,
    KEY_USE,
    LIMITER,
    LIVE,
    POLICY_STOPS,
    PULLS,
    RECREATES,
    REGISTRY,
    SAMPLER,
    SETTINGS,
    STREAMS,
    TOKENS,
    UPDATE_CHECKS,
)

# Name no versions to unauthenticated callers: aiohttp's Server header lists Python's and its own, on every
# answer, including its own 400s for requests it cannot parse, which no hook of the app sees.
web_response.SERVER_SOFTWARE = "moorage"
# Seconds between tries to settle a half-done recreate while the engine cannot be asked.
_SETTLE_PAUSE = 5.0


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: aiodocker opens no connection here, so a stopped engine does not stop start-up."""
    settings = app[SETTINGS].docker
    docker = BoundedDocker(url=settings.url, timeout=aiohttp.ClientTimeout(total=settings.timeout))
    app[DOCKER] = docker
    server = app[SETTINGS].server
    # Execs hold their connection as long as their command runs (a session for hours): a pool of their own, as
    # large as the streams may be many, so that they never leave the API's calls waiting for a connection.
    execs = pooled_docker(settings.url, server.max_streams, aiohttp.ClientTimeout(total=settings.timeout))
    app[EXEC_DOCKER] = execs
    app[STREAMS] = EngineStreams(
        settings,
        server.max_streams,
        per_key=server.max_streams_per_key,
        admin_reserved=server.admin_reserved_streams,
        heartbeat=server.heartbeat_seconds,
    )
    # Pulls have a pool of their own: a full pool of log streams must not make a pull wait for ever.
    app[PULLS] = PullHub(EngineStreams(settings))
    state_dir = app[SETTINGS].server.state_dir
    history = app[HISTORY] = await loaded(state_dir, app[SETTINGS].metrics.history_tiers)
    app[CONTAINER_STATS] = ContainerStats(settings, HistoryRecorder(history))
    try:
        async with kept(history, state_dir), watching(app[CONTAINER_STATS], "container stats"):
            yield
    finally:
        await app[PULLS].close()  # closes its pool too
        await app[STREAMS].close()
        await execs.close()
        await execs.connector.close()
        await docker.close()


async def end_streams(app: web.Application) -> None:
    """on_shutdown: open log and event streams end now, not after aiohttp's shutdown_timeout."""
    await app[STREAMS].end_all()


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The host sampler runs, and the host's and the containers' figures are in the app's registry."""
    settings = app[SETTINGS].metrics
    sampler = app[SAMPLER] = HostSampler(settings)
    stats = app[CONTAINER_STATS]
    collectors = (
        HostCollector(sampler),
        ContainerCollector(stats, settings.label_allowlist),
        DaemonCollector(stats, app[STREAMS]),
    )
    for collector in collectors:
        app[REGISTRY].register(collector)
    try:
        async with sampling(sampler, settings.interval):
            yield
    finally:
        for collector in collectors:
            app[REGISTRY].unregister(collector)


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """The alert rules at work, and the webhook deliveries they queue (those a former run left pending first)."""
    settings = app[SETTINGS]
    async with Deliverer(settings.server.state_dir, settings.webhooks) as deliverer:
        watcher = app[ALERTS] = AlertWatcher(settings.docker, app[LIVE], app[CONTAINER_STATS], app[SAMPLER], deliverer)
        collector = AlertsCollector(watcher)
        app[REGISTRY].register(collector)
        try:
            async with watching(watcher, "alerts"):
                yield
        finally:
            app[REGISTRY].unregister(collector)


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """The audit file, the token signing secret and the keys' last uses: files, so opened here rather than in the
    factory."""
    settings = app[SETTINGS]
    state = settings.server.state_dir
    audit = settings.audit
    app[AUDIT] = AuditLog(
        audit.path or state / "audit.log", audit.fold_seconds, max_bytes=audit.max_bytes, keep=audit.keep
    )
    app[AUDIT].open()
    secret = load_or_make_secret(settings.auth.token_secret_file or state / "token-secret")
    try:  # made, or found not to be one, at start rather than at the first create
        policy_mark(state)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    app[TOKENS] = TokenIssuer(secret, state / "revoked-tokens.json")
    app[KEY_USE] = KeyUse(state / LAST_USED_FILE)
    try:
        async with running(app[AUDIT].flushing(), "audit flush"), running(app[KEY_USE].writing(), "key use"):
            yield
    finally:
        app[KEY_USE].write()
        app[AUDIT].close()


async def bindwatch_ctx(app: web.Application) -> AsyncIterator[None]:
    """The engine's own starts of moorage's containers are checked (bindwatch.py); why one was stopped is
    kept in the state dir."""
    settings = app[SETTINGS]
    stops = app[POLICY_STOPS] = PolicyStops(settings.server.state_dir / "policy-stops.json")
    stops.load()
    watch = BindWatch(settings.docker, app[DOCKER], app[LIVE], app[AUDIT], stops, app[REGISTRY])
    async with watching(watch, "bind watch"):
        yield


async def recreate_ctx(app: web.Application) -> AsyncIterator[None]:
    """Recreates: one per container at a time; those a previous run left half-done are settled meanwhile."""
    settings = app[SETTINGS]
    recreates = app[RECREATES] = Recreates(RecreateJournal(settings.server.state_dir), settings.server.shutdown_timeout)
    async with running(recreates.settle_left(app[DOCKER], _SETTLE_PAUSE), "recreate settle"):
        yield


async def finish_recreates(app: web.Application) -> None:
    """on_shutdown: recreates running on their own (streamed, hooks') end, or roll back, while the engine is open."""
    await app[RECREATES].finish()


def create_app(settings: Settings) -> web.Application:
    # A registry per app, not prometheus_client's global one: an app's figures are its own.
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    # The request's id first, for every line logged about it; request metrics next, to see what the client
    # got; a trusted proxy's client is the client before the audit and the limiter see it; the audit; a
    # mutation runs to its end beneath them, so that they see how it ended; then compression and errors, so
    # that auth failures are rendered (and compressed) too.
    server = settings.server
    proxied = [forwarded_client(server.trusted_proxies, server.forwarded_header)] if server.trusted_proxies else []
    mutations = Mutations(server.shutdown_timeout)
    app = web.Application(
        middlewares=[
            request_context,
            request_metrics(registry),
            *proxied,
            audit_middleware,
            run_to_end(mutations),
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
    app[BIND_LEDGER] = BindLedger()
    app[UPDATE_CHECKS] = UpdateChecks(settings.updates)
    auth = settings.auth
    app[LIMITER] = FailedAuthLimiter(auth.failed_limit, auth.failed_window)
    app.cleanup_ctx.append(auth_ctx)
    app.cleanup_ctx.append(engine_ctx)
    app.cleanup_ctx.append(metrics_ctx)  # after engine_ctx: it reads the container watcher
    app.cleanup_ctx.append(alerts_ctx)  # after metrics_ctx: it judges the sampler's and the watcher's figures
    app.cleanup_ctx.append(bindwatch_ctx)  # after auth_ctx and engine_ctx: it audits and calls the engine
    app.cleanup_ctx.append(recreate_ctx)  # after engine_ctx: it settles through the engine
    app.on_shutdown.append(end_streams)
    app.on_shutdown.append(mutations.finish)  # before any cleanup context closes the engine or the audit
    app.on_shutdown.append(finish_recreates)
    setup_routes(app)
    serve_document(app, f"{API_PREFIX}/openapi.json")  # last: it documents every route
    return app
