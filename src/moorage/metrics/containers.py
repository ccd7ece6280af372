"""Container metrics kept current in the background, so that a request costs no engine stats call.

The engine's stats call waits for a second reading (about a second per container). Instead, each
running container has an open stats stream (one reading a second, each with the one before, so CPU is
computed as `docker stats` does), and the engine's start/die events open and close those streams: a
new container has readings within a second or two, and no list is polled. When the engine goes away,
the watcher retries until it is back and starts over from the list of running containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping

from aiodocker.exceptions import DockerError

from moorage.background import again_and_again, cancel_and_wait
from moorage.engine.errors import ENGINE_STREAM_ERRORS
from moorage.engine.shapes import event_labels, listed_name
from moorage.engine.streams import EngineStreams
from moorage.metrics.readings import Reading, reading
from moorage.metrics.recorder import HistoryRecorder
from moorage.metrics.specs import Cgroups, ContainerSpec, container_spec
from moorage.selectors import UNSCOPED, Scope
from moorage.settings import DockerSettings

_LOGGER = logging.getLogger(__name__)
_RETRY = 1.0  # seconds between attempts to reach a missing engine
_STARTS = ("start", "unpause")
_ENDS = ("die", "destroy")
_CHANGES = ("update", "rename")  # a new limit or name: the spec is read again


class ContainerStats:
    """The latest reading of each running container, and its spec. `connected` says whether the engine is followed
    now."""

    def __init__(self, docker: DockerSettings, recorder: HistoryRecorder | None = None) -> None:
        # A pool of its own, without the cap of the request streams: a stream per running container
        # must neither count against callers' streams nor wait behind them.
        self._engine = EngineStreams(docker)
        self.connected = False
        self._cgroups = Cgroups()
        self._latest: dict[str, Reading] = {}
        self._labels: dict[str, Mapping[str, str]] = {}  # of each watched container, for scoped callers
        self._specs: dict[str, ContainerSpec] = {}
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._arrived = asyncio.Event()  # set (and cleared) at each reading, for first_reading's waiters
        self._recorder = recorder

    def find(self, ref: str) -> Reading | None:
        """The reading of a running container by full id or exact name; anything else (a short id, which a
        stopped container's name could shadow) is for the engine to resolve."""
        return self._latest.get(ref) or next((r for r in self._latest.values() if r["name"] == ref), None)

    async def first_reading(self, container_id: str, seconds: float) -> Reading | None:
        """A container that has just started has its first reading within about a second: wait for it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while container_id not in self._latest:
                    await self._arrived.wait()
        return self._latest.get(container_id)

    def running(self, scope: Scope = UNSCOPED) -> list[Reading]:
        """The readings of the running containers `scope` admits."""
        if scope.unscoped:
            return list(self._latest.values())
        return [r for r in self._latest.values() if scope.admits(self._labels.get(r["id"]), r["name"])]

    def watched(self, container_id: str) -> bool:
        """Whether the container runs, as far as the engine's events tell: it may be between two readings."""
        return container_id in self._streams

    def specified(self, scope: Scope = UNSCOPED) -> list[tuple[Reading, ContainerSpec]]:
        """The readings of the running containers `scope` admits whose spec is known, each with its spec."""
        return [(r, spec) for r in self.running(scope) if (spec := self._specs.get(r["id"])) is not None]

    async def run(self) -> None:
        """Follow the engine for as long as the app runs, starting over whenever the engine comes back."""
        await again_and_again(self._follow, "container stats", ENGINE_STREAM_ERRORS, _RETRY, self._lost)

    def _lost(self) -> None:
        self.connected = False
        self._stop_all()

    async def _follow(self) -> None:
        params = {"filters": json.dumps({"type": ["container"], "event": [*_STARTS, *_ENDS, *_CHANGES]})}
        async with self._engine.request("GET", "/events", params) as events:
            # Events first, then the list: a container started in between is seen at least once.
            async with self._engine.request("GET", "/info", {}) as info:
                self._cgroups = Cgroups((await info.json(content_type=None)).get("CgroupDriver") or "cgroupfs")
            async with self._engine.request("GET", "/containers/json", {"all": "1"}) as response:
                listed = await response.json(content_type=None)
            if self._recorder is not None:
                self._recorder.present(c["Id"] for c in listed)
            for container in listed:
                if container.get("State") == "running":
                    self._watch(container["Id"], listed_name(container), container.get("Labels") or {})
            self.connected = True
            async for line in events.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                container_id = (event.get("Actor") or {}).get("ID") or event.get("id")
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                action = event.get("Action")
                if action in _STARTS:
                    self._watch(container_id, attributes.get("name", ""), event_labels(attributes))
                elif action in _ENDS:
                    self._forget(container_id)
                    if self._recorder is not None:
                        self._recorder.ended(container_id, removed=action == "destroy")
                elif container_id in self._specs:
                    await self._respecify(container_id)

    async def _respecify(self, container_id: str) -> ContainerSpec | None:
        """Read the container's spec (limits, name, image) again; none if the engine cannot tell now (one gone
        meanwhile is for its die event)."""
        try:
            async with self._engine.request("GET", f"/containers/{container_id}/json", {}) as response:
                inspected = await response.json(content_type=None)
        except ENGINE_STREAM_ERRORS as err:
            _LOGGER.info("spec of %s: %s", container_id[:12], err)
            return None
        spec = self._specs[container_id] = container_spec(inspected, self._cgroups)
        self._labels[container_id] = spec.labels
        return spec

    def _watch(self, container_id: str, name: str, labels: Mapping[str, str]) -> None:
        self._labels[container_id] = labels
        if container_id not in self._streams:
            self._streams[container_id] = asyncio.create_task(self._stream(container_id, name), name=f"stats {name}")

    def _forget(self, container_id: str) -> None:
        task = self._streams.pop(container_id, None)
        if task:
            task.cancel()
        self._latest.pop(container_id, None)
        self._labels.pop(container_id, None)
        self._specs.pop(container_id, None)

    def _stop_all(self) -> None:
        for container_id in list(self._streams):
            self._forget(container_id)

    async def _stream(self, container_id: str, name: str) -> None:
        """Read the container's stats (and its spec) until its die event cancels this; a stream that breaks is
        reopened."""
        try:
            while True:
                try:
                    params = {"stream": "true"}
                    async with self._engine.request("GET", f"/containers/{container_id}/stats", params) as resp:
                        async for line in resp.content:
                            if line.strip():
                                # Read at its first reading, and again at each while the engine could not tell.
                                spec = self._specs.get(container_id) or await self._respecify(container_id)
                                latest = self._latest[container_id] = reading(
                                    container_id, json.loads(line), spec.name if spec else name
                                )
                                if self._recorder is not None:
                                    self._recorder.record(container_id, latest)
                                self._arrived.set()
                                self._arrived.clear()
                except (DockerError, OSError, ValueError) as err:
                    _LOGGER.info("stats of %s broke: %s", name, err)
                except Exception:  # a record of a shape never seen: logged, and read again
                    _LOGGER.exception("stats of %s failed", name)
                # No reading rather than an old one, until the stream is back (or the die event comes).
                self._latest.pop(container_id, None)
                await asyncio.sleep(_RETRY)
        finally:
            if self._streams.get(container_id) is asyncio.current_task():
                self._streams.pop(container_id, None)
                self._latest.pop(container_id, None)

    async def close(self) -> None:
        tasks = list(self._streams.values())
        self._stop_all()
        for task in tasks:
            await cancel_and_wait(task)
        await self._engine.close()
