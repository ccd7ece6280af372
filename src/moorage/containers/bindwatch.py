"""Binds checked again whenever the engine starts a container moorage created, by itself included.

moorage re-checks binds before its own start and restart (binds.recheck), but the engine also starts
containers on its own: a restart policy, or dockerd coming back. Each time, it resolves bind sources
again, so a source swapped for a symlink since the create mounts the symlink's target. This watcher
follows the engine's start events of containers that carry POLICY_LABEL as moorage's own (see
moorage.ownership: a container made outside moorage from an image with that label is not followed), checks
their binds at once as the policy checked them at create, and kills one whose bind no longer passes; then
its restart policy is set to "no", so that neither the restart policy nor a dockerd restart brings it back. Each stop
is logged, audited, counted (moorage_policy_stops_total) and kept in state_dir/policy-stops.json, which
the container's detail shows as `policy_stop`.

What remains is a window: the engine mounts the binds and starts the process before it sends the
event, so the container runs with the swapped mount until the kill (tens of milliseconds when moorage
is up; while moorage is down or away from the engine, until it is back and has listed what runs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError
from prometheus_client import CollectorRegistry, Counter

from moorage.access.audit import AuditLog
from moorage.background import again_and_again, to_the_end
from moorage.containers.ownership import POLICY_LABEL, is_moorages, policy_mark
from moorage.containers.policy import bind_problem
from moorage.engine.errors import ENGINE_STREAM_ERRORS
from moorage.engine.shapes import inspected_name, restart_policy
from moorage.engine.streams import EngineStreams
from moorage.settings import DockerSettings, LiveSettings
from moorage.timestamps import rfc3339

_LOGGER = logging.getLogger(__name__)
_RETRY = 1.0  # seconds between attempts to reach a missing engine
# The audit line's key: no configured key can be named so (key names have no ":").
AUDIT_KEY = "moorage:bindwatch"
StopRecord = dict[str, str]


class PolicyStops:
    """Why moorage killed a container, by container id, kept in a JSON file so that it outlives a restart
    of the daemon: written whole to a temporary file and renamed over the old one, never half-written.
    Written in a thread (a write and an fsync must not hold up the event loop), one write at a time, each
    of the whole record as it stands when the write begins: the last change is always the last written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stops: dict[str, StopRecord] = {}
        self._writing = asyncio.Lock()

    def load(self) -> None:
        try:
            loaded = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            _LOGGER.warning("policy stops: %s cannot be read (%s); starting without it", self.path, err)
            return
        if isinstance(loaded, dict):
            self._stops = {str(k): v for k, v in loaded.items() if isinstance(v, dict)}

    def get(self, container_id: str) -> StopRecord | None:
        return self._stops.get(container_id)

    async def record(self, container_id: str, stop: StopRecord) -> None:
        self._stops[container_id] = stop
        await self._save()

    async def forget(self, container_id: str) -> None:
        if self._stops.pop(container_id, None) is not None:
            await self._save()

    async def keep_only(self, container_ids: set[str]) -> None:
        """Forget the containers removed while moorage was not following the engine."""
        if gone := self._stops.keys() - container_ids:
            for container_id in gone:
                del self._stops[container_id]
            await self._save()

    async def _save(self) -> None:
        async with self._writing:
            # The text is taken on the loop, where the record changes; a later change waits for its own write.
            # To its end even if cancelled (shutdown): the next write must not begin while this one's file is open.
            await to_the_end(asyncio.to_thread(self._write, json.dumps(self._stops)))

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)


def bind_problems(inspected: Mapping[str, Any], live: LiveSettings) -> list[str]:
    """Each bind of an inspected container that no longer passes the policy in force, with why."""
    policy = live.current.policy
    return [
        f"bind {mount['Source']} {problem}"
        for mount in inspected.get("Mounts") or ()
        if mount.get("Type") == "bind" and (problem := bind_problem(mount["Source"], policy))
    ]


