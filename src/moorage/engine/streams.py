"""Long-lived engine streams (logs, events, pulls): their own connection pool, caps, and an end at shutdown.

Streams get a pool of their own so that abandoned or endless ones cannot starve the one every other
call uses; beyond the caps (all streams, one key's, the room kept for admins) a new stream is a 429.
Each open stream's handler task is registered, so that shutdown can end them at once instead of waiting
out aiohttp's shutdown_timeout. What the client sees of a stream (its headers, heartbeats, its last line)
is web/responses.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping

import aiohttp
from aiodocker.exceptions import DockerError

from moorage.engine.client import engine_connector
from moorage.engine.errors import DOCKER_UNREACHABLE, EngineLate
from moorage.errors import TooManyRequests
from moorage.settings import BUNDLES, ApiKey, DockerSettings, Role

_LOGGER = logging.getLogger(__name__)
_READ_BUFFER = 1024 * 1024
_BATCH = 64 * 1024
_LINGER = 0.005  # seconds


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
        connector = engine_connector(docker.url, cap or 0)
        unix = docker.url.startswith("unix://")
        self._base = "http://docker" if unix else docker.url.replace("tcp://", "http://", 1).rstrip("/")
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
        # What holds each open stream (a handler's task, or a merged log's part): the key name it streams for.
        self._open: dict[object, str | None] = {}
        self._ending_all = False  # moorage is stopping
        self._per_key: Counter[str | None] = Counter()

    @property
    def ending_all(self) -> bool:
        """moorage is stopping: end_all has cancelled the open streams."""
        return self._ending_all

    @property
    def in_use(self) -> int:
        return len(self._open)

    @contextlib.contextmanager
    def slot(self, key: ApiKey | None, holder: object | None = None) -> Iterator[None]:
        """Count the calling task (or `holder`: one of the engine streams a merged log reads for that task) as an
        open stream of `key` for as long as it runs; 429 beyond a cap. A key's tokens stream as the key (the
        principal is the key)."""
        name = key.name if key else None
        self._refuse_beyond_caps(key, name)
        holder = holder if holder is not None else asyncio.current_task()
        assert holder is not None
        self._open[holder] = name
        self._per_key[name] += 1
        try:
            yield
        finally:
            del self._open[holder]
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
        if key is not None and key.granted >= BUNDLES[Role.ADMIN] and key.scope.unscoped:
            # An admin's: every permission over the whole host (an admin key narrowed by permissions or a scope,
            # or its narrowed token, is a script's).
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
        """End every open stream (on shutdown): their handlers are cancelled and close their responses (and with
        them the streams they hold for their parts)."""
        self._ending_all = True
        tasks = [holder for holder in self._open if isinstance(holder, asyncio.Task)]
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
