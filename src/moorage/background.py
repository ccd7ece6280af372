"""Background tasks tied to a context: started on entry, cancelled and awaited on exit (aiohttp's
background-task pattern), so that no task outlives the app that started it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        await cancel_and_wait(task)


class Watcher(Protocol):
    """A follower of the engine that runs for the app's life and holds resources to release after."""

    def run(self) -> Coroutine[Any, Any, None]: ...

    async def close(self) -> None: ...


@contextlib.asynccontextmanager
async def watching(watcher: Watcher, name: str) -> AsyncIterator[None]:
    """`watcher.run()` in the background while the context lasts; then it is cancelled, and closed."""
    try:
        async with running(watcher.run(), name):
            yield
    finally:
        await watcher.close()


async def again_and_again(
    session: Callable[[], Awaitable[None]],
    name: str,
    expected: tuple[type[Exception], ...],
    pause: float,
    after: Callable[[], None] = lambda: None,
) -> None:
    """`session()` for as long as the task runs, begun again `pause` seconds after each end (`after` first): a
    follower of the engine starts over whenever the engine comes back. An expected failure (the engine went away)
    is a warning; any other is logged with its traceback, and does not stop the follower either."""
    while True:
        try:
            try:
                await session()
            finally:
                after()
        except expected as err:
            _LOGGER.warning("%s: engine unavailable (%s); retrying", name, err)
        except Exception:
            _LOGGER.exception("%s failed; retrying", name)
        await asyncio.sleep(pause)


async def to_the_end(step: Awaitable[_T]) -> _T:
    """Await `step` to its end even if the caller is cancelled meanwhile (a shutdown), then pass the cancellation
    on, also when the step failed: a rollback or a reconcile stopped half-way would leave what it was there to
    remove."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})  # unlike awaiting the task, a cancelled wait leaves the task running
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError from (None if task.cancelled() else task.exception())
    return task.result()


async def given_grace(tasks: set[asyncio.Task[Any]], grace: float, rollback: float | None = None) -> None:
    """At shutdown: the tasks get `grace` seconds to end, then are cancelled and get `rollback` seconds (None: as
    long as they take) to undo what they did."""
    if not tasks:
        return
    _, late = await asyncio.wait(set(tasks), timeout=grace)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=rollback)
