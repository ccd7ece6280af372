"""Prometheus figures of the daemon's own requests: counted and timed by method, route and status."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from moorage.web.middlewares import status_sent


def request_metrics(registry: CollectorRegistry) -> Middleware:
    """A middleware counting requests and timing them, by method, route and status, into `registry`."""
    requests = Counter(
        "moorage_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "moorage_http_request_duration_seconds", "Time to answer (streams: until they end)",
        ["method", "route", "status"],
        registry=registry,
    )  # fmt: skip

    def observe(request: web.Request, status: int, started: float) -> None:
        resource = request.match_info.route.resource
        # The route's pattern, not the path: ids in paths would make a series per container.
        route = resource.canonical if resource is not None else "unmatched"
        requests.labels(request.method, route, str(status)).inc()
        latency.labels(request.method, route, str(status)).observe(time.perf_counter() - started)

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outside the audit and the error middleware, so that it counts the status the client got, errors
        rendered by the error middleware too, and what aiohttp answers for an exception that escapes them."""
        started = time.perf_counter()
        try:
            response = await handler(request)
        except BaseException as exc:
            observe(request, status_sent(exc), started)
            raise
        observe(request, response.status, started)
        return response

    return count
