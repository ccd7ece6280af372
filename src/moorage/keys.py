"""Every typed key for shared state on the application and on requests, in one place."""

from __future__ import annotations

import aiodocker
from aiohttp import web
from prometheus_client import CollectorRegistry

from .audit import AuditLog
from .binds import BindLedger
from .bindwatch import PolicyStops
from .config import ApiKey, LiveSettings, Settings
from .container_stats import ContainerStats
from .pulls import PullHub
from .ratelimit import FailedAuthLimiter
from .sampler import HostSampler
from .streams import EngineStreams
from .tokens import TokenIssuer

SETTINGS = web.AppKey("settings", Settings)
LIVE = web.AppKey("live_settings", LiveSettings)
DOCKER = web.AppKey("docker", aiodocker.Docker)
PULLS = web.AppKey("pulls", PullHub)
STREAMS = web.AppKey("streams", EngineStreams)
SAMPLER = web.AppKey("sampler", HostSampler)
CONTAINER_STATS = web.AppKey("container_stats", ContainerStats)
REGISTRY = web.AppKey("registry", CollectorRegistry)
LIMITER = web.AppKey("limiter", FailedAuthLimiter)
AUDIT = web.AppKey("audit", AuditLog)
TOKENS = web.AppKey("tokens", TokenIssuer)
BIND_LEDGER = web.AppKey("bind_ledger", BindLedger)
POLICY_STOPS = web.AppKey("policy_stops", PolicyStops)
PRINCIPAL = web.RequestKey("principal", ApiKey)
VIA_TOKEN = web.RequestKey("via_token", bool)
REQUEST_ID = web.RequestKey("request_id", str)


def live(request: web.Request) -> Settings:
    """The settings in force now (SIGHUP may have replaced the ones the app started with)."""
    return request.config_dict[LIVE].current
