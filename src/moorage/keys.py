"""Every typed key for shared state on the application and on requests, in one place."""

from __future__ import annotations

import aiodocker
from aiohttp import web
from prometheus_client import CollectorRegistry

from .config import ApiKey, Settings
from .container_stats import ContainerStats
from .pulls import PullHub
from .sampler import HostSampler
from .streams import EngineStreams

SETTINGS = web.AppKey("settings", Settings)
DOCKER = web.AppKey("docker", aiodocker.Docker)
PULLS = web.AppKey("pulls", PullHub)
STREAMS = web.AppKey("streams", EngineStreams)
SAMPLER = web.AppKey("sampler", HostSampler)
CONTAINER_STATS = web.AppKey("container_stats", ContainerStats)
REGISTRY = web.AppKey("registry", CollectorRegistry)
PRINCIPAL = web.RequestKey("principal", ApiKey)
