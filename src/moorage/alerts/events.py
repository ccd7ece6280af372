"""Rules on the engine's container events: a non-zero exit, an OOM kill, an unhealthy check, a restart loop.

Each fires once per container and is resolved by what ends it: a start after a death or an OOM kill, a healthy
check, a loop quiet for its `within`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moorage.alerts.conditions import Conditions
from moorage.settings import AlertRule

RUNNING_AGAIN = "{name} is running again"
# A death this long after a signal was sent to the container is the signal's (a stop waits 10 s by default before
# it kills): not a crash.
_STOPPED_WITHIN = 120.0


@dataclass(frozen=True)
class ContainerEvent:
    action: str  # start, die, oom, health_status: healthy, destroy, ...
    id: str
    name: str
    labels: Mapping[str, str]
    attributes: Mapping[str, str]
    at: float

    @property
    def tag(self) -> dict[str, Any]:
        return {"container": {"id": self.id, "name": self.name}}


class EventRules:
    def __init__(self, conditions: Conditions) -> None:
        self._conditions = conditions
        self._restarts: dict[str, deque[float]] = {}  # each container's recent restarts (starts after a death)
        self._died: set[str] = set()
        self._killed: dict[str, float] = {}  # when each container was last sent a signal (a stop, a kill)

    def retain(self, present: set[str]) -> None:
        """Forget the containers removed while the engine was not followed."""
        for container_id in (set(self._restarts) | set(self._killed) | self._died) - present:
            self._drop(container_id)

    def _drop(self, container_id: str) -> None:
        self._restarts.pop(container_id, None)
        self._killed.pop(container_id, None)
        self._died.discard(container_id)

    async def seen(self, event: ContainerEvent, rules: Sequence[AlertRule]) -> None:
        """Judge one event against the rules that watch its container."""
        mine = [rule for rule in rules if rule.kind == "event" and rule.scope.admits(event.labels, event.name)]
        if event.action == "kill":
            self._killed[event.id] = event.at
        elif event.action == "die":
            self._died.add(event.id)
        elif event.action == "start" and event.id in self._died:
            self._restarts.setdefault(event.id, deque(maxlen=1000)).append(event.at)
        for rule in mine:
            await self._judge(rule, event)
        if event.action == "destroy":
            self._drop(event.id)
            await self._conditions.clear_subject(event.id, f"{event.name} was removed")

    def _asked_to_stop(self, event: ContainerEvent) -> bool:
        """A death that a stop or a kill asked for (`docker stop`, a recreate, a policy stop): not a crash."""
        killed = self._killed.get(event.id)
        return killed is not None and event.at - killed < _STOPPED_WITHIN

    async def _judge(self, rule: AlertRule, event: ContainerEvent) -> None:
        hold, clear = self._conditions.hold, self._conditions.clear
        details = {**event.tag, "event": event.action}
        match rule.event, event.action:
            case "die", "die" if (code := event.attributes.get("exitCode", "0")) != "0" and not self._asked_to_stop(
                event
            ):
                summary = f"{event.name} exited with code {code}"
                await hold(rule, event.id, summary, {**details, "exit_code": int(code)}, event.labels, event.at)
            case "oom", "oom":
                summary = f"{event.name} was killed for want of memory (OOM)"
                await hold(rule, event.id, summary, details, event.labels, event.at)
            case "die" | "oom", "start":
                await clear(rule.name, event.id, RUNNING_AGAIN.format(name=event.name), event.at)
            case "unhealthy", "health_status: unhealthy":
                await hold(rule, event.id, f"{event.name} is unhealthy", details, event.labels, event.at)
            case "unhealthy", "health_status: healthy":
                await clear(rule.name, event.id, f"{event.name} is healthy again", event.at)
            case "restart_loop", "start":
                recent = [at for at in self._restarts.get(event.id, ()) if at > event.at - rule.within]
                if len(recent) >= rule.restarts:
                    summary = f"{event.name} restarted {len(recent)} times in {rule.within:g} s"
                    await hold(rule, event.id, summary, {**details, "restarts": len(recent)}, event.labels, event.at)

    async def quiet_loops(self, rules: Sequence[AlertRule], now: float) -> None:
        """A restart loop is over once its container has not started for the rule's `within`."""
        for held in self._conditions.active():
            rule = next((r for r in rules if r.name == held.rule.name and r.event == "restart_loop"), None)
            restarts = self._restarts.get(held.subject)
            if rule is not None and (not restarts or restarts[-1] <= now - rule.within):
                name = held.details["container"]["name"]
                await self._conditions.clear(rule.name, held.subject, f"{name} has not restarted for "
                                             f"{rule.within:g} s", now)  # fmt: skip
