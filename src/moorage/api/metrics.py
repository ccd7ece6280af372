"""Metrics: the host from the sampler's latest sample (never psutil in a handler), and Prometheus."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..auth import requires
from ..config import Role
from ..envelope import ok
from ..errors import EngineUnavailable
from ..keys import REGISTRY, SAMPLER, SETTINGS
from ..schemas.metrics import HistoryQuery, HostResourcesSchema
from ..validation import load_query
from .paths import API_PREFIX

routes = web.RouteTableDef()
_RESOURCES = HostResourcesSchema()


def with_age(sample: dict[str, Any], interval: float) -> dict[str, Any]:
    """The sample, saying how old it is and whether that is older than two rounds of the sampler."""
    age = max(0.0, time.time() - sample["sampled_at"])
    return {**sample, "age_seconds": round(age, 3), "stale": age > 2 * interval}


@routes.get(f"{API_PREFIX}/metrics/resources")
@requires(Role.VIEWER)
async def resources(request: web.Request) -> web.Response:
    sample = request.config_dict[SAMPLER].latest
    if sample is None:
        raise EngineUnavailable("no host sample yet: the sampler has just started", headers={"Retry-After": "1"})
    return ok(_RESOURCES.dump(with_age(sample, request.config_dict[SETTINGS].metrics.interval)))


@routes.get(f"{API_PREFIX}/metrics/resources/history")
@requires(Role.VIEWER)
async def resources_history(request: web.Request) -> web.Response:
    seconds = load_query(request, HistoryQuery())["seconds"]
    interval = request.config_dict[SETTINGS].metrics.interval
    samples = [with_age(sample, interval) for sample in request.config_dict[SAMPLER].history(seconds)]
    return ok({"seconds": seconds, "items": _RESOURCES.dump(samples, many=True)})


@routes.get("/metrics")
@requires(Role.VIEWER, public_when=lambda settings: settings.metrics.public_prometheus)
async def prometheus(request: web.Request) -> web.Response:
    body = generate_latest(request.config_dict[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
