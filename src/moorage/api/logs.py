"""Container logs: a capped JSON page, or text/NDJSON streamed as the engine writes it (with follow, for hours)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.engine.frames import LogLine, first_line, fitting, split_lines, whole_lines
from moorage.engine.streams import batched
from moorage.logs.fields import LineFields
from moorage.logs.grep import grepped
from moorage.logs.sources import stop_reason
from moorage.schemas.containers import ContainerRef
from moorage.schemas.events import HeartbeatSchema, StreamEndSchema
from moorage.schemas.logs import (
    LogLineSchema,
    LogQuery,
    download_window,
    engine_params,
    file_suffix,
    line_fields,
    line_grep,
    line_items,
)
from moorage.settings import LogsSettings, Permission
from moorage.web.compression import gzipped_if_accepted
from moorage.web.operations import STREAM, any_of, documented, listing, shape
from moorage.web.responses import JSON, NDJSON, Framed, attached, ndjson_line, ok, serve_stream
from moorage.web.roles import requires
from moorage.web.scoping import container_ref
from moorage.web.sse import SSE, Places, Position, line_event, load_stream_query, sse_framed
from moorage.web.state import docker, live, stream_slot, streams

routes = web.RouteTableDef()
MEDIA_TYPES = {"json": JSON, "text": "text/plain; charset=utf-8", "ndjson": NDJSON, "sse": SSE}


def stamped(query: dict[str, Any]) -> bool:
    """JSON and NDJSON items always carry a timestamp; text shows them only when asked, as `docker logs -t`."""
    return bool(query["timestamps"] or query["format"] != "text")


@routes.get(f"{API_PREFIX}/containers/{{container_id}}/logs")
@requires(Permission.CONTAINERS_LOGS)
@documented(
    "A container's logs",
    tag="logs",
    path=ContainerRef,
    query=LogQuery,
    data=any_of(shape(items=listing(LogLineSchema), truncated="boolean"), shape(count="integer")),
    raw={
        "text/plain": {"type": "string"},
        NDJSON: any_of(LogLineSchema, HeartbeatSchema, StreamEndSchema),
        SSE: any_of(LogLineSchema, StreamEndSchema),
    },
    errors=(404, *STREAM),
)
async def get_container_logs(request: web.Request) -> web.StreamResponse:
    """A JSON page, or a stream as text, NDJSON or Server-Sent Events (format=sse, or Accept: text/event-stream).
    An NDJSON stream sends `{"heartbeat": time}` when it was quiet for [server] heartbeat_seconds and ends with
    `{"end": reason}`; SSE sends a comment and `event: end`; text has neither, so behind a proxy with a read
    timeout follow in NDJSON or SSE. An SSE client's Last-Event-ID resumes after the line it names (and `tail`
    no longer applies). HEAD answers the headers only and opens no stream."""
    query, resumed = load_stream_query(request, LogQuery)
    if resumed is not None:
        query["tail"] = "all"
    ref = await container_ref(request)
    # Inspect first: an unknown container is a 404 before any header goes out, and TTY decides the framing.
    inspected = await docker(request).containers.container(ref).show()
    gate = streams(request)
    limits = live(request).logs
    with stream_slot(request, MEDIA_TYPES[query["format"]]):
        params = engine_params(query, stamped(query))
        async with gate.request("GET", f"/containers/{inspected['Id']}/logs", params) as engine:
            tty = inspected["Config"]["Tty"]
            runs = whole_lines(batched(engine.content), tty, stamped(query), limits.max_line_bytes)
            if "grep" in query:
                runs = grepped(runs, line_grep(query, stamped=stamped(query), tty=tty))
            if query["count"]:
                return ok({"count": await counted(runs)})
            if query["format"] == "json":
                return ok(await first_lines(runs, limits, line_fields(query)))
            return await stream_lines(request, runs, query, inspected, resumed)


async def counted(runs: AsyncIterator[tuple[int, bytes]]) -> int:
    """How many lines: the whole log's (or its window's), read to its end and never held."""
    total = 0
    async for _, run in runs:
        total += run.count(b"\n")
    return total


async def first_lines(
    runs: AsyncIterator[tuple[int, bytes]], limits: LogsSettings, parsed: LineFields
) -> dict[str, Any]:
    """Up to max_lines lines and max_page_bytes bytes of them (as the engine sent them, stamps included; at
    least one line), oldest first; reading stops there, and `truncated` says the log went on."""
    items: list[LogLine] = []
    room = limits.max_page_bytes
    async for stream, run in runs:
        kept = fitting(run, room)
        if not kept and not items:
            kept = first_line(run)
        items.extend(split_lines(stream, kept, timestamps=True))
        room -= len(kept)
        if len(items) > limits.max_lines or len(kept) < len(run):
            return {"items": line_items(items[: limits.max_lines], parsed), "truncated": True}
    return {"items": line_items(items, parsed), "truncated": False}


async def stream_lines(
    request: web.Request,
    runs: AsyncIterator[tuple[int, bytes]],
    query: dict[str, Any],
    inspected: dict[str, Any],
    resumed: Position | None,
) -> web.StreamResponse:
    """Each run of lines is written as it arrives; `write` waits for a slow client, so memory stays flat.
    NDJSON ends with a line saying why (the container stopped, the log is complete, the engine broke it).
    A download is the file alone: no heartbeats, no last line, and cut if it fails, so a short file is not
    taken for the whole."""
    fmt = query["format"]
    body = write_runs(runs, fmt, line_fields(query), Places(resumed))
    if query["download"]:
        window = download_window(query, datetime.fromisoformat(inspected["Created"]))
        name = f"{inspected['Name'].lstrip('/')}-{window}.{file_suffix(query)}"
        body, headers = gzipped_if_accepted(request, body, attached(name))
        return await serve_stream(request, streams(request), MEDIA_TYPES[fmt], body, headers=headers, whole=True)

    async def ending(failure: Exception | None) -> dict[str, Any]:
        return await log_ended(request, inspected["Id"], query, failure)

    framed = {"ndjson": Framed(ending), "sse": sse_framed(ending)}.get(fmt)
    return await serve_stream(request, streams(request), MEDIA_TYPES[fmt], body, framed)


async def write_runs(
    runs: AsyncIterator[tuple[int, bytes]], fmt: str, parsed: LineFields, places: Places
) -> AsyncIterator[bytes]:
    """Each run of lines as the bytes the client is sent, in the stream's format."""
    async for stream, run in runs:
        if fmt == "text":
            yield run.decode("utf-8", "replace").encode()
            continue
        items = line_items(split_lines(stream, run, timestamps=True), parsed)
        if fmt == "sse":
            yield b"".join(line_event(item, places) for item in items)
        else:
            yield b"".join(ndjson_line(item) for item in items)


async def log_ended(
    request: web.Request, container_id: str, query: dict[str, Any], failure: Exception | None
) -> dict[str, Any]:
    """Why a log stream ended: a followed log whose container is no longer running ends because it stopped."""
    if failure is not None:
        return {"end": "engine_gone", "message": str(failure)}
    if not query["follow"]:
        return {"end": "done"}
    return await stop_reason(docker(request), container_id)
