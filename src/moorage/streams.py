"""Long-lived engine streams (logs, events, pulls): their own connection pool, caps, and an end at shutdown.

Streams get a pool of their own so that abandoned or endless ones cannot starve the one every other
call uses; beyond the caps (all streams, one key's, the room kept for admins) a new stream is a 429.
Each open stream's handler task is registered, so that shutdown can end them at once instead of waiting
out aiohttp's shutdown_timeout. A HEAD request gets a stream's headers from the gate and nothing else:
no slot, no engine call, no body. Every stream is written by `EngineStreams.serve`, the one skeleton
that sends NDJSON heartbeats and the line saying why a stream ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiodocker.exceptions import DockerError
from aiohttp import hdrs, web

from .audit import cut
from .config import ApiKey, DockerSettings, Role
from .envelope import ended_even_if_cancelled, ndjson_line, stream_response
from .errors import DOCKER_UNREACHABLE, ApiError, TooManyRequests
from .requestctx import mark_stream
from .timestamps import rfc3339

_LOGGER = logging.getLogger(__name__)
_READ_BUFFER = 1024 * 1024
_BATCH = 64 * 1024
_LINGER = 0.005  # seconds
# Failures of the engine's side of a stream once our headers are out: logged, and the stream ends.
ENGINE_STREAM_ERRORS = (DockerError, aiohttp.ClientError, TimeoutError, ValueError)
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


# The last line of an NDJSON stream, from the failure that ended it (None: the source came to its end).
Ending = Callable[[Exception | None], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class Ndjson:
    """An NDJSON stream: heartbeats while it is quiet, and a last line that says why it ended."""

    ending: Ending
    shutdown: Mapping[str, Any] = field(default_factory=lambda: SHUTDOWN)
    untold: Mapping[str, Any] = field(default_factory=lambda: UNTOLD)


class EngineLate(TimeoutError):
    """The engine did not answer a call's head in time; the text names the call."""


