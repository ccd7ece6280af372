"""A fake Docker engine (an aiohttp app on a free port) for faults the real one cannot show on demand:
a pull that stalls until the test lets it go, a pull stream that turns to garbage, calls that hang as
on a wedged engine, and an event stream that stays quiet."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

API = "/v1.41"
IMAGE_ID = "sha256:" + "ab" * 32
CONTAINER_ID = "cd" * 32
EVENT = {
    "Type": "container",
    "Action": "start",
    "Actor": {"ID": CONTAINER_ID, "Attributes": {"name": "quiet"}},
    "time": 1767225600,
}


@dataclass
class FakeEngine:
    """What the fake answers, and what it saw. `release` lets a stalled pull finish."""

    url: str = ""
    garbage: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    pulls_started: int = 0
    pulls_finished: int = 0
    pulls_cut: int = 0
    # Calls by name ("list", "inspect", "delete", "events", "pull") that hang for ever, as on a wedged engine.
    stalled: set[str] = field(default_factory=set)
    hanging: Counter[str] = field(default_factory=Counter)  # hung calls still open, by name
    cut: Counter[str] = field(default_factory=Counter)  # hung calls whose client went away, by name
    quiet: float = 0.0  # seconds the event stream stays silent after its head, before its one event

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self.version)
        app.router.add_post("/images/create", self.pull)  # moorage pulls through its unversioned stream pool
        app.router.add_get("/events", self.events)  # and reads events through it too
        app.router.add_get(API + "/images/{name:.+}/json", self.inspect)
        app.router.add_get(f"{API}/containers/json", self.containers)
        app.router.add_get(API + "/containers/{id}/json", self.inspect_container)
        app.router.add_delete(API + "/containers/{id}", self.delete_container)
        return app

    async def stall(self, name: str) -> None:
        """Hang for ever if `name` is stalled; the hang ends only when the caller goes away."""
        if name not in self.stalled:
            return
        self.hanging[name] += 1
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.cut[name] += 1
            raise
        finally:
            self.hanging[name] -= 1

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.41", "Version": "fake"})

    async def containers(self, request: web.Request) -> web.Response:
        # The bind watch lists moorage's own containers whenever it (re)connects: not a caller's call.
        if "moorage.policy" not in request.query.get("filters", ""):
            await self.stall("list")
        return web.json_response([])

    async def inspect_container(self, request: web.Request) -> web.Response:
        await self.stall("inspect")
        return web.json_response({"Id": CONTAINER_ID, "Name": "/quiet"})

    async def delete_container(self, request: web.Request) -> web.Response:
        await self.stall("delete")
        return web.Response(status=204)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """The head at once, then `quiet` seconds of nothing, then one event and the end."""
        await self.stall("events")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.force_close()
        await response.prepare(request)
        await asyncio.sleep(self.quiet)
        await response.write(json.dumps(EVENT).encode() + b"\n")
        await response.write_eof()
        return response

    async def inspect(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response(
            {"Id": IMAGE_ID, "RepoTags": [name], "RepoDigests": [], "Size": 1, "Created": "2026-01-01T00:00:00Z"}
        )

    async def pull(self, request: web.Request) -> web.StreamResponse:
        await self.stall("pull")
        self.pulls_started += 1
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        # As the real engine does for moorage's HTTP/1.0 stream requests: the body ends when the connection does.
        response.force_close()
        await response.prepare(request)
        try:
            await response.write(json.dumps({"status": "Pulling fs layer", "id": "layer1"}).encode() + b"\n")
            if self.garbage:
                await response.write(b"this is not json at all\n")
            else:
                await self.release.wait()
                await response.write(json.dumps({"status": "Pull complete", "id": "layer1"}).encode() + b"\n")
            await response.write_eof()
        except asyncio.CancelledError:
            self.pulls_cut += 1
            raise
        self.pulls_finished += 1
        return response


@contextlib.asynccontextmanager
async def serving(engine: FakeEngine) -> AsyncIterator[FakeEngine]:
    """The fake on a free port with its URL set; on the way out a stalled pull is let go and the server stops."""
    server = TestServer(engine.app(), port=0, handler_cancellation=True)
    await server.start_server()
    engine.url = f"tcp://127.0.0.1:{server.port}"
    try:
        yield engine
    finally:
        engine.release.set()
        await server.close()
