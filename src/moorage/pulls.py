"""Image pulls shared between callers: one engine pull per image, however many clients ask for it.

Each caller subscribes to the shared pull and gets the engine's progress events from then on. A
caller that goes away only unsubscribes; the last one to go cancels the pull, so that no task
outlives its audience. The engine's stream is read to its end: a pull answers 200 and may still
fail inside the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from .errors import DOCKER_UNREACHABLE, ApiError, BadGateway, EngineUnavailable, NotFound
from .schemas.references import with_default_tag

_LOGGER = logging.getLogger(__name__)
# The engine's words for "no such repository or tag" when it reports them inside the stream.
_NOT_FOUND = ("not found", "manifest unknown", "does not exist")


@dataclass(frozen=True)
class _End:
    """The last item of every subscriber's queue: the pull's outcome."""

    error: ApiError | None = None


@dataclass
class SharedPull:
    reference: str
    task: asyncio.Task[None] | None = None
    subscribers: set[asyncio.Queue[Mapping[str, Any] | _End]] = field(default_factory=set)

    def publish(self, item: Mapping[str, Any] | _End) -> None:
        for queue in self.subscribers:
            queue.put_nowait(item)


class PullHub:
    """The pulls in flight, by reference. Lives on the app; `close` cancels whatever is left."""

    def __init__(self) -> None:
        self._active: dict[str, SharedPull] = {}
        self.engine_pulls = 0  # pulls actually sent to the engine, for tests and metrics

    @contextlib.asynccontextmanager
    async def subscribe(
        self, docker: aiodocker.Docker, reference: str, auth: Mapping[str, str] | None
    ) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
        """The progress events of the pull of `reference`, started now or joined; raises ApiError on failure."""
        reference = with_default_tag(reference)
        shared = self._active.get(reference)
        if shared is None:
            shared = self._active[reference] = SharedPull(reference)
            shared.task = asyncio.create_task(self._run(shared, docker, auth), name=f"pull {reference}")
            self.engine_pulls += 1
        queue: asyncio.Queue[Mapping[str, Any] | _End] = asyncio.Queue()
        shared.subscribers.add(queue)
        try:
            yield _events(queue)
        finally:
            shared.subscribers.discard(queue)
            if not shared.subscribers and shared.task and not shared.task.done():
                # Unlisted before it is cancelled: a caller arriving meanwhile starts a pull of its own
                # instead of joining one that is ending.
                self._forget(shared)
                shared.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shared.task

    async def pull(self, docker: aiodocker.Docker, reference: str, auth: Mapping[str, str] | None) -> None:
        """Pull to the end, for callers that want the outcome and not the progress."""
        async with self.subscribe(docker, reference, auth) as events:
            async for _ in events:
                pass

    async def _run(self, shared: SharedPull, docker: aiodocker.Docker, auth: Mapping[str, str] | None) -> None:
        """Every way out publishes an end, so that no subscriber waits for ever."""
        outcome = _End()
        try:
            async for event in docker.images.pull(shared.reference, auth=dict(auth) if auth else None, stream=True):
                shared.publish(event)
        except DockerError as err:
            outcome = _End(pull_error(err, shared.reference))
        except asyncio.CancelledError:
            outcome = _End(EngineUnavailable(f"the pull of {shared.reference} was cancelled"))
            raise
        except Exception as err:  # a garbled stream, say: a failure of the engine's, not a hang of ours
            _LOGGER.exception("pull of %s failed", shared.reference)
            outcome = _End(BadGateway(f"the engine's pull stream for {shared.reference} broke: {err}"))
        finally:
            # Forget it first: a caller arriving after the end starts a new pull, not a finished one.
            self._forget(shared)
            shared.publish(outcome)

    def _forget(self, shared: SharedPull) -> None:
        if self._active.get(shared.reference) is shared:
            del self._active[shared.reference]

    async def close(self) -> None:
        for shared in list(self._active.values()):
            if shared.task:
                shared.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shared.task


async def _events(queue: asyncio.Queue[Mapping[str, Any] | _End]) -> AsyncIterator[Mapping[str, Any]]:
    while True:
        item = await queue.get()
        if isinstance(item, _End):
            if item.error:
                raise item.error
            return
        yield item


def pull_error(err: DockerError, reference: str) -> ApiError:
    """What a failed pull tells the caller: a missing repository or tag is 404, a registry failure 502."""
    message = str(err.message).strip()
    if err.status == DOCKER_UNREACHABLE:
        return EngineUnavailable(message)
    if err.status == 404 or any(words in message.lower() for words in _NOT_FOUND):
        return NotFound(f"{reference}: {message}", errors=[{"field": "name", "message": "no such repository or tag"}])
    _LOGGER.warning("pull of %s failed at the registry: %s", reference, message)
    return BadGateway(f"the registry failed the pull of {reference}: {message}")