class EngineStreams:
    def __init__(
        self,
        docker: DockerSettings,
        cap: int | None = None,
        *,
        per_key: int | None = None,
        admin_reserved: int = 0,
        heartbeat: float = 15.0,
    ) -> None:
        # The pool holds as many connections as streams may be open; without a cap (moorage's own followers: a
        # stats stream per running container) it is unbounded, aiohttp's 0.
        pool = cap or 0
        if docker.url.startswith("unix://"):
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(docker.url.removeprefix("unix://"), limit=pool)
            self._base = "http://docker"
        else:
            connector = aiohttp.TCPConnector(limit=pool)
            self._base = docker.url.replace("tcp://", "http://", 1).rstrip("/")
        # No total timeout: a followed log is open for hours. `request` bounds connecting and the answer's head.
        timeout = aiohttp.ClientTimeout(total=None)
        # HTTP/1.0, so that the engine sends a body as it is instead of in HTTP chunks: it writes a chunk
        # per log line, and parsing two million chunk headers cost more than all else moorage does.
        # Large reads, so that one trip through the event loop takes many lines.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, read_bufsize=_READ_BUFFER, version=aiohttp.HttpVersion10
        )
        self._url = docker.url
        self._timeout = docker.timeout
        self.cap = cap
        self.per_key = per_key
        self.admin_reserved = admin_reserved
        self.heartbeat = heartbeat
        self._open: dict[asyncio.Task[object], str | None] = {}  # handler task: the key name it streams for
        self._ending_all = False  # moorage is stopping
        self._per_key: Counter[str | None] = Counter()

    @property
    def in_use(self) -> int:
        return len(self._open)

    @contextlib.contextmanager
    def slot(self, method: str, key: ApiKey | None, content_type: str) -> Iterator[None]:
        """Count the calling handler as an open stream of `key` for as long as it runs; 429 beyond a cap.

        A HEAD request is answered here, before anything is opened: HeadAnswered, whatever the caps.
        A key's tokens stream as the key (the principal is the key)."""
        if method == hdrs.METH_HEAD:
            raise HeadAnswered(content_type)
        name = key.name if key else None
        self._refuse_beyond_caps(key, name)
        task = asyncio.current_task()
        assert task is not None
        mark_stream()
        self._open[task] = name
        self._per_key[name] += 1
        try:
            yield
        finally:
            del self._open[task]
            self._per_key[name] -= 1
            if not self._per_key[name]:
                del self._per_key[name]

    def _refuse_beyond_caps(self, key: ApiKey | None, name: str | None) -> None:
        """Every caller within max_streams; one that is not an admin key (a caller without a key is the most
        limited of all) also within its quota and short of the admins' reserve, so that a viewer's script can
        neither starve other keys nor lock out the admin. Without a cap, nothing is refused. Retry-After is the
        error envelope's."""
        if self.cap is None:
            return
        if len(self._open) >= self.cap:
            raise TooManyRequests(f"{self.cap} streams are open already ([server] max_streams); try again later")
        if key is not None and key.role is Role.ADMIN:
            return
        if len(self._open) >= self.cap - self.admin_reserved:
            raise TooManyRequests(
                f"{len(self._open)} streams are open: the rest of [server] max_streams ({self.cap}) is kept for"
                f" admin keys ([server] admin_reserved_streams = {self.admin_reserved}); try again later"
            )
        if self.per_key is not None and self._per_key[name] >= self.per_key:
            who = f"key {name!r} has" if name else "callers without a key have"
            raise TooManyRequests(
                f"{who} {self.per_key} streams open, the most a key that is not admin may"
                " ([server] max_streams_per_key); close one or try again later"
            )

    async def serve(
        self, request: web.Request, content_type: str, body: AsyncIterator[bytes], ndjson: Ndjson | None = None
    ) -> web.StreamResponse:
        """The skeleton of every stream: headers out, `body` written as it comes, and an end the client can
        read. An NDJSON stream also gets a heartbeat line whenever it was quiet for [server] heartbeat_seconds
        (a proxy's read timeout would cut it otherwise), and a last line saying why it ended: the source's
        end, a failure (after the headers nothing may reach the error middleware), or moorage's shutdown.
        A client that left is not written to."""
        response = stream_response(content_type)
        await response.prepare(request)
        try:
            async with ended_even_if_cancelled(response, ndjson_line(ndjson.shutdown) if ndjson else b""):
                failure = await _copied(response, with_heartbeats(body, self.heartbeat) if ndjson else body)
                if failure is not None and not isinstance(failure, ApiError):
                    engine = isinstance(failure, ENGINE_STREAM_ERRORS)
                    _LOGGER.warning(
                        "stream of %s ended by a failure: %s", cut(request.path), failure, exc_info=not engine
                    )
                await response.write_eof(await self._last_line(request, ndjson, failure) if ndjson else b"")
        except ConnectionResetError:
            pass  # the client left
        return response

    async def _last_line(self, request: web.Request, ndjson: Ndjson, failure: Exception | None) -> bytes:
        """The line saying why the stream ended; whatever making it raised, a line (shutdown, or `untold`) and
        the log: the headers are out, and a failure escaping now would cut the connection mid-body."""
        try:
            return ndjson_line(await ndjson.ending(failure))
        except Exception:
            _LOGGER.exception("stream of %s: why it ended could not be told", cut(request.path))
            return ndjson_line(ndjson.shutdown if self._ending_all else ndjson.untold)

    @contextlib.asynccontextmanager
    async def request(
        self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """An engine call whose body is read as it comes, and closed when the caller is done or cancelled;
        engine errors raise as aiodocker's do. The answer's head must come within [docker] timeout (a wedged
        engine is a TimeoutError), its body may take as long as it takes (a followed log is open for hours)."""
        try:
            async with (
                asyncio.timeout(self._timeout) as head,
                self._session.request(method, self._base + path, params=params, headers=headers) as response,
            ):
                if response.status >= 400:
                    body = await response.read()
                    message = body.decode("utf-8", "replace")
                    with contextlib.suppress(ValueError, AttributeError):
                        message = (await response.json(content_type=None))["message"]
                    raise DockerError(response.status, message)
                head.reschedule(None)
                yield response
        except aiohttp.ClientConnectionError as err:
            raise DockerError(DOCKER_UNREACHABLE, f"Cannot connect to Docker Engine via {self._url} [{err}]") from err
        except TimeoutError:
            if not head.expired():
                raise
            late = f"{method} {path}, {self._timeout:g} s"
            raise EngineLate(f"the Docker engine did not answer in time: {late}") from None

    async def end_all(self) -> None:
        """End every open stream (on shutdown): their handlers are cancelled and close their responses."""
        self._ending_all = True
        tasks = list(self._open.keys())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self._session.close()


async def batched(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The body as it comes, in reads of more than a trickle: the engine writes a log line at a time,
    and a read and a write for each line costs more CPU than the engine spends sending it. A read that
    brought less than _BATCH waits up to _LINGER for more, which nobody reading a log can see; the wait ends
    when the engine ends the body, so a short dump costs no more than the engine's own time."""
    while chunk := await content.readany():
        if len(chunk) < _BATCH:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_LINGER):
                    await content.wait_eof()
            chunk += content.read_nowait()
        yield chunk


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


def heartbeat() -> bytes:
    """The line a quiet NDJSON stream sends: the time, so that a reader can also tell how late it is."""
    return ndjson_line({"heartbeat": rfc3339(milliseconds=True)})


async def with_heartbeats(chunks: AsyncIterator[bytes], every: float) -> AsyncIterator[bytes]:
    """The chunks as they come, and a heartbeat line whenever none came for `every` seconds.

    The next chunk is awaited in a task of its own, so that the wait can time out without cancelling the
    source: a cancelled async generator is ended, not paused."""
    source = aiter(chunks)
    upcoming = asyncio.ensure_future(anext(source))
    try:
        while True:
            done, _ = await asyncio.wait((upcoming,), timeout=every)
            if not done:
                yield heartbeat()
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
