"""Run one command in a running container: its output and exit code, answered whole or streamed as lines."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.execs import STDOUT, ExecRequest, ExecResult, run_exec, running_container
from moorage.schemas.containers import ContainerRef
from moorage.schemas.events import HeartbeatSchema
from moorage.schemas.execs import (
    ExecBody,
    ExecEndSchema,
    ExecLineSchema,
    ExecQuery,
    ExecResultSchema,
    exec_request,
)
from moorage.settings import Permission
from moorage.web.operations import STREAM, any_of, documented
from moorage.web.requests import load_json, load_query
from moorage.web.responses import NDJSON, Framed, ndjson_line, ok, serve_stream
from moorage.web.roles import requires
from moorage.web.scoping import container_ref
from moorage.web.state import AUDIT_DETAIL, docker, exec_docker, live, stream_slot, streams

routes = web.RouteTableDef()

# A streamed line longer than this is sent in pieces: a command printing without newlines still streams.
MAX_LINE = 64 * 1024
# Lines waiting for a slow client: past this the engine's output is read no faster than the client takes it.
_QUEUED_LINES = 256


def _text(data: bytes | bytearray, encoding: str) -> str:
    """Bytes that are not UTF-8 replaced (U+FFFD), or all of them as base64 when asked."""
    return base64.b64encode(data).decode() if encoding == "base64" else bytes(data).decode(errors="replace")


@routes.post(f"{API_PREFIX}/containers/{{container_id}}/exec")
@requires(Permission.CONTAINERS_EXEC)
@documented(
    "Run a command in a container",
    tag="containers",
    path=ContainerRef,
    query=ExecQuery,
    body=ExecBody,
    data=ExecResultSchema,
    raw={NDJSON: any_of(ExecLineSchema, HeartbeatSchema, ExecEndSchema)},
    errors=(404, 409, *STREAM),
)
async def exec_in_container(request: web.Request) -> web.StreamResponse:
    """Like `docker exec` without a terminal: `command` a list, or a string for `sh -c`; stdout and stderr apart,
    at most `max_output` bytes of both kept (`truncated`); past `timeout` seconds the command is killed and the
    answer says `timed_out`. Never privileged. `?stream=true` (or `Accept: application/x-ndjson`): NDJSON lines
    `{"stream", "line"}` as they come, then `{"exit_code", "timed_out", "duration"}`; a client that leaves kills
    the command."""
    ref = await container_ref(request)
    stream = load_query(request, ExecQuery)["stream"] or NDJSON in request.headers.get("Accept", "")
    body = await load_json(request, ExecBody)
    req, encoding = exec_request(body, live(request).exec), body["encoding"]
    container_id = await running_container(docker(request), ref)
    # The command's words, never its environment's values or its stdin.
    request[AUDIT_DETAIL] = audit = {
        "id": container_id,
        "command": list(req.command),
        "user": req.user,
        "bytes_in": len(req.stdin or b""),
    }
    if stream:
        return await _streamed(request, container_id, req, encoding, audit)
    result = await run_exec(exec_docker(request), container_id, req)
    audit.update(_outcome(result))
    return ok({
        "exit_code": result.exit_code,
        "stdout": _text(result.stdout, encoding),
        "stderr": _text(result.stderr, encoding),
        "encoding": encoding,
        "truncated": result.truncated,
        "timed_out": result.timed_out,
        "duration": result.duration,
    })  # fmt: skip


def _outcome(result: ExecResult) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "duration": result.duration,
        "bytes_out": result.bytes_out,
    }


class _Lines:
    """Each stream's output cut into lines (and pieces of MAX_LINE), as NDJSON lines."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._pending = {STDOUT: bytearray(), 2: bytearray()}

    def feed(self, stream: int, data: bytes) -> list[bytes]:
        pending = self._pending[stream]
        pending.extend(data)
        lines = []
        while (end := pending.find(b"\n")) >= 0 or len(pending) >= MAX_LINE:
            cut = end + 1 if 0 <= end < MAX_LINE else MAX_LINE
            lines.append(self._line(stream, pending[:cut].removesuffix(b"\n")))
            del pending[:cut]
        return lines

    def rest(self) -> list[bytes]:
        return [self._line(stream, pending) for stream, pending in self._pending.items() if pending]

    def _line(self, stream: int, data: bytes | bytearray) -> bytes:
        return ndjson_line({"stream": "stdout" if stream == STDOUT else "stderr", "line": _text(data, self._encoding)})


async def _streamed(
    request: web.Request, container_id: str, req: ExecRequest, encoding: str, audit: dict[str, Any]
) -> web.StreamResponse:
    """The lines as they come; the command runs in a task of its own, cancelled (and so killed) when the stream
    ends first: its client left, or moorage stops."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUED_LINES)
    lines = _Lines(encoding)

    async def on_output(stream: int, data: bytes) -> None:
        for line in lines.feed(stream, data):
            await queue.put(line)

    async def produce() -> ExecResult:
        # Cancelled, nobody reads the queue any more: nothing is put on it.
        try:
            result = await run_exec(docker(request), container_id, req, on_output)
        except Exception:
            await queue.put(None)
            raise
        for line in lines.rest():
            await queue.put(line)
        await queue.put(None)
        return result

    async def body() -> AsyncIterator[bytes]:
        while (line := await queue.get()) is not None:
            yield line

    async def ending(failure: Exception | None) -> Mapping[str, Any]:
        result = await task
        audit.update(_outcome(result))
        return {"exit_code": result.exit_code, "timed_out": result.timed_out, "duration": result.duration}

    with stream_slot(request, NDJSON):
        task = asyncio.ensure_future(produce())
        try:
            return await serve_stream(request, streams(request), NDJSON, body(), Framed(ending))
        finally:
            if not task.done():
                task.cancel()
            await asyncio.wait({task})
