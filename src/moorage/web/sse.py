"""Server-Sent Events: how a stream is framed for a browser's EventSource, and where a reconnecting one resumes.

Each event's id is `<moment>:<k>`: the moment of what it carries (a log line's timestamp, an engine event's
timeNano) and its place among the events of that moment, since lines written in the same nanosecond are not
rare. A client that reconnects sends the last id it read as Last-Event-ID; the stream is opened again from that
moment (the engine's `since` takes it whole) and what the client already has is skipped, so nothing is lost or
repeated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import hdrs, web
from marshmallow import Schema

from moorage.errors import BadRequest
from moorage.timestamps import rfc3339, rfc3339_ns
from moorage.web.requests import load_query
from moorage.web.responses import SHUTDOWN, UNTOLD, Ending, Framed, dumps

SSE = "text/event-stream"
LAST_EVENT_ID = "Last-Event-ID"
# How long a browser waits before it reconnects (its own default is 3 s): a stream cut by a proxy or a restart
# comes back within a second.
RETRY_MS = 1000
# The engine counts time in int64 nanoseconds: a `since` past 2262 would be its 500, as the query's Moment says.
_LAST_NS = 2**63
_ID = re.compile(r"(?P<moment>[0-9]{1,19}|[0-9T:.Z-]{20,30}):(?P<index>[0-9]{1,9})")


def sse_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One event; `data` as JSON on one line (JSON escapes every line break, which would end the field)."""
    head = f"id: {event_id}\nevent: {event}\n" if event_id is not None else f"event: {event}\n"
    return head.encode() + b"data: " + dumps(data) + b"\n\n"


def line_event(item: Mapping[str, Any], places: Places) -> bytes:
    """A log line as `event: line`, its id its timestamp and place there; nothing if a resumed client has it."""
    stamp = item["timestamp"] or ""
    if (index := places.place(stamp)) is None:
        return b""
    return sse_event("line", item, f"{stamp}:{index}")


def sse_heartbeat() -> bytes:
    """A comment, which EventSource ignores and a proxy's read timeout counts as traffic."""
    return f": heartbeat {rfc3339(milliseconds=True)}\n\n".encode()


def sse_framed(ending: Ending, shutdown: Mapping[str, Any] = SHUTDOWN, untold: Mapping[str, Any] = UNTOLD) -> Framed:
    """An event stream ending with `event: end`, whose data says why, as an NDJSON stream's last line does."""
    return Framed(
        ending,
        shutdown,
        untold,
        frame=lambda item: sse_event("end", item),
        beat=sse_heartbeat,
        opening=f"retry: {RETRY_MS}\n\n".encode(),
    )


def load_stream_query(request: web.Request, schema_class: type[Schema]) -> tuple[dict[str, Any], Position | None]:
    """A stream's query: `format=sse` when it names no format and the Accept header asks for events (EventSource
    always does); an event stream resumed by its Last-Event-ID read again from that moment (`since`), and where."""
    wants_sse = SSE in request.headers.get(hdrs.ACCEPT, "")
    query: dict[str, Any] = load_query(request, schema_class, {"format": "sse"} if wants_sse else None)
    resumed = resumed_from(request) if query["format"] == "sse" else None
    if resumed is not None:
        query = {**query, "since": resumed.since}
    return query, resumed


@dataclass(frozen=True)
class Position:
    """The last event a client has: its moment (nanoseconds since the epoch) and its place among that moment's."""

    ns: int
    index: int

    @property
    def since(self) -> Decimal:
        """The moment as the engine's `since` takes it: Unix seconds, to the nanosecond."""
        return Decimal(self.ns) / 10**9


def resumed_from(request: web.Request) -> Position | None:
    """Where a reconnecting EventSource left off (Last-Event-ID), or None; an id not of ours is a 400 naming it."""
    text = request.headers.get(LAST_EVENT_ID)
    if text is None or not text.strip():
        return None
    found = _ID.fullmatch(text.strip())
    try:
        if found is None:
            raise ValueError(text)
        moment = found["moment"]
        ns = int(moment) if moment.isdigit() else rfc3339_ns(moment)
        if ns >= _LAST_NS:
            raise ValueError(text)
    except ValueError:
        raise BadRequest(
            f"invalid header: {LAST_EVENT_ID}",
            errors=[{"field": LAST_EVENT_ID, "message": "not an event id of this stream (<moment>:<index>)"}],
        ) from None
    return Position(ns, int(found["index"]))


class Places:
    """Numbers a stream's events within their moments and tells which a resumed client already has."""

    def __init__(self, after: Position | None) -> None:
        self._after = after
        self._moment = ""
        self._index = -1

    def place(self, moment: str, ns: int | None = None) -> int | None:
        """The next event's index within `moment`, or None if the client read it before it reconnected. `ns`
        is the moment in nanoseconds when the caller has it; otherwise it is read from `moment` (RFC 3339)."""
        if moment == self._moment:
            self._index += 1
        else:
            self._moment, self._index = moment, 0
        after = self._after
        if after is None:
            return self._index
        at = ns if ns is not None else rfc3339_ns(moment)
        if at < after.ns or (at == after.ns and self._index <= after.index):
            return None
        if at > after.ns:
            self._after = None  # past the resumption point: nothing further was read before
        return self._index
