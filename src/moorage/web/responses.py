"""The response envelope of the API reference: `{code, message, data}` and `{code, message, errors}`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import content_disposition_header
from multidict import CIMultiDict

from moorage.access.audit import cut
from moorage.engine.errors import ENGINE_STREAM_ERRORS
from moorage.engine.streams import EngineStreams
from moorage.errors import ApiError
from moorage.timestamps import rfc3339

_LOGGER = logging.getLogger(__name__)
JSON = "application/json"
NDJSON = "application/x-ndjson"
# Statuses that tell the client to come back: each says when (RFC 9110 10.2.3), this long unless the error knows.
RETRY_LATER = frozenset({429, 503})
RETRY_AFTER = "5"  # seconds


def ok(
    data: Any, status: int = 200, message: str = "success", headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response({"code": status, "message": message, "data": data}, status, headers)


def paged(found: Sequence[Any], query: Mapping[str, Any], shape: Callable[[Any], Any]) -> web.Response:
    """The query's page of `found` (filtered and in order) as every list answers: `{total, items}`."""
    chosen = found[query["offset"] : query["offset"] + query["limit"]]
    return ok({"total": len(found), "items": [shape(item) for item in chosen]})


def error(
    status: int,
    message: str,
    errors: Sequence[Mapping[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> web.Response:
    """The error envelope; `data`, when a failure has more to say (what it did and undid), beside `errors`."""
    headers = CIMultiDict(headers or {})
    if status in RETRY_LATER:
        headers.setdefault("Retry-After", RETRY_AFTER)
    body = {"code": status, "message": message, "errors": list(errors)}
    return json_response(body if data is None else {**body, "data": data}, status, headers)


def json_response(body: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    """orjson writes UTF-8 bytes directly, several times faster than json on a 500-container list."""
    return web.Response(body=dumps(body), status=status, headers=headers, content_type=JSON)


def dumps(item: Any, option: int = 0) -> bytes:
    """JSON of anything an answer holds, whatever a client sent: text that is not valid Unicode (a lone surrogate,
    which orjson refuses) is written escaped (`\\ud800`) rather than failing the answer. Only on orjson's error:
    valid text costs nothing more."""
    try:
        return orjson.dumps(item, option=option)
    except orjson.JSONEncodeError:
        return orjson.dumps(encodable(item), option=option)


def encodable(item: Any) -> Any:
    """`item` with every string (keys too) that UTF-8 cannot encode written with backslash escapes instead."""
    if isinstance(item, str):
        return item.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(item, Mapping):
        return {encodable(str(key)): encodable(value) for key, value in item.items()}
    if isinstance(item, list | tuple):
        return [encodable(value) for value in item]
    return item


def ndjson_line(item: Any) -> bytes:
    """One line of a streamed NDJSON response."""
    return dumps(item, orjson.OPT_APPEND_NEWLINE)


class _StreamResponse(web.StreamResponse):
    """A stream that writes no body to a HEAD request, whatever its handler writes: aiohttp would send
    those bytes raw after the headers, and on a keep-alive connection the client reads them as its next
    answer. The streams' gate answers HEAD before any stream opens; this is the net behind it."""

    _bodyless = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        self._bodyless = request.method == hdrs.METH_HEAD
        return await super().prepare(request)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._bodyless:
            await super().write(data)

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(b"" if self._bodyless else data)


def attached(filename: str) -> dict[str, str]:
    """The headers of an answer saved as a file of that name."""
    return {hdrs.CONTENT_DISPOSITION: content_disposition_header("attachment", filename=filename)}


def stream_response(content_type: str = NDJSON, headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """A response written as data arrives: no compression, no proxy buffering, and chunked unless `headers`
    give its Content-Length (a file whose size is known)."""
    return _StreamResponse(
        headers={
            "Content-Type": content_type,
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        }
    )


@contextlib.asynccontextmanager
async def ended_even_if_cancelled(response: web.StreamResponse, last: bytes = b"") -> AsyncIterator[None]:
    """A prepared stream whose handler is cancelled (at shutdown) still ends properly: the client reads
    `last` (an NDJSON stream's line saying so) and the end of the body, not a cut connection."""
    try:
        yield
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # a client that is gone cannot be told
            await response.write_eof(last)
        raise


# What an NDJSON stream's last line says when moorage stops (its handler is cancelled by end_all).
SHUTDOWN = {"end": "shutdown"}
# Its last line when the line that would say why could not be made (a bug, or a session closed at shutdown).
UNTOLD = {"end": "engine_gone", "message": "the stream ended, and why could not be told: see moorage's log"}


class HeadAnswered(Exception):
    """A HEAD request reached a stream's gate: its answer is the headers a GET would get, and no stream.

    Raised rather than returned so that no handler can go on to open the stream; the error middleware
    answers `response`."""

    def __init__(self, content_type: str) -> None:
        super().__init__("HEAD of a stream")
        self.response = stream_response(content_type)


# The last item of a framed stream, from the failure that ended it (None: the source came to its end).
Ending = Callable[[Exception | None], Awaitable[Mapping[str, Any]]]


def heartbeat() -> bytes:
    """The line a quiet NDJSON stream sends: the time, so that a reader can also tell how late it is."""
    return ndjson_line({"heartbeat": rfc3339(milliseconds=True)})


@dataclass(frozen=True)
class Framed:
    """A stream of items (NDJSON lines, or Server-Sent Events): heartbeats while it is quiet, and a last item
    that says why it ended. `frame` writes that last item and `beat` a heartbeat, as the stream's format does;
    `opening` goes out first (an event stream's reconnection delay)."""

    ending: Ending
    shutdown: Mapping[str, Any] = field(default_factory=lambda: SHUTDOWN)
    untold: Mapping[str, Any] = field(default_factory=lambda: UNTOLD)
    frame: Callable[[Mapping[str, Any]], bytes] = ndjson_line
    beat: Callable[[], bytes] = heartbeat
    opening: bytes = b""


async def serve_stream(
    request: web.Request,
    streams: EngineStreams,
    content_type: str,
    body: AsyncIterator[bytes],
    framed: Framed | None = None,
    headers: Mapping[str, str] | None = None,
    whole: bool = False,
) -> web.StreamResponse:
    """The skeleton of every stream: headers out (`headers` beside the stream's own), `body` written as it
    comes, and an end the client can read. A framed stream (NDJSON, SSE) also gets a heartbeat whenever it was quiet
    for [server] heartbeat_seconds (a proxy's read timeout would cut it otherwise), and a last item saying why
    it ended: the source's end, a failure (after the headers nothing may reach the error middleware), or
    moorage's shutdown. A body of a given Content-Length, or one that must come `whole` (a download), that fails
    before its end is cut (the connection closed), so that the client cannot take a short body for the whole.
    A client that left is not written to."""
    response = stream_response(content_type, headers)
    await response.prepare(request)
    try:
        async with ended_even_if_cancelled(response, framed.frame(framed.shutdown) if framed else b""):
            if framed and framed.opening:
                await response.write(framed.opening)
            failure = await _copied(response, with_heartbeats(body, streams.heartbeat, framed.beat) if framed else body)
            if failure is not None and not isinstance(failure, ApiError):
                engine = isinstance(failure, ENGINE_STREAM_ERRORS)
                _LOGGER.warning("stream of %s ended by a failure: %s", cut(request.path), failure, exc_info=not engine)
            if failure is not None and (whole or response.content_length is not None):
                request.protocol.force_close()
                return response
            await response.write_eof(await _last_line(request, streams, framed, failure) if framed else b"")
    except ConnectionResetError:
        pass  # the client left
    return response


async def _last_line(request: web.Request, streams: EngineStreams, framed: Framed, failure: Exception | None) -> bytes:
    """The item saying why the stream ended; whatever making it raised, an item (shutdown, or `untold`) and
    the log: the headers are out, and a failure escaping now would cut the connection mid-body."""
    try:
        return framed.frame(await framed.ending(failure))
    except Exception:
        _LOGGER.exception("stream of %s: why it ended could not be told", cut(request.path))
        return framed.frame(framed.shutdown if streams.ending_all else framed.untold)


async def _copied(response: web.StreamResponse, chunks: AsyncIterator[bytes]) -> Exception | None:
    """Write the chunks to their end; the failure that ended them instead, but a client that left raises."""
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                await response.write(chunk)
    except ConnectionResetError:
        raise
    except Exception as err:
        return err
    return None


async def with_heartbeats(
    chunks: AsyncIterator[bytes], every: float, beat: Callable[[], bytes] = heartbeat
) -> AsyncIterator[bytes]:
    """The chunks as they come, and a heartbeat whenever none came for `every` seconds.

    The next chunk is awaited in a task of its own, so that the wait can time out without cancelling the
    source: a cancelled async generator is ended, not paused."""
    source = aiter(chunks)
    upcoming = asyncio.ensure_future(anext(source))
    try:
        while True:
            done, _ = await asyncio.wait((upcoming,), timeout=every)
            if not done:
                yield beat()
                continue
            try:
                chunk = upcoming.result()
            except StopAsyncIteration:
                return
            upcoming = asyncio.ensure_future(anext(source))
            yield chunk
    finally:
        upcoming.cancel()
        await asyncio.wait((upcoming,))
        if not upcoming.cancelled():
            upcoming.exception()  # the source's end, or a failure the caller no longer waits for: retrieved
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()  # now, so that what it holds (engine streams) is let go now, not when collected
