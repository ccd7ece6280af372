"""Every typed key for shared state on the application and on requests, in one place."""

from __future__ import annotations

import aiodocker
from aiohttp import web

from .config import ApiKey, Settings
from .pulls import PullHub
from .streams import EngineStreams

SETTINGS = web.AppKey("settings", Settings)
DOCKER = web.AppKey("docker", aiodocker.Docker)
PULLS = web.AppKey("pulls", PullHub)
STREAMS = web.AppKey("streams", EngineStreams)
PRINCIPAL = web.RequestKey("principal", ApiKey)
