"""Long-lived engine streams (logs, events, pulls): their own connection pool, a cap, and an end at shutdown.

Streams get a pool of their own so that abandoned or endless ones cannot starve the one every other
call uses; beyond the cap a new stream is a 429. Each open stream's handler task is registered, so
that shutdown can end them at once instead of waiting out aiohttp's shutdown_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping

import aiohttp
from aiodocker.exceptions import DockerError

from .config import DockerSettings
from .errors import DOCKER_UNREACHABLE, TooManyRequests
from .requestctx import mark_stream

_READ_BUFFER = 1024 * 1024
_BATCH = 64 * 1024
_LINGER = 0.005  # seconds


class EngineLate(TimeoutError):
    """The engine did not answer a call's head in time; the text names the call."""


class EngineStreams:
    def __init__(self, docker: DockerSettings, limit: int) -> None:
        if docker.url.startswith("unix://"):
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(docker.url.removeprefix("unix://"), limit=limit)
            self._base = "http://docker"
        else:
            connector = aiohttp.TCPConnector(limit=limit)
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
        self.limit = limit
        self._open: set[asyncio.Task[object]] = set()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Count the calling handler as an open stream for as long as it runs; 429 beyond the cap."""
        if len(self._open) >= self.limit:
            raise TooManyRequests(
                f"{self.limit} streams are open already; try again later", headers={"Retry-After": "5"}
            )
        task = asyncio.current_task()
        assert task is not None
        mark_stream()
        self._open.add(task)
        try:
            yield
        finally:
            self._open.discard(task)

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
        tasks = list(self._open)
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
