"""Image pulls shared between callers: one engine pull per image, however many clients ask for it.

Each caller subscribes to the shared pull and gets the engine's progress events from then on. A
caller that goes away only unsubscribes; the last one to go cancels the pull, so that no task
outlives its audience. The engine's stream is read to its end: a pull answers 200 and may still
fail inside the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiodocker.exceptions import DockerError, DockerStreamError

from moorage.background import cancel_and_wait
from moorage.engine.errors import EngineLate, pull_error
from moorage.engine.streams import EngineStreams
from moorage.errors import ApiError, BadGateway, EngineTimeout, EngineUnavailable
from moorage.images.references import with_default_tag

_LOGGER = logging.getLogger(__name__)
# The engine's words for "no such repository or tag" when it reports them inside the stream.


@dataclass(frozen=True)
class _End:
    """The last item of every subscriber's queue: the pull's outcome."""

    error: ApiError | None = None


@dataclass
class SharedPull:
    reference: str
    task: asyncio.Task[None] | None = None
    subscribers: set[asyncio.Queue[Mapping[str, Any] | _End]] = field(default_factory=set)
    # The latest event of each layer (or of each status without one): what a caller who joins late is
    # shown first, so that it sees where the pull stands at once instead of waiting for the next event.
    latest: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def publish(self, item: Mapping[str, Any] | _End) -> None:
        if not isinstance(item, _End):
            self.latest[str(item.get("id") or item.get("status"))] = item
        for queue in self.subscribers:
            queue.put_nowait(item)

    def join(self) -> asyncio.Queue[Mapping[str, Any] | _End]:
        queue: asyncio.Queue[Mapping[str, Any] | _End] = asyncio.Queue()
        for event in self.latest.values():
            queue.put_nowait(event)
        self.subscribers.add(queue)
        return queue


class PullHub:
    """The pulls in flight, by reference. Lives on the app; `close` cancels whatever is left.

    Pulls go through the streams' pool, whose responses are closed when a pull is cancelled
    (aiodocker 0.27's pull stream leaves its response open, and takes a cut stream for a finished pull).
    """

    def __init__(self, engine: EngineStreams) -> None:
        self._engine = engine
        self._active: dict[str, SharedPull] = {}
        self.engine_pulls = 0  # pulls actually sent to the engine, for tests and metrics

    @property
    def in_flight(self) -> int:
        return len(self._active)

    @contextlib.asynccontextmanager
    async def subscribe(self, reference: str, auth: str | None) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
        """The progress events of the pull of `reference`, started now or joined; raises ApiError on failure."""
        reference = with_default_tag(reference)
        shared = self._active.get(reference)
        if shared is None:
            shared = self._active[reference] = SharedPull(reference)
            shared.task = asyncio.create_task(self._run(shared, auth), name=f"pull {reference}")
            self.engine_pulls += 1
        queue = shared.join()
        try:
            yield _events(queue)
        finally:
            shared.subscribers.discard(queue)
            if not shared.subscribers and shared.task and not shared.task.done():
                # Unlisted before it is cancelled: a caller arriving meanwhile starts a pull of its own
                # instead of joining one that is ending.
                self._forget(shared)
                await cancel_and_wait(shared.task)

    async def pull(self, reference: str, auth: str | None) -> None:
        """Pull to the end, for callers that want the outcome and not the progress."""
        async with self.subscribe(reference, auth) as events:
            async for _ in events:
                pass

    async def _run(self, shared: SharedPull, auth: str | None) -> None:
        """Every way out publishes an end, so that no subscriber waits for ever."""
        outcome = _End()
        headers = {"X-Registry-Auth": auth} if auth else None
        try:
            async with self._engine.request("POST", "/images/create", {"fromImage": shared.reference}, headers) as resp:
                async for line in resp.content:
                    if line.strip():
                        shared.publish(progress(line))
        except DockerError as err:
            outcome = _End(pull_error(err, shared.reference))
        except asyncio.CancelledError:
            outcome = _End(EngineUnavailable(f"the pull of {shared.reference} was cancelled"))
            raise
        except TimeoutError as err:
            late = str(err) if isinstance(err, EngineLate) else EngineTimeout.default_message
            outcome = _End(EngineTimeout(f"{late} (the pull of {shared.reference})"))
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
                await cancel_and_wait(shared.task)
        await self._engine.close()


async def _events(queue: asyncio.Queue[Mapping[str, Any] | _End]) -> AsyncIterator[Mapping[str, Any]]:
    while True:
        item = await queue.get()
        if isinstance(item, _End):
            if item.error:
                raise item.error
            return
        yield item


def progress(line: bytes) -> Mapping[str, Any]:
    """One line of the engine's pull stream; an error reported inside it raises, as the engine answered 200."""
    event = json.loads(line)
    if not isinstance(event, dict):
        raise ValueError(f"not a JSON object: {line[:80]!r}")
    if "error" in event or "errorDetail" in event:
        detail = event.get("errorDetail")
        message = (detail.get("message") if isinstance(detail, dict) else None) or event.get("error")
        raise DockerStreamError(str(message or "the engine reported an error"), error_detail=detail)
    return event
