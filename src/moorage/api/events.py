"""The engine's events as NDJSON, streamed as they happen (or between since and until)."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from ..auth import requires
from ..config import Role
from ..engine import streams
from ..envelope import ended_even_if_cancelled, ndjson_line, stream_response
from ..openapi import NDJSON, STREAM, documented
from ..schemas.events import EventSchema
from ..schemas.logs import EventQuery, engine_window
from ..validation import load_query
from .logs import ENGINE_STREAM_ERRORS
from .paths import API_PREFIX

routes = web.RouteTableDef()
_LOGGER = logging.getLogger(__name__)
_EVENT = EventSchema()


@routes.get(f"{API_PREFIX}/events")
@requires(Role.VIEWER)
@documented("Engine events", query=EventQuery, raw={NDJSON: EventSchema}, errors=STREAM)
async def events(request: web.Request) -> web.StreamResponse:
    query = load_query(request, EventQuery)
    params = engine_window(query)
    params["filters"] = json.dumps({"type": query.get("type") or ["container", "image"]})
    gate = streams(request)
    with gate.slot():
        async with gate.request("GET", "/events", params) as engine:
            response = stream_response()
            await response.prepare(request)
            try:
                async with ended_even_if_cancelled(response):
                    async for line in engine.content:
                        if line.strip():
                            await response.write(ndjson_line(_EVENT.dump(json.loads(line))))
            except ConnectionResetError:
                return response
            except (*ENGINE_STREAM_ERRORS, ValueError) as err:
                _LOGGER.warning("event stream ended by the engine: %s", err)
            await response.write_eof()
            return response
