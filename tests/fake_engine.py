"""A fake Docker engine (an aiohttp app on a free port) for faults the real one cannot show on demand:
a pull that stalls until the test lets it go, and a pull stream that turns to garbage."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

API = "/v1.41"
IMAGE_ID = "sha256:" + "ab" * 32


@dataclass
class FakeEngine:
    """What the fake answers, and what it saw. `release` lets a stalled pull finish."""

    url: str = ""
    garbage: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    pulls_started: int = 0
    pulls_finished: int = 0
    pulls_cut: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self.version)
        app.router.add_post("/images/create", self.pull)  # moorage pulls through its unversioned stream pool
        app.router.add_get(API + "/images/{name:.+}/json", self.inspect)
        app.router.add_get(f"{API}/containers/json", self.containers)
        return app

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.41", "Version": "fake"})

    async def containers(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def inspect(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response(
            {"Id": IMAGE_ID, "RepoTags": [name], "RepoDigests": [], "Size": 1, "Created": "2026-01-01T00:00:00Z"}
        )

    async def pull(self, request: web.Request) -> web.StreamResponse:
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
