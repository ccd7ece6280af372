"""Every typed key for shared state on the application and on requests, in one place, and the accessors
handlers read it through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiodocker
from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry

from moorage.access.audit import AuditLog
from moorage.access.lastuse import KeyUse
from moorage.access.ratelimit import FailedAuthLimiter
from moorage.access.tokens import TokenIssuer
from moorage.alerts.watcher import AlertWatcher
from moorage.containers.binds import BindLedger
from moorage.containers.bindwatch import PolicyStops
from moorage.containers.recreate import Recreates
from moorage.engine.streams import EngineStreams
from moorage.images.pulls import PullHub
from moorage.images.updates import UpdateChecks
from moorage.metrics.containers import ContainerStats
from moorage.metrics.history import ContainerHistory
from moorage.metrics.host import HostSampler
from moorage.settings import ApiKey, LiveSettings, Settings
from moorage.web.requestctx import mark_stream
from moorage.web.responses import HeadAnswered

SETTINGS = web.AppKey("settings", Settings)
LIVE = web.AppKey("live_settings", LiveSettings)
DOCKER = web.AppKey("docker", aiodocker.Docker)
# The engine client of execs, whose connections last as long as their commands: a pool apart from DOCKER's.
EXEC_DOCKER = web.AppKey("exec_docker", aiodocker.Docker)
PULLS = web.AppKey("pulls", PullHub)
STREAMS = web.AppKey("streams", EngineStreams)
SAMPLER = web.AppKey("sampler", HostSampler)
CONTAINER_STATS = web.AppKey("container_stats", ContainerStats)
HISTORY = web.AppKey("history", ContainerHistory)
ALERTS = web.AppKey("alerts", AlertWatcher)
REGISTRY = web.AppKey("registry", CollectorRegistry)
LIMITER = web.AppKey("limiter", FailedAuthLimiter)
AUDIT = web.AppKey("audit", AuditLog)
TOKENS = web.AppKey("tokens", TokenIssuer)
KEY_USE = web.AppKey("key_use", KeyUse)
BIND_LEDGER = web.AppKey("bind_ledger", BindLedger)
POLICY_STOPS = web.AppKey("policy_stops", PolicyStops)
UPDATE_CHECKS = web.AppKey("update_checks", UpdateChecks)
RECREATES = web.AppKey("recreates", Recreates)
PRINCIPAL = web.RequestKey("principal", ApiKey)
# The id (jti) of the token the caller presented; absent when it presented a key.
TOKEN_ID = web.RequestKey("token_id", str)
REQUEST_ID = web.RequestKey("request_id", str)
# What a change did, in the handler's words (the container it made, the name it gave): added to its audit line.
AUDIT_DETAIL = web.RequestKey("audit_detail", dict)


def live(request: web.Request) -> Settings:
    """The settings in force now (SIGHUP may have replaced the ones the app started with)."""
    return request.config_dict[LIVE].current


def docker(request: web.Request) -> aiodocker.Docker:
    return request.config_dict[DOCKER]


def exec_docker(request: web.Request) -> aiodocker.Docker:
    return request.config_dict[EXEC_DOCKER]


def policy_stops(request: web.Request) -> PolicyStops:
    return request.config_dict[POLICY_STOPS]


def pulls(request: web.Request) -> PullHub:
    return request.config_dict[PULLS]


def streams(request: web.Request) -> EngineStreams:
    return request.config_dict[STREAMS]


@contextlib.contextmanager
def stream_slot(request: web.Request, content_type: str) -> Iterator[None]:
    """The request's slot among the open streams (EngineStreams.slot). A HEAD request is answered here, before
    anything is opened: HeadAnswered (the headers a GET would get), whatever the caps."""
    if request.method == hdrs.METH_HEAD:
        raise HeadAnswered(content_type)
    with streams(request).slot(request.get(PRINCIPAL)):
        mark_stream()
        yield