class BindWatch:
    """Follows the engine's start events of moorage's containers for as long as the app runs."""

    def __init__(
        self,
        settings: DockerSettings,
        docker: aiodocker.Docker,
        live: LiveSettings,
        audit: AuditLog,
        stops: PolicyStops,
        registry: CollectorRegistry,
    ) -> None:
        # A pool of its own: the event stream must never wait behind, or count against, callers' streams.
        self._engine = EngineStreams(settings)
        self._docker = docker
        self._live = live
        self._audit = audit
        self._stops = stops
        self._registry = registry
        self._mark = ""  # this daemon's (moorage.ownership), read when the watch starts following
        self._stopped = Counter(
            "moorage_policy_stops", "Containers killed because a bind no longer passed the policy", registry=registry
        )

    async def run(self) -> None:
        """Follow the engine, starting over (events, then the running list) whenever it comes back."""
        await again_and_again(self._follow, "bind watch", (*ENGINE_STREAM_ERRORS, OSError), _RETRY)

    async def _follow(self) -> None:
        # Unpause too: a container paused before moorage saw it run is checked when it runs again.
        self._mark = await asyncio.to_thread(policy_mark, self._live.current.server.state_dir)
        # By the label's name: the engine ANDs label filters, and moorage's containers of before the mark carry
        # another value (verify tells moorage's own apart).
        filters = {"type": ["container"], "event": ["start", "unpause", "destroy"], "label": [POLICY_LABEL]}
        async with self._engine.request("GET", "/events", {"filters": json.dumps(filters)}) as events:
            # Events first, then the list: a container started in between is checked at least once.
            listed = await self._docker.containers.list(all=True, filters=json.dumps({"label": [POLICY_LABEL]}))
            await self._stops.keep_only({c.id for c in listed})
            for container in listed:
                if container["State"] == "running":
                    await self.verify(container.id, None)
            async for line in events.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                container_id = (event.get("Actor") or {}).get("ID") or event.get("id")
                if event.get("Action") in ("start", "unpause"):
                    await self.verify(container_id, event.get("timeNano"))
                else:
                    await self._stops.forget(container_id)

    async def verify(self, container_id: str, started_ns: int | None) -> None:
        """Kill a running container of moorage's whose binds no longer pass; a clean start clears its record."""
        container = self._docker.containers.container(container_id)
        try:
            inspected = await container.show()
        except DockerError as err:
            if err.status == 404:
                return  # removed since it started
            raise
        if not inspected["State"]["Running"] or inspected["State"]["Paused"]:
            return  # exited or paused already; its next start or unpause is checked then
        if not await is_moorages(self._docker, inspected, self._mark):
            return  # the label came from its image: made outside moorage, not moorage's to judge
        if problems := bind_problems(inspected, self._live):
            await self._stop(container_id, inspected, "; ".join(problems), started_ns)
        else:
            _LOGGER.debug("binds of container %s pass", container_id[:12])
            await self._stops.forget(container_id)

    async def _stop(self, container_id: str, inspected: Mapping[str, Any], reason: str, started_ns: int | None) -> None:
        name = inspected_name(inspected)
        was = restart_policy(inspected["HostConfig"].get("RestartPolicy"))
        container = self._docker.containers.container(container_id)
        signalled = time.time_ns()
        try:
            await container.kill(signal="SIGKILL")
        except DockerError as err:
            if err.status == 404:
                return  # removed meanwhile
            # A 409 is a container that is not running (done) or was paused meanwhile (not done). Anything
            # else, or a pause: run() logs it and starts over, which checks this container again.
            if err.status != 409 or (await container.show())["State"]["Running"]:
                raise
        # Then "no", so that nothing brings it back: a killed container with restart policy always is started
        # again at dockerd's restart (and at once by engines that do not count an API kill as a manual stop;
        # that start is checked and killed again). After the kill, not before: each call is time it runs.
        try:
            await self._docker._query_json(
                f"containers/{container_id}/update", method="POST", data={"RestartPolicy": {"Name": "no"}}
            )
        except DockerError as err:
            if err.status != 404:  # 404: removed since the kill (auto-remove), nothing left to bring back
                _LOGGER.error("container %s: restart policy not set to no (%s): the engine may start it again, "
                              "and that start is checked too", container_id[:12], err)  # fmt: skip
        after = (
            f"(the kill sent {(signalled - started_ns) / 1e6:.0f} ms after the engine's event)"
            if started_ns
            else "(found running when moorage (re)connected to the engine)"
        )
        _LOGGER.warning("killed container %s (%s) %s: %s", name, container_id[:12], after, reason)
        self._stopped.inc()
        self._audit.write(
            key=AUDIT_KEY, role=None, client=None, method="KILL", path=f"/containers/{container_id}",
            target=container_id, action="policy_stop", result=200, reason=reason,
        )  # fmt: skip
        await self._stops.record(container_id, {"at": rfc3339(), "reason": reason, "restart_policy": was})

    async def close(self) -> None:
        self._registry.unregister(self._stopped)
        await self._engine.close()
