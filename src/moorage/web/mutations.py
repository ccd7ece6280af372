"""Calls that change something run to their end, whatever their client does.

aiohttp cancels the handler of a client that leaves (streams need that), which would cut a create between
create and start, or leave a container running while the audit says nothing was done. So a mutation runs as a
task of its own that the client's leaving does not cancel. At shutdown, mutations get [server]
shutdown_timeout to finish; the rest are then cancelled, and roll back, while the engine client and the audit
are still open (on_shutdown runs before any cleanup context closes them), so that what they did is undone or
audited rather than cut off by a closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from moorage.access.audit import READS
from moorage.background import given_grace
from moorage.web import responses
from moorage.web.requestctx import HANDLING

# What a cancelled mutation gets to roll back in, at shutdown.
_ROLLBACK_SECONDS = 5.0


class Mutations:
    """The mutations in flight, and whether new ones are still taken."""

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._running: set[asyncio.Task[web.StreamResponse]] = set()
        self.closing = False

    def start(self, request: web.Request, handler: Handler) -> asyncio.Task[web.StreamResponse]:
        task = asyncio.create_task(handler(request), name=f"{request.method} {request.path[:200]}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def finish(self, _app: web.Application) -> None:
        """on_shutdown: no new mutation; those in flight get the grace, then are cancelled and roll back."""
        self.closing = True
        await given_grace(self._running, self._grace, _ROLLBACK_SECONDS)


def run_to_end(mutations: Mutations) -> Middleware:
    """The middleware: beneath the audit and the request metrics, so that they record how a mutation ended."""

    @web.middleware
    async def shielded(request: web.Request, handler: Handler) -> web.StreamResponse:
        """A stream (a streamed pull) still ends when its client leaves; reads are cancelled as before."""
        if request.method in READS:
            return await handler(request)
        if mutations.closing:
            return responses.error(503, "moorage is shutting down: try again when it is back")
        task = mutations.start(request, handler)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                handling = HANDLING.get()
                if task.cancelled() or (handling is not None and handling.stream):
                    task.cancel()
                    with contextlib.suppress(BaseException):  # whatever the stream ended with, it was cancelled
                        await task
                    raise
                # Nobody reads this answer, but the audit and the metrics record it: what the engine did.
                current = asyncio.current_task()
                assert current is not None
                current.uncancel()

    return shielded
