"""Many containers' logs as one stream (GET /logs): those named and those a label chooses, each line naming its
container, in timestamp order; followed, the containers that start later join, and those that stop are told."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiodocker.exceptions import DockerError
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.engine.client import engine_json
from moorage.engine.filters import engine_filters
from moorage.engine.frames import split_lines
from moorage.logs.grep import LineGrep
from moorage.logs.merge import Cursor, Joiner, Notice, Source, merged, primed
from moorage.logs.sources import LogReading, Member, started
from moorage.schemas.events import HeartbeatSchema, StreamEndSchema
from moorage.schemas.logs import (
    MergedLineSchema,
    MergedLogQuery,
    NoticeSchema,
    download_window,
    engine_params,
    file_suffix,
    line_fields,
    line_grep,
    line_items,
)
from moorage.settings import Permission
from moorage.web.compression import gzipped_if_accepted
from moorage.web.operations import STREAM, any_of, documented
from moorage.web.responses import NDJSON, Framed, attached, ndjson_line, serve_stream
from moorage.web.roles import requires
from moorage.web.scoping import inspect_container, listed_containers, with_scope_labels
from moorage.web.sse import SSE, Places, line_event, load_stream_query, sse_event, sse_framed
from moorage.web.state import PRINCIPAL, docker, live, stream_slot, streams
from moorage.web.zipfiles import ZIP, zipped

routes = web.RouteTableDef()
TEXT = "text/plain; charset=utf-8"
MEDIA_TYPES = {"text": TEXT, "ndjson": NDJSON, "sse": SSE}


@routes.get(f"{API_PREFIX}/logs")
@requires(Permission.CONTAINERS_LOGS)
@documented(
    "Many containers' logs as one",
    tag="logs",
    query=MergedLogQuery,
    raw={
        "text/plain": {"type": "string"},
        NDJSON: any_of(MergedLineSchema, NoticeSchema, HeartbeatSchema, StreamEndSchema),
        SSE: any_of(MergedLineSchema, NoticeSchema, StreamEndSchema),
        ZIP: {"type": "string", "format": "binary"},
    },
    errors=(404, *STREAM),
)
async def get_merged_logs(request: web.Request) -> web.StreamResponse:
    """The lines of every container named (`container`) and every one with the labels (`label`), stopped ones
    too, as NDJSON, SSE or text (`<name> | <line>`, as `docker compose logs`), each naming its container; since,
    until, tail and grep apply to each. Lines come in timestamp order; followed, a line is held at most
    [logs] merge_window_ms for a container that may still send an earlier one. Each container's log opening
    is told (`notice: joined`); followed, so is its end (`container_stopped` with its exit code,
    `container_removed`), and containers with the labels that start later join. A stream of named containers
    alone ends when all of them have stopped. `download=true` is one file; `download=zip`, a file each."""
    query, resumed = load_stream_query(request, MergedLogQuery)
    if resumed is not None:
        query["tail"] = "all"
    began_ns = time.time_ns()
    members = await chosen(request, query)
    reading = log_reading(request, query)
    with stream_slot(request, ZIP if query["download"] == "zip" else MEDIA_TYPES[query["format"]]):
        if query["download"] == "zip":
            return await serve_zip(request, query, reading, members)
        sources = await primed({key: reading.source(member, None, first=True) for key, member in members.items()})

        def opener(key: Any, cursor: Cursor | None) -> Source:
            return reading.source(members[key], cursor)

        window = live(request).logs.merge_window_ms / 1000 if query["follow"] else None
        batches = merged(
            sources,
            opener,
            joiners(request, query, members, began_ns),
            window=window,
            began_ns=began_ns,
            lasting=bool(query.get("label")),
        )
        return await serve_merged(request, query, batches, members, resumed)


async def chosen(request: web.Request, query: dict[str, Any]) -> dict[str, Member]:
    """The containers the query names (a 404 for one there is not, or is outside the caller's scope) and those
    with its labels, by id."""
    members: dict[str, Member] = {}
    for ref in query.get("container", ()):
        member = Member.of(await inspect_container(request, ref))
        members[member.id] = member
    if query.get("label"):
        for member in await labelled(request, query["label"], None):
            members.setdefault(member.id, member)
    return members


async def labelled(request: web.Request, labels: list[str], container_id: str | None) -> list[Member]:
    """The containers (all, or the one of `container_id`) with every label that the caller may see: as the
    engine's `docker ps --filter label=` finds them, inspected for what their lines need."""
    wanted = with_scope_labels(request, {"label": labels, "id": [container_id] if container_id else None})
    params = {"all": "1", "filters": engine_filters(wanted, "label", "id")}
    found = listed_containers(request, await engine_json(docker(request), "containers/json", params=params))
    inspected = await asyncio.gather(
        *(engine_json(docker(request), f"containers/{item['Id']}/json") for item in found), return_exceptions=True
    )
    members = []
    for item in inspected:
        if isinstance(item, DockerError) and item.status == 404:
            continue  # removed since it was listed
        if isinstance(item, BaseException):
            raise item
        members.append(Member.of(item))
    return members


def joiners(
    request: web.Request, query: dict[str, Any], members: dict[str, Member], began_ns: int
) -> AsyncGenerator[Joiner, None] | None:
    """Followed, the containers that start join (until `until`; none if it is already past)."""
    if not query["follow"] or ("until" in query and query["until"] * 10**9 <= began_ns):
        return None
    return started(streams(request), events_params(began_ns, query), joining(request, query, members))


def joining(request: web.Request, query: dict[str, Any], members: dict[str, Member]) -> Callable[[str], Any]:
    """Whether a container that started joins: one named, or one with the labels (kept among `members`)."""
    labels = query.get("label")

    async def wanted(container_id: str) -> bool:
        if container_id in members:
            return True
        if not labels:
            return False
        for member in await labelled(request, labels, container_id):
            members[member.id] = member
        return container_id in members

    return wanted


def events_params(began_ns: int, query: dict[str, Any]) -> dict[str, str]:
    """Containers' starts from when the merge chose its containers (the engine replays those since) on."""
    starts = engine_filters({"type": ["container"], "event": ["start"]}, "type", "event")
    params = {"since": f"{Decimal(began_ns) / 10**9:.9f}", "filters": starts}
    if "until" in query:
        params["until"] = f"{query['until']:.9f}"
    return params


def log_reading(request: web.Request, query: dict[str, Any]) -> LogReading:
    parsed = line_fields(query)

    def shape(member: Member, stream: int, run: bytes) -> list[tuple[str, Any]]:
        # Dumped as a single log's lines and tagged after: as MergedLineSchema, its nested field looked up on every
        # line cost a fifth of the merge's time.
        items = line_items(split_lines(stream, run, timestamps=True), parsed)
        tag = member.tag
        for item in items:
            item["container"] = tag
        return [(item["timestamp"] or "", item) for item in items]

    def grep(tty: bool) -> LineGrep:
        return line_grep(query, stamped=True, tty=tty)

    return LogReading(
        gate=streams(request),
        docker=docker(request),
        key=request.get(PRINCIPAL),
        params=engine_params(query, stamped=True),
        shape=shape,
        max_line=live(request).logs.max_line_bytes,
        grep=grep if "grep" in query else None,
        follow=query["follow"],
    )


async def serve_merged(
    request: web.Request,
    query: dict[str, Any],
    batches: AsyncGenerator[list[Any], None],
    members: dict[str, Member],
    resumed: Any,
) -> web.StreamResponse:
    fmt = query["format"]
    if query["download"]:
        batches = lines_only(batches)
    if fmt == "text":
        body = text_lines(batches, query["timestamps"], named=True)
    elif fmt == "sse":
        body = line_events(batches, Places(resumed))
    else:
        body = ndjson_lines(batches)
    if query["download"]:
        name = f"logs-{download_window(query, earliest(members.values()))}.{file_suffix(query)}"
        body, headers = gzipped_if_accepted(request, body, attached(name))
        return await serve_stream(request, streams(request), MEDIA_TYPES[fmt], body, headers=headers, whole=True)

    async def ending(failure: Exception | None) -> dict[str, Any]:
        if failure is not None:
            return {"end": "engine_gone", "message": str(failure)}
        if not query["follow"] or "until" in query:
            return {"end": "done"}
        if query.get("label"):
            return {"end": "engine_gone", "message": "the engine ended the event stream"}
        return {"end": "containers_stopped"}

    framed = sse_framed(ending) if fmt == "sse" else Framed(ending)
    return await serve_stream(request, streams(request), MEDIA_TYPES[fmt], body, framed)


async def serve_zip(
    request: web.Request, query: dict[str, Any], reading: LogReading, members: dict[str, Member]
) -> web.StreamResponse:
    """A zip of one file per container, `<name>-<since>-<until>.log` (`.ndjson`), each as its own download is;
    their logs are read one after another."""
    fmt = query["format"]

    async def entries() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        for member in sorted(members.values(), key=lambda m: m.name):
            pieces = lines_only(batched_pieces(reading.source(member, None, first=True)))
            body = ndjson_lines(pieces) if fmt == "ndjson" else text_lines(pieces, query["timestamps"], named=False)
            yield f"{member.name}-{download_window(query, member.created)}.{file_suffix(query)}", body

    name = f"logs-{download_window(query, earliest(members.values()))}.zip"
    return await serve_stream(request, streams(request), ZIP, zipped(entries()), headers=attached(name), whole=True)


async def batched_pieces(source: Source) -> AsyncGenerator[list[Any], None]:
    """One container's source as batches of items, as a merge gives them."""
    async with contextlib.aclosing(source):
        async for piece in source:
            yield [piece.item] if isinstance(piece, Notice) else [item for _, item in piece]


async def lines_only(batches: AsyncGenerator[list[Any], None]) -> AsyncGenerator[list[Any], None]:
    """A download's lines: its notices left out, but one saying a container's log failed fails the download
    (which is then cut), so that a short file is not taken for the whole."""
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for item in batch:
                if item.get("notice") == "failed":
                    raise DownloadFailed(f"{item['container']['name']}: {item['message']}")
            yield [item for item in batch if "line" in item]


class DownloadFailed(Exception):
    """A container's log failed during a download."""


def earliest(members: Iterable[Member]) -> datetime | None:
    """When the first of the containers was created: where a download of them all begins, unless `since` says."""
    return min((member.created for member in members), default=None)


async def ndjson_lines(batches: AsyncGenerator[list[Any], None]) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(batches):
        async for batch in batches:
            yield b"".join(ndjson_line(item) for item in batch)


async def text_lines(batches: AsyncGenerator[list[Any], None], timestamps: bool, named: bool) -> AsyncIterator[bytes]:
    """Lines as `docker logs` writes them, `named` as `docker compose logs` does (`<name> | <line>`); notices are
    left out, as those write none."""
    async with contextlib.aclosing(batches):
        async for batch in batches:
            text = "".join(
                f"{item['container']['name'] + ' | ' if named else ''}{item['timestamp'] + ' ' if timestamps else ''}"
                f"{item['line']}\n"
                for item in batch
                if "line" in item
            )
            if text:
                yield text.encode()


async def line_events(batches: AsyncGenerator[list[Any], None], places: Places) -> AsyncIterator[bytes]:
    """Lines as `event: line` and notices as `event: notice`; a line's id is its timestamp and place there."""
    async with contextlib.aclosing(batches):
        async for batch in batches:
            events = (line_event(item, places) if "line" in item else sse_event("notice", item) for item in batch)
            if out := b"".join(events):
                yield out
