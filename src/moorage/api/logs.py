"""Container logs: a capped JSON page, or text/NDJSON streamed as the engine writes it (with follow, for hours)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiodocker.exceptions import DockerError
from aiohttp import web

from ..auth import requires
from ..config import LogsSettings, Role
from ..engine import docker, streams
from ..envelope import ended_even_if_cancelled, ndjson_line, ok, stream_response
from ..keys import live
from ..logs import LogLine, first_line, fitting, split_lines, whole_lines
from ..openapi import NDJSON, STREAM, documented, listing, shape
from ..schemas.containers import ContainerRef
from ..schemas.logs import LogLineSchema, LogQuery, engine_window
from ..streams import batched
from ..validation import load_path, load_query
from .paths import API_PREFIX

routes = web.RouteTableDef()
_LOGGER = logging.getLogger(__name__)
_LINE = LogLineSchema()
# Failures of the engine's side of a stream once our headers are out: logged, and the stream ends.
ENGINE_STREAM_ERRORS = (DockerError, aiohttp.ClientError, TimeoutError)


def stamped(query: dict[str, Any]) -> bool:
    """JSON and NDJSON items always carry a timestamp; text shows them only when asked, as `docker logs -t`."""
    return bool(query["timestamps"] or query["format"] != "text")


def engine_params(query: dict[str, Any]) -> dict[str, str]:
    params = {
        "stdout": str(query["stdout"]).lower(),
        "stderr": str(query["stderr"]).lower(),
        "follow": str(query["follow"]).lower(),
        "timestamps": str(stamped(query)).lower(),
        "tail": query["tail"],
    }
    params.update(engine_window(query))
    return params


@routes.get(f"{API_PREFIX}/containers/{{container_id}}/logs")
@requires(Role.VIEWER)
@documented(
    "A container's logs",
    path=ContainerRef,
    query=LogQuery,
    data=shape(items=listing(LogLineSchema), truncated="boolean"),
    raw={"text/plain": {"type": "string"}, NDJSON: LogLineSchema},
    errors=(404, *STREAM),
)
async def container_logs(request: web.Request) -> web.StreamResponse:
    query = load_query(request, LogQuery)
    ref = load_path(request, ContainerRef)["container_id"]
    # Inspect first: an unknown container is a 404 before any header goes out, and TTY decides the framing.
    inspected = await docker(request).containers.container(ref).show()
    gate = streams(request)
    limits = live(request).logs
    with gate.slot():
        async with gate.request("GET", f"/containers/{inspected['Id']}/logs", engine_params(query)) as engine:
            tty = inspected["Config"]["Tty"]
            runs = whole_lines(batched(engine.content), tty, stamped(query), limits.max_line_bytes)
            if query["format"] == "json":
                return ok(await first_lines(runs, limits))
            return await stream_lines(request, runs, query["format"], query["timestamps"])


async def first_lines(runs: AsyncIterator[tuple[int, bytes]], limits: LogsSettings) -> dict[str, Any]:
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
            return {"items": _LINE.dump(items[: limits.max_lines], many=True), "truncated": True}
    return {"items": _LINE.dump(items, many=True), "truncated": False}


async def stream_lines(
    request: web.Request, runs: AsyncIterator[tuple[int, bytes]], fmt: str, timestamps: bool
) -> web.StreamResponse:
    """Each run of lines is written as it arrives; `write` waits for a slow client, so memory stays flat."""
    response = stream_response("text/plain; charset=utf-8" if fmt == "text" else "application/x-ndjson")
    await response.prepare(request)
    try:
        async with ended_even_if_cancelled(response):
            await write_runs(response, runs, fmt)
    except ConnectionResetError:
        return response
    except ENGINE_STREAM_ERRORS as err:
        _LOGGER.warning("log stream of %s ended by the engine: %s", request.match_info["container_id"], err)
    await response.write_eof()
    return response


async def write_runs(response: web.StreamResponse, runs: AsyncIterator[tuple[int, bytes]], fmt: str) -> None:
    for_text = fmt == "text"
    async for stream, run in runs:
        if for_text:
            await response.write(run.decode("utf-8", "replace").encode())
        else:
            lines = split_lines(stream, run, timestamps=True)
            await response.write(b"".join(ndjson_line(_LINE.dump(line)) for line in lines))
