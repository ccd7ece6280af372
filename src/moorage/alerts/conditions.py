"""What is firing: each rule's condition per subject (a container, or the host), pending for the rule's `for`, then
firing once, then resolved once, as Prometheus's alerting rules do. Notifications are made here and queued for the
rule's webhooks; the watchers only say what holds and what no longer does."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moorage.alerts.notifications import Notification
from moorage.settings import AlertRule

_LOGGER = logging.getLogger(__name__)
HISTORY = 500  # the recent firings and resolutions GET /alerts shows
Notify = Callable[[Notification, Iterable[str]], Awaitable[Any]]
HOST = "host"  # the subject of a rule over the host's figures


@dataclass
class Condition:
    """A rule's condition over one subject: held since `since`, firing from `fired_at` (None: still pending)."""

    rule: AlertRule
    subject: str
    summary: str
    details: dict[str, Any]
    since: float
    fired_at: float | None = None
    last_held: float = 0.0
    count: int = 1  # how many times it was held meanwhile (log lines matched, starts, ticks above a threshold)
    labels: Mapping[str, str] = field(default_factory=dict)  # of the container, for scoped readers

    def entry(self, status: str, summary: str, at: float) -> dict[str, Any]:
        """The condition as GET /alerts shows it: a firing or a resolution of late (`now()`: as it holds now)."""
        return {"alert": self.rule.name, "status": status, "severity": self.rule.severity, "subject": self.subject,
                "summary": summary, "details": self.details, "started_at": self.since, "at": at,
                "labels": self.labels}  # fmt: skip

    def now(self) -> dict[str, Any]:
        return self.entry("pending" if self.fired_at is None else "firing", self.summary, self.fired_at or self.since)


class Conditions:
    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self._held: dict[tuple[str, str], Condition] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)

    def active(self) -> list[Condition]:
        return list(self._held.values())

    def is_held(self, rule: AlertRule, subject: str) -> Condition | None:
        return self._held.get((rule.name, subject))

    async def hold(
        self,
        rule: AlertRule,
        subject: str,
        summary: str,
        details: dict[str, Any],
        labels: Mapping[str, str] | None = None,
        now: float | None = None,
        times: int = 1,
    ) -> None:
        """The rule's condition holds for `subject` (`times` over: log lines of one read): pending from now, firing
        once it has held for the rule's `for` (at once without one). Holding it again while it holds only counts."""
        now = time.time() if now is None else now
        found = self._held.get((rule.name, subject))
        if found is not None:
            found.count += times
            found.last_held = now
            if found.fired_at is None:
                found.summary, found.details = summary, details
            return
        held = self._held[(rule.name, subject)] = Condition(rule, subject, summary, details, now, last_held=now,
                                                            count=times, labels=labels or {})  # fmt: skip
        if rule.for_seconds <= 0:
            await self._fire(held, now)

    async def clear(self, rule_name: str, subject: str, summary: str, now: float | None = None) -> None:
        """The condition no longer holds: resolved if it fired, forgotten if it was pending."""
        held = self._held.pop((rule_name, subject), None)
        if held is None or held.fired_at is None:
            return
        now = time.time() if now is None else now
        try:
            await self._send(held, "resolved", summary, now)
        except BaseException:
            self._held.setdefault((rule_name, subject), held)  # not queued: still firing, to be resolved again
            raise
        self.history.appendleft(held.entry("resolved", summary, now))

    async def clear_subject(self, subject: str, summary: str) -> None:
        """Every rule's condition over a subject that is gone (a container removed)."""
        for rule_name, held_subject in [key for key in self._held if key[1] == subject]:
            await self.clear(rule_name, held_subject, summary)

    async def tick(self, now: float | None = None) -> None:
        """Fire what has been pending for its rule's `for`."""
        now = time.time() if now is None else now
        for key, held in list(self._held.items()):
            # One cleared while an earlier one's notification was being queued is not fired.
            if self._held.get(key) is held and held.fired_at is None and now - held.since >= held.rule.for_seconds:
                await self._fire(held, now)

    async def forget_rules(self, rules: Iterable[AlertRule]) -> None:
        """After a reload: the conditions of rules that are gone, or now say something else under their name, are
        resolved (to the webhooks the old rule named), as nothing watches them now."""
        current = {rule.name: rule for rule in rules}
        for (rule_name, subject), held in list(self._held.items()):
            if current.get(rule_name) != held.rule:
                await self.clear(rule_name, subject, "the rule was changed or removed in the configuration")

    async def _fire(self, held: Condition, now: float) -> None:
        held.fired_at = now  # first, so that no other hold or tick fires it meanwhile
        try:
            await self._send(held, "firing", held.summary, now)
        except BaseException:
            held.fired_at = None  # not queued: still pending, to be fired at the next tick
            raise
        self.history.appendleft(held.entry("firing", held.summary, now))

    async def _send(self, held: Condition, status: str, summary: str, now: float) -> None:
        notification = Notification(alert=held.rule.name, status=status, severity=held.rule.severity,
                                    summary=summary, details={**held.details, "count": held.count},
                                    started_at=held.since, at=now)  # fmt: skip
        _LOGGER.info("alert %s %s: %s", held.rule.name, status, summary)
        await self._notify(notification, held.rule.webhooks)
