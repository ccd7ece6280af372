"""Metrics: the host from the sampler's latest sample (never psutil in a handler), and Prometheus."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from moorage.api.paths import API_PREFIX
from moorage.engine.client import engine_json
from moorage.engine.shapes import inspected_name
from moorage.errors import BadRequest, EngineUnavailable, ServiceUnavailable
from moorage.metrics.cadvisor import ContainerCollector
from moorage.metrics.readings import idle
from moorage.schemas.containers import ContainerRef
from moorage.schemas.metrics import (
    ContainerHistoryQuery,
    ContainerHistorySchema,
    ContainerMetricsSchema,
    HistoryQuery,
    HostResourcesSchema,
)
from moorage.settings import Permission
from moorage.timestamps import age_seconds
from moorage.web.operations import ENGINE, documented, listing, page, shape
from moorage.web.requests import load_query
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.scoping import container_ref, listed_containers, scope_of
from moorage.web.state import CONTAINER_STATS, HISTORY, PRINCIPAL, REGISTRY, SAMPLER, SETTINGS, docker

routes = web.RouteTableDef()
_RESOURCES = HostResourcesSchema()


def with_age(sample: dict[str, Any], sampled_at: float, interval: float) -> dict[str, Any]:
    """The sample, saying how old it is and whether that is older than two rounds of the sampler."""
    age = age_seconds(sampled_at)
    return {**sample, "age_seconds": age, "stale": age > 2 * interval}


@routes.get(f"{API_PREFIX}/metrics/resources")
@requires(Permission.METRICS_READ)
@documented("The host's resources", tag="metrics", data=HostResourcesSchema, errors=(503,))
async def get_host_resources(request: web.Request) -> web.Response:
    sampler = request.config_dict[SAMPLER]
    sample = sampler.latest
    if sample is None:
        raise ServiceUnavailable("no host sample yet: the sampler has just started", headers={"Retry-After": "1"})
    # Dumped once a sample, not once a request: the dump was most of what an answer cost under load.
    return ok(with_age(sampler.latest_as(_RESOURCES.dump), sample["sampled_at"], sampler.interval))


@routes.get(f"{API_PREFIX}/metrics/resources/history")
@requires(Permission.METRICS_READ)
@documented(
    "The host's recent samples",
    tag="metrics",
    query=HistoryQuery,
    data=shape(seconds="number", items=listing(HostResourcesSchema)),
)
async def get_host_resources_history(request: web.Request) -> web.Response:
    seconds = load_query(request, HistoryQuery)["seconds"]
    sampler = request.config_dict[SAMPLER]
    items = [with_age(_RESOURCES.dump(s), s["sampled_at"], sampler.interval) for s in sampler.history(seconds)]
    return ok({"seconds": seconds, "items": items})


@routes.get("/metrics")
@requires(Permission.METRICS_READ, public_when=lambda settings: settings.metrics.public_prometheus)
@documented("Prometheus metrics", tag="metrics", raw={"text/plain": {"type": "string"}})
async def get_prometheus_metrics(request: web.Request) -> web.Response:
    """The text exposition of every series; a scoped caller's has its containers' series only (the host's and
    moorage's own tell of the whole host)."""
    registry = request.config_dict[REGISTRY]
    principal = request.get(PRINCIPAL)  # none when [metrics] public_prometheus opens the route to all
    if principal is not None and not principal.scope.unscoped:
        registry = CollectorRegistry(auto_describe=True)
        allowlist = request.config_dict[SETTINGS].metrics.label_allowlist
        registry.register(ContainerCollector(request.config_dict[CONTAINER_STATS], allowlist, principal.scope))
    # In a worker thread: some thirty series a container cost about a millisecond per container to write (0.4 s for
    # 500 on a slow machine), which the event loop must not wait out. The collectors read what the loop replaces
    # whole (readings, samples, specs) and copy the watchers' dicts in one C call, so a thread reads them safely.
    body = await asyncio.to_thread(generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


_CONTAINER = ContainerMetricsSchema()
_HISTORY = ContainerHistorySchema()
# The most points an answer of every container's history holds (each of six series): some 30 MB of JSON.
MAX_POINTS = 200_000
# How long to wait for the first reading of a container that has only just started.
_FIRST_READING = 2.5


def aged(reading: dict[str, Any]) -> dict[str, Any]:
    return {**reading, "age_seconds": age_seconds(reading["sampled_at"])}


@routes.get(f"{API_PREFIX}/metrics/containers")
@requires(Permission.METRICS_READ)
@documented("Every running container's metrics", tag="metrics", data=page(ContainerMetricsSchema), errors=(503,))
async def list_container_metrics(request: web.Request) -> web.Response:
    """Every running container's latest reading; no engine call."""
    stats = request.config_dict[CONTAINER_STATS]
    if not stats.connected:
        raise EngineUnavailable("the Docker engine is not reachable: container metrics are unknown")
    readings = sorted(stats.running(scope_of(request)), key=lambda r: r["name"])
    return ok({"total": len(readings), "items": _CONTAINER.dump([aged(r) for r in readings], many=True)})


@routes.get(f"{API_PREFIX}/metrics/containers/history")
@requires(Permission.METRICS_READ)
@documented(
    "Every container's history",
    tag="metrics",
    query=ContainerHistoryQuery,
    data=shape(seconds="number", step="number", items=listing(ContainerHistorySchema)),
    errors=ENGINE,
)
async def list_container_history(request: web.Request) -> web.Response:
    """The history of each container moorage has readings of (running or stopped, until it is removed). Before
    the `{container_id}` route, as the engine's own `/containers/json` is: a container named `history` is read by
    its id."""
    query = load_query(request, ContainerHistoryQuery)
    history = request.config_dict[HISTORY]
    seconds, step = history.window(query["seconds"], query["step"])
    admitted = None
    if not scope_of(request).unscoped:
        listed = await engine_json(docker(request), "containers/json", {"all": "1"})
        admitted = {c["Id"] for c in listed_containers(request, listed)}
    ids = [i for i in history.ids() if admitted is None or i in admitted]  # after the engine's answer: none gone
    if len(ids) * seconds / step > MAX_POINTS:
        fewest = math.ceil(len(ids) * seconds / MAX_POINTS)
        why = f"{len(ids)} containers over {seconds:g} s in steps of {step:g} s are more than {MAX_POINTS:,} points"
        advice = f"ask for a step of at least {fewest} s, or fewer seconds"
        raise BadRequest("too many points", errors=[{"field": "step", "message": f"{why}: {advice}"}])
    now = time.time()
    items = sorted((history.query(i, seconds, step, now) for i in ids), key=lambda h: h["name"])
    return ok({"seconds": seconds, "step": step, "items": _HISTORY.dump(items, many=True)})


@routes.get(f"{API_PREFIX}/metrics/containers/{{container_id}}/history")
@requires(Permission.METRICS_READ)
@documented(
    "A container's history",
    tag="metrics",
    path=ContainerRef,
    query=ContainerHistoryQuery,
    data=ContainerHistorySchema,
    errors=(404, *ENGINE),
)
async def get_container_history(request: web.Request) -> web.Response:
    """The container's readings of the last `seconds` in buckets of `step`, min, mean and max each, from the finest
    tier that covers them; no points for a container never read (created, or before moorage ran)."""
    query = load_query(request, ContainerHistoryQuery)
    ref = await container_ref(request)
    stats, history = request.config_dict[CONTAINER_STATS], request.config_dict[HISTORY]
    if (found := stats.find(ref)) is not None:
        container_id, name = found["id"], found["name"]
    else:
        inspected = await docker(request).containers.container(ref).show()
        container_id, name = inspected["Id"], inspected_name(inspected)
    try:
        answer = history.query(container_id, query["seconds"], query["step"], time.time())
    except KeyError:
        seconds, step = history.window(query["seconds"], query["step"])
        answer = {"id": container_id, "name": name, "seconds": seconds, "step": step, "points": []}
    return ok(_HISTORY.dump(answer))


@routes.get(f"{API_PREFIX}/metrics/containers/{{container_id}}")
@requires(Permission.METRICS_READ)
@documented(
    "A container's metrics", tag="metrics", path=ContainerRef, data=ContainerMetricsSchema, errors=(404, *ENGINE)
)
async def get_container_metrics(request: web.Request) -> web.Response:
    """A running container's latest reading (no engine call when the watcher knows it); zeros when stopped."""
    ref = await container_ref(request)
    stats = request.config_dict[CONTAINER_STATS]
    found = stats.find(ref)
    if found is None:
        inspected = await docker(request).containers.container(ref).show()
        name, state = inspected_name(inspected), inspected["State"]
        if state["Running"]:
            found = await stats.first_reading(inspected["Id"], _FIRST_READING)
        if found is None:
            found = idle(inspected["Id"], name, state["Status"])
    return ok(_CONTAINER.dump(aged(found)))
