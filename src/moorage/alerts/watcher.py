"""The alert rules at work: the engine's container events followed (for the event rules, and to follow the logs of
the containers a log rule watches), and a tick a second that judges the thresholds, fires what has been pending
for its `for`, and resolves restart loops and log matches that have gone quiet.

Rules and webhooks are read from the live settings, so a SIGHUP reload changes them at once; the conditions of a
rule that is gone are resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from moorage.alerts.conditions import HOST, Conditions
from moorage.alerts.delivery import Deliverer
from moorage.alerts.events import ContainerEvent, EventRules
from moorage.alerts.logwatch import LogWatch
from moorage.alerts.thresholds import judge
from moorage.background import again_and_again, running
from moorage.engine.errors import ENGINE_STREAM_ERRORS
from moorage.engine.shapes import event_labels, listed_name
from moorage.engine.streams import EngineStreams
from moorage.metrics.containers import ContainerStats
from moorage.metrics.host import HostSampler
from moorage.settings import AlertRule, DockerSettings, LiveSettings, Webhook

_LOGGER = logging.getLogger(__name__)
_EVENTS = ("start", "kill", "die", "oom", "health_status", "destroy")
_TICK = 1.0
_RETRY = 1.0


class AlertWatcher:
    def __init__(
        self, docker: DockerSettings, live: LiveSettings, stats: ContainerStats, sampler: HostSampler,
        deliverer: Deliverer,
    ) -> None:  # fmt: skip
        self._engine = EngineStreams(docker)  # a pool of its own: alerts never wait behind callers' streams
        self._live = live
        self._stats = stats
        self._sampler = sampler
        self.deliverer = deliverer
        self.conditions = Conditions(deliverer.notify)
        self._events = EventRules(self.conditions)
        self._logs = LogWatch(self._engine, self.conditions, self.rules)
        self._configured = (live.current.alerts, live.current.webhooks)

    def rules(self) -> Sequence[AlertRule]:
        return self._live.current.alerts

    def webhooks(self) -> Sequence[Webhook]:
        return self._live.current.webhooks

    async def run(self) -> None:
        async with running(self._ticking(), "alert tick"):
            await again_and_again(self._follow, "alerts", ENGINE_STREAM_ERRORS, _RETRY)

    async def close(self) -> None:
        await self._logs.close()
        await self._engine.close()

    async def _ticking(self) -> None:
        while True:
            try:
                await self._tick(time.time())
            except Exception:  # one bad round must not stop the alerts
                _LOGGER.exception("alert tick failed")
            await asyncio.sleep(_TICK)

    async def sync(self) -> None:
        """Take a reload's rules and webhooks: at each tick, and before a test notification is queued."""
        settings = self._live.current
        if (settings.alerts, settings.webhooks) != self._configured:
            self._configured = (settings.alerts, settings.webhooks)
            self.deliverer.set_webhooks(settings.webhooks)
            await self.conditions.forget_rules(settings.alerts)
            with contextlib.suppress(*ENGINE_STREAM_ERRORS):  # the engine gone: the follower starts over when back
                # A log rule added, or watching other containers.
                await self._follow_running_logs(await self._listed(), time.time())

    async def _tick(self, now: float) -> None:
        await self.sync()
        rules = self._live.current.alerts
        await judge(rules, self._stats, self._sampler, self.conditions, now)
        await self.conditions.tick(now)
        await self._events.quiet_loops(rules, now)
        await self._logs.quiet(rules, now)

    async def _follow(self) -> None:
        params = {"filters": json.dumps({"type": ["container"], "event": list(_EVENTS)})}
        async with self._engine.request("GET", "/events", params) as events:
            listed = await self._listed()
            await self._reconcile({c["Id"] for c in listed})
            await self._follow_running_logs(listed, time.time())
            async for line in events.content:
                if line.strip():
                    await self._seen(json.loads(line))

    async def _listed(self) -> list[dict[str, Any]]:
        """Every container, running or not."""
        async with self._engine.request("GET", "/containers/json", {"all": "1"}) as response:
            found: list[dict[str, Any]] = await response.json(content_type=None)
        return found

    async def _reconcile(self, present: set[str]) -> None:
        """What happened while the engine was not followed: the conditions of containers removed meanwhile are
        resolved, and their state dropped."""
        for subject in {held.subject for held in self.conditions.active()} - present - {HOST}:
            await self.conditions.clear_subject(subject, "the container was removed")
        self._events.retain(present)
        await self._logs.retain(present)

    async def _follow_running_logs(self, listed: list[dict[str, Any]], since: float) -> None:
        for container in listed:
            if container.get("State") == "running":
                labels = container.get("Labels") or {}
                await self._started(container["Id"], listed_name(container), labels, since, fresh=False)

    async def _seen(self, raw: dict[str, Any]) -> None:
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        event = ContainerEvent(
            action=str(raw.get("Action", "")),
            id=actor.get("ID") or raw.get("id", ""),
            name=attributes.get("name", ""),
            labels=event_labels(attributes),
            attributes=attributes,
            at=int(raw.get("timeNano") or 0) / 1e9 or time.time(),
        )
        await self._events.seen(event, self.rules())
        if event.action == "start":
            await self._started(event.id, event.name, event.labels, event.at, fresh=True)
        elif event.action == "destroy":
            await self._logs.stopped(event.id)

    async def _started(
        self, container_id: str, name: str, labels: Mapping[str, str], since: float, *, fresh: bool
    ) -> None:
        """Follow the log of a container a log rule watches: of its new run when it has just started (`fresh`), or
        from `since` if it is not followed yet."""
        if not any(r.kind == "log" and r.scope.admits(labels, name) for r in self.rules()):
            await self._logs.stopped(container_id)  # no rule watches it (any more)
            return
        try:  # a TTY's log is not framed: the follow must know which it reads
            async with self._engine.request("GET", f"/containers/{container_id}/json", {}) as response:
                tty = bool(((await response.json(content_type=None)).get("Config") or {}).get("Tty"))
        except ENGINE_STREAM_ERRORS as err:
            _LOGGER.info("alert log of %s not followed: %s", name, err)
            return
        if fresh:
            await self._logs.stopped(container_id)  # a follow of its run before, if it is still ending
        self._logs.started(container_id, name, labels, tty, since)
