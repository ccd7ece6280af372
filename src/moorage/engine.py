"""The Docker engine client: one for the application's life, opened and closed with it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiodocker
import aiohttp
import orjson
from aiodocker.types import SENTINEL, Sentinel
from aiohttp import web

from .background import watching
from .container_stats import ContainerStats
from .keys import CONTAINER_STATS, DOCKER, PRINCIPAL, PULLS, SETTINGS, STREAMS
from .pulls import PullHub
from .streams import EngineStreams


class BoundedDocker(aiodocker.Docker):
    """aiodocker's client, with every call bounded by its timeout unless the caller gives another.

    aiodocker 0.27 lets the calls it counts as long-running (container delete, stop, kill, wait, logs,
    stats...) run without any limit by default, so a wedged engine would hold a `DELETE /containers/{id}`
    for ever. moorage reads no stream through aiodocker (logs, events, stats and pulls go through
    EngineStreams), so none of its calls needs that.
    """

    def _resolve_long_running_timeout(
        self, timeout: float | aiohttp.ClientTimeout | Sentinel | None
    ) -> aiohttp.ClientTimeout:
        return self._timeout if timeout is SENTINEL else super()._resolve_long_running_timeout(timeout)


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: aiodocker opens no connection here, so a stopped engine does not stop start-up."""
    settings = app[SETTINGS].docker
    docker = BoundedDocker(url=settings.url, timeout=aiohttp.ClientTimeout(total=settings.timeout))
    app[DOCKER] = docker
    server = app[SETTINGS].server
    app[STREAMS] = EngineStreams(
        settings,
        server.max_streams,
        per_key=server.max_streams_per_key,
        admin_reserved=server.admin_reserved_streams,
        heartbeat=server.heartbeat_seconds,
    )
    # Pulls have a pool of their own: a full pool of log streams must not make a pull wait for ever.
    app[PULLS] = PullHub(EngineStreams(settings))
    app[CONTAINER_STATS] = ContainerStats(settings)
    try:
        async with watching(app[CONTAINER_STATS], "container stats"):
            yield
    finally:
        await app[PULLS].close()  # closes its pool too
        await app[STREAMS].close()
        await docker.close()


async def end_streams(app: web.Application) -> None:
    """on_shutdown: open log and event streams end now, not after aiohttp's shutdown_timeout."""
    await app[STREAMS].end_all()


def docker(request: web.Request) -> aiodocker.Docker:
    return request.config_dict[DOCKER]


async def engine_json(docker: aiodocker.Docker, path: str, params: Mapping[str, str] | None = None) -> Any:
    """GET an engine path through aiodocker's client (its timeout, its DockerError), parsed with orjson.

    For the hot reads: aiodocker's helpers parse with `json` and wrap each list item in an object, which
    was most of what a 500-container list cost moorage beyond the engine's own time.
    """
    async with docker._query(path, params=params) as response:
        return orjson.loads(await response.read())


def pulls(request: web.Request) -> PullHub:
    return request.config_dict[PULLS]


def streams(request: web.Request) -> EngineStreams:
    return request.config_dict[STREAMS]


def stream_slot(request: web.Request, content_type: str) -> contextlib.AbstractContextManager[None]:
    """The request's slot among the open streams (EngineStreams.slot): HEAD is answered there, with no stream."""
    return streams(request).slot(request.method, request.get(PRINCIPAL), content_type)
