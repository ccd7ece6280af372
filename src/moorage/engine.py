"""The Docker engine client: one for the application's life, opened and closed with it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiodocker
import aiohttp
from aiohttp import web

from .keys import DOCKER, PULLS, SETTINGS
from .pulls import PullHub


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: aiodocker opens no connection here, so a stopped engine does not stop start-up."""
    settings = app[SETTINGS].docker
    docker = aiodocker.Docker(url=settings.url, timeout=aiohttp.ClientTimeout(total=settings.timeout))
    app[DOCKER] = docker
    app[PULLS] = PullHub()
    try:
        yield
    finally:
        await app[PULLS].close()
        await docker.close()


def docker(request: web.Request) -> aiodocker.Docker:
    return request.config_dict[DOCKER]


def pulls(request: web.Request) -> PullHub:
    return request.config_dict[PULLS]
