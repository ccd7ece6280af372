"""The engine's events as NDJSON, streamed as they happen (or between since and until)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.schemas.events import EventSchema, HeartbeatSchema, StreamEndSchema
from moorage.schemas.logs import EventQuery, engine_window
from moorage.settings import Permission
from moorage.web.eventscope import EventScope
from moorage.web.operations import STREAM, any_of, documented
from moorage.web.requests import load_query
from moorage.web.responses import NDJSON, Ndjson, ndjson_line, serve_stream
from moorage.web.roles import requires
from moorage.web.scoping import scope_of
from moorage.web.state import docker, stream_slot, streams

routes = web.RouteTableDef()
_EVENT = EventSchema()


@routes.get(f"{API_PREFIX}/events")
@requires(Permission.EVENTS_READ)
@documented(
    "Engine events",
    tag="events",
    query=EventQuery,
    raw={NDJSON: any_of(EventSchema, HeartbeatSchema, StreamEndSchema)},
    errors=STREAM,
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    """NDJSON, endless unless `until` is given: `{"heartbeat": time}` when quiet for [server] heartbeat_seconds,
    and a last `{"end": reason}` line (done, shutdown, engine_gone)."""
    query = load_query(request, EventQuery)
    params = engine_window(query)
    params["filters"] = json.dumps({"type": query.get("type") or ["container", "image"]})
    gate = streams(request)
    with stream_slot(request, NDJSON):
        async with gate.request("GET", "/events", params) as engine:

            async def ending(failure: Exception | None) -> dict[str, Any]:
                """A window with an end is done when the engine ends it; an endless one ends only if the engine goes."""
                if failure is None and "until" in query:
                    return {"end": "done"}
                return {"end": "engine_gone", "message": str(failure or "the engine ended the event stream")}

            lines = event_lines(engine, EventScope(scope_of(request), docker(request)))
            return await serve_stream(request, gate, NDJSON, lines, Ndjson(ending))


async def event_lines(engine: aiohttp.ClientResponse, seen: EventScope) -> AsyncIterator[bytes]:
    """The engine's events the caller may see, in our shape."""
    async for line in engine.content:
        if line.strip() and await seen.admits(event := json.loads(line)):
            yield ndjson_line(_EVENT.dump(event))
