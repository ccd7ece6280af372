"""The engine's events as NDJSON, streamed as they happen (or between since and until)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.engine.filters import engine_filters
from moorage.schemas.events import EventSchema, HeartbeatSchema, StreamEndSchema, event_item
from moorage.schemas.logs import EventQuery, engine_window
from moorage.settings import Permission
from moorage.web.eventscope import EventScope
from moorage.web.operations import STREAM, any_of, documented
from moorage.web.responses import NDJSON, Framed, ndjson_line, serve_stream
from moorage.web.roles import requires
from moorage.web.scoping import scope_of
from moorage.web.secrets import Shown, for_caller
from moorage.web.sse import SSE, Places, load_stream_query, sse_event, sse_framed
from moorage.web.state import docker, stream_slot, streams

routes = web.RouteTableDef()


@routes.get(f"{API_PREFIX}/events")
@requires(Permission.EVENTS_READ)
@documented(
    "Engine events",
    tag="events",
    query=EventQuery,
    raw={
        NDJSON: any_of(EventSchema, HeartbeatSchema, StreamEndSchema),
        SSE: any_of(EventSchema, StreamEndSchema),
    },
    errors=STREAM,
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    """NDJSON, endless unless `until` is given: `{"heartbeat": time}` when quiet for [server] heartbeat_seconds,
    and a last `{"end": reason}` line (done, shutdown, engine_gone). As Server-Sent Events (format=sse, or
    Accept: text/event-stream) each event is named for its type, and Last-Event-ID resumes after it."""
    query, resumed = load_stream_query(request, EventQuery)
    sse = query["format"] == "sse"
    params = engine_window(query)
    asked = {"type": query.get("type") or ["container", "image"], "event": query.get("action")}
    params["filters"] = engine_filters({**query, **asked}, "type", "container", "label", "event")
    gate = streams(request)
    media = SSE if sse else NDJSON
    with stream_slot(request, media):
        async with gate.request("GET", "/events", params) as engine:

            async def ending(failure: Exception | None) -> dict[str, Any]:
                """A window with an end is done when the engine ends it; an endless one ends only if the engine goes."""
                if failure is None and "until" in query:
                    return {"end": "done"}
                return {"end": "engine_gone", "message": str(failure or "the engine ended the event stream")}

            wanted = EventFilter(
                frozenset(query.get("action") or ()), query["exclude_exec"], tuple(query.get("container") or ())
            )
            seen = EventScope(scope_of(request), docker(request))
            lines = event_lines(engine, wanted, seen, for_caller(request), Places(resumed) if sse else None)
            return await serve_stream(request, gate, media, lines, sse_framed(ending) if sse else Framed(ending))


@dataclass(frozen=True)
class EventFilter:
    """What the engine's filters cannot say: an action as moorage names it (the engine's `event` filter matches
    `health_status` only loosely), no exec events, and a container by its whole name (the engine's filter takes
    any name it begins, `web` for `web-db`) or a prefix of its id."""

    actions: frozenset[str]
    exclude_exec: bool
    containers: tuple[str, ...]

    def admits(self, item: Mapping[str, Any]) -> bool:
        action = item["action"]
        if self.exclude_exec and action.startswith("exec_"):
            return False
        if self.containers and not any(
            item["name"] == ref or (item["id"] or "").startswith(ref) for ref in self.containers
        ):
            return False
        return not self.actions or action in self.actions


async def event_lines(
    engine: aiohttp.ClientResponse, wanted: EventFilter, seen: EventScope, show: Shown, places: Places | None
) -> AsyncIterator[bytes]:
    """The engine's events the caller asked for and may see, in our shape, secret labels withheld: NDJSON
    lines, or with `places` events named for their type, whose ids are their timeNano and place there."""
    async for line in engine.content:
        if not line.strip():
            continue
        event = orjson.loads(line)
        if not (wanted.admits(item := event_item(event)) and await seen.admits(event)):
            continue
        if places is None:
            yield ndjson_line(show(item))
        elif (index := places.place(str(event["timeNano"]), event["timeNano"])) is not None:
            yield sse_event(item["type"], show(item), f"{event['timeNano']}:{index}")
