"""Every typed key for shared state on the application and on requests, in one place."""

from __future__ import annotations

import aiodocker
from aiohttp import web

from .config import ApiKey, Settings
from .pulls import PullHub

SETTINGS = web.AppKey("settings", Settings)
DOCKER = web.AppKey("docker", aiodocker.Docker)
PULLS = web.AppKey("pulls", PullHub)
PRINCIPAL = web.RequestKey("principal", ApiKey)
