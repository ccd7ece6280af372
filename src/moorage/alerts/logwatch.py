"""Rules on log lines: each running container that a log rule watches has its log followed from the moment it
started (or from moorage's own start), and a line matching a rule's RE2 pattern holds that rule for the container.

A rule fires on its first match, with the line, and counts the matches after it without another notification
(the rate limit); it is resolved once no line has matched for its `quiet`. The patterns are matched in linear
time, and only lines of whole runs are read (demuxed as the log routes do): a flood of lines costs one match per
run, not one per line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from moorage.alerts.conditions import Conditions
from moorage.background import cancel_and_wait
from moorage.engine.errors import ENGINE_STREAM_ERRORS
from moorage.engine.frames import whole_lines
from moorage.engine.streams import EngineStreams, batched
from moorage.logs.grep import LineGrep
from moorage.settings import AlertRule

_LOGGER = logging.getLogger(__name__)
MAX_LINE = 16 * 1024  # a line in a notification: longer ones are cut (and still matched on what is kept)
Rules = Callable[[], Sequence[AlertRule]]


class LogWatch:
    def __init__(self, engine: EngineStreams, conditions: Conditions, rules: Rules) -> None:
        self._engine = engine
        self._conditions = conditions
        self._rules = rules
        self._follows: dict[str, asyncio.Task[None]] = {}
        self._greps: dict[tuple[str, bool, bool], LineGrep] = {}

    def _watching(self, labels: Mapping[str, str], name: str) -> list[AlertRule]:
        return [r for r in self._rules() if r.kind == "log" and r.scope.admits(labels, name)]

    def started(self, container_id: str, name: str, labels: Mapping[str, str], tty: bool, since: float) -> None:
        """Follow the container's log from `since` if a log rule watches it (and it is not followed yet)."""
        task = self._follows.get(container_id)
        if (task is None or task.done()) and self._watching(labels, name):
            self._follows[container_id] = asyncio.create_task(
                self._follow(container_id, name, labels, tty, since), name=f"alert log {name}"
            )

    async def stopped(self, container_id: str) -> None:
        if (task := self._follows.pop(container_id, None)) is not None:
            await cancel_and_wait(task)

    async def retain(self, present: set[str]) -> None:
        """Stop following the containers removed while the engine was not followed."""
        for container_id in [cid for cid in self._follows if cid not in present]:
            await self.stopped(container_id)

    async def close(self) -> None:
        for container_id in list(self._follows):
            await self.stopped(container_id)

    def _grep(self, rule: AlertRule, tty: bool) -> LineGrep:
        key = (rule.pattern, rule.ignore_case, tty)
        if (grep := self._greps.get(key)) is None:
            grep = self._greps[key] = LineGrep.of(rule.pattern, ignore_case=rule.ignore_case, invert=False,
                                                  stamped=False, tty=tty)  # fmt: skip
        return grep

    async def _follow(self, container_id: str, name: str, labels: Mapping[str, str], tty: bool, since: float) -> None:
        params = {"follow": "1", "stdout": "1", "stderr": "1", "since": f"{since:.9f}"}
        try:
            async with self._engine.request("GET", f"/containers/{container_id}/logs", params) as response:
                async for _, run in whole_lines(batched(response.content), tty, False, MAX_LINE):
                    for rule in self._watching(labels, name):  # read at each run: a reload changes them
                        if found := list(self._grep(rule, tty).matched(run)):
                            start, end = found[0]
                            line = run[start:end].rstrip(b"\r\n").decode("utf-8", "replace")
                            details = {"container": {"id": container_id, "name": name}, "line": line}
                            summary = f"{name} logged a line matching {rule.pattern!r}"
                            await self._conditions.hold(rule, container_id, summary, details, labels, times=len(found))
        except ENGINE_STREAM_ERRORS as err:
            _LOGGER.info("alert log of %s ended: %s", name, err)
        except Exception:  # the outbox failing, say: logged, and the container's next start follows it again
            _LOGGER.exception("alert log of %s failed", name)

    async def quiet(self, rules: Sequence[AlertRule], now: float | None = None) -> None:
        """A log rule is resolved once no line of its container has matched for its `quiet`."""
        now = time.time() if now is None else now
        quiet = {rule.name: rule.quiet for rule in rules if rule.kind == "log"}
        for held in self._conditions.active():
            if (after := quiet.get(held.rule.name)) is not None and held.last_held <= now - after:
                name = held.details["container"]["name"]
                summary = f"no line of {name} has matched {held.rule.pattern!r} for {after:g} s"
                await self._conditions.clear(held.rule.name, held.subject, summary, now)
