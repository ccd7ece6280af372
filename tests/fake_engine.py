"""A fake Docker engine (an aiohttp app on a free port) for faults the real one cannot show on demand:
a pull that stalls until the test lets it go, a pull stream that turns to garbage, calls that hang as
on a wedged engine, an event stream that stays quiet, a create that its client gave up on but that
the engine finishes all the same a moment later, and a prune slower than moorage's engine timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

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
    # Calls by name ("list", "reconcile", "inspect", "delete", "events", "pull", "create", "start") that hang
    # for ever, as on a wedged engine.
    stalled: set[str] = field(default_factory=set)
    hanging: Counter[str] = field(default_factory=Counter)  # hung calls still open, by name
    cut: Counter[str] = field(default_factory=Counter)  # hung calls whose client went away, by name
    quiet: float = 0.0  # seconds the event stream stays silent after its head, before its one event
    # Seconds after its client went away that a stalled create is made all the same, as a slow engine does; None:
    # a stalled create that is cut makes nothing.
    create_late: float | None = None
    made: dict[str, dict[str, Any]] = field(default_factory=dict)  # containers by id, as created
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # the create body of every container made
    # What happened to containers, in order: ("created", id) when made, ("deleted", id) when removed.
    history: list[tuple[str, str]] = field(default_factory=list)
    prune_seconds: float = 0.0  # how long a container prune takes before it answers
    _late: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self.version)
        app.router.add_post("/images/create", self.pull)  # moorage pulls through its unversioned stream pool
        app.router.add_get("/events", self.events)  # and reads events through it too
        app.router.add_get(API + "/images/{name:.+}/json", self.inspect)
        app.router.add_get(f"{API}/containers/json", self.containers)
        app.router.add_get(API + "/containers/{id}/json", self.inspect_container)
        app.router.add_delete(API + "/containers/{id}", self.delete_container)
        app.router.add_post(API + "/containers/create", self.create_container)
        app.router.add_post(API + "/containers/{id}/start", self.start_container)
        app.router.add_post(f"{API}/containers/prune", self.prune_containers)
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
        # The bind watch lists moorage's own containers whenever it (re)connects: not a caller's call. The bind
        # ledger's look for a create that timed out is "reconcile".
        filters = request.query.get("filters", "")
        if "moorage.create" in filters:
            await self.stall("reconcile")
        elif "moorage.policy" not in filters:
            await self.stall("list")
        wanted = json.loads(request.query.get("filters") or "{}").get("label", [])
        return web.json_response([_summary(c) for c in self.made.values() if _labelled(c, wanted)])

    async def inspect_container(self, request: web.Request) -> web.Response:
        await self.stall("inspect")
        if made := self.made.get(request.match_info["id"]):
            return web.json_response(made)
        return web.json_response({"Id": CONTAINER_ID, "Name": "/quiet"})

    async def delete_container(self, request: web.Request) -> web.Response:
        await self.stall("delete")
        if self.made.pop(request.match_info["id"], None) is not None:
            self.history.append(("deleted", request.match_info["id"]))
        return web.Response(status=204)

    async def create_container(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = request.query.get("name") or f"fake-{len(self.history)}"
        try:
            await self.stall("create")
        except asyncio.CancelledError:
            if self.create_late is not None:
                late = asyncio.get_running_loop().create_task(self._make_late(body, name))
                self._late.add(late)
                late.add_done_callback(self._late.discard)
            raise
        return web.json_response({"Id": self._make(body, name), "Warnings": []}, status=201)

    async def _make_late(self, body: dict[str, Any], name: str) -> None:
        assert self.create_late is not None
        await asyncio.sleep(self.create_late)
        self._make(body, name)

    def _make(self, body: dict[str, Any], name: str) -> str:
        container_id = uuid.uuid4().hex * 2
        self.made[container_id] = _inspected(container_id, name, body)
        self.bodies[container_id] = body
        self.history.append(("created", container_id))
        return container_id

    async def start_container(self, request: web.Request) -> web.Response:
        await self.stall("start")
        return web.Response(status=204)

    async def prune_containers(self, request: web.Request) -> web.Response:
        """Every container made goes (the fake's are never running), after `prune_seconds`."""
        await asyncio.sleep(self.prune_seconds)
        gone = list(self.made)
        for container_id in gone:
            del self.made[container_id]
            self.history.append(("deleted", container_id))
        return web.json_response({"ContainersDeleted": gone, "SpaceReclaimed": 0})

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


def _labelled(container: dict[str, Any], wanted: list[str]) -> bool:
    """Whether the container has every label of a `label` filter ("key" or "key=value")."""
    labels = container["Config"]["Labels"]
    return all(
        key in labels and (not has_value or labels[key] == value)
        for key, has_value, value in (item.partition("=") for item in wanted)
    )


def _inspected(container_id: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """An inspect document of a created container, with what moorage's detail reads."""
    host = body.get("HostConfig") or {}
    mounts = [
        {"Type": m["Type"], "Source": m["Source"], "Destination": m["Target"], "RW": not m.get("ReadOnly")}
        for m in host.get("Mounts") or ()
    ]
    state = {
        "Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
        "Dead": False, "Pid": 0, "ExitCode": 0, "StartedAt": "0001-01-01T00:00:00Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
    }  # fmt: skip
    config = {"Image": body["Image"], "Labels": body.get("Labels") or {}, "Hostname": "fake", "Tty": False}
    return {
        "Id": container_id, "Name": f"/{name}", "Image": IMAGE_ID, "Created": "2026-01-01T00:00:00Z",
        "Config": config, "HostConfig": {**host, "NetworkMode": host.get("NetworkMode") or "bridge"},
        "NetworkSettings": {"Ports": {}}, "Mounts": mounts, "RestartCount": 0, "State": state,
    }  # fmt: skip


def _summary(inspected: dict[str, Any]) -> dict[str, Any]:
    """A `GET /containers/json` item of an inspected container."""
    return {
        "Id": inspected["Id"], "Names": [inspected["Name"]], "Image": inspected["Config"]["Image"],
        "Labels": inspected["Config"]["Labels"], "State": inspected["State"]["Status"], "Mounts": inspected["Mounts"],
        "Created": 1767225600,
    }  # fmt: skip


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
        for late in list(engine._late):
            late.cancel()
        await server.close()
