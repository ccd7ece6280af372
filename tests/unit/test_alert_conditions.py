"""What a rule tells its webhooks, judged without the engine: once when it fires after its `for`, once when it is
resolved, nothing for a condition that did not last, and a resolution for each condition of a rule removed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest

from moorage.alerts.conditions import Conditions
from moorage.alerts.notifications import Notification
from moorage.settings import AlertRule

HOT = AlertRule(name="hot", kind="threshold", webhooks=("ops",), metric="host_cpu", above=80, for_seconds=5)
CRASHED = AlertRule(name="crashed", kind="event", webhooks=("ops", "pager"), event="die", severity="critical")


class Sent:
    def __init__(self) -> None:
        self.got: list[tuple[Notification, tuple[str, ...]]] = []

    async def __call__(self, notification: Notification, webhooks: Iterable[str]) -> None:
        self.got.append((notification, tuple(webhooks)))

    def statuses(self) -> list[tuple[str, str]]:
        return [(n.alert, n.status) for n, _ in self.got]


async def test_a_threshold_fires_once_after_its_for_and_is_resolved_once() -> None:
    sent = Sent()
    conditions = Conditions(sent)
    for second in range(8):  # held every second: one firing at 5 s, however often it is held
        await conditions.hold(HOT, "host", "CPU high", {"value": 90}, now=100.0 + second)
        await conditions.tick(100.0 + second)
    assert sent.statuses() == [("hot", "firing")]
    assert sent.got[0][0].started_at == 100.0 and sent.got[0][0].at == 105.0
    await conditions.clear("hot", "host", "CPU back", now=110.0)
    await conditions.clear("hot", "host", "CPU back", now=111.0)
    assert sent.statuses() == [("hot", "firing"), ("hot", "resolved")]
    resolved = sent.got[1][0]
    assert (resolved.summary, resolved.started_at, resolved.details["count"]) == ("CPU back", 100.0, 8)
    assert [entry["status"] for entry in conditions.history] == ["resolved", "firing"]


async def test_a_condition_shorter_than_its_for_tells_nobody() -> None:
    sent = Sent()
    conditions = Conditions(sent)
    await conditions.hold(HOT, "host", "CPU high", {}, now=100.0)
    await conditions.tick(103.0)
    await conditions.clear("hot", "host", "CPU back", now=104.0)
    await conditions.tick(120.0)
    assert sent.got == [] and conditions.active() == [] and not conditions.history


async def test_an_event_rule_fires_at_once_to_each_of_its_webhooks_per_subject() -> None:
    sent = Sent()
    conditions = Conditions(sent)
    await conditions.hold(CRASHED, "c1", "web exited with code 3", {"exit_code": 3}, now=1.0)
    await conditions.hold(CRASHED, "c2", "db exited with code 1", {"exit_code": 1}, now=2.0)
    await conditions.hold(CRASHED, "c1", "web exited with code 3", {"exit_code": 3}, now=3.0)
    assert [(n.summary, webhooks) for n, webhooks in sent.got] == [
        ("web exited with code 3", ("ops", "pager")),
        ("db exited with code 1", ("ops", "pager")),
    ]
    assert {n.severity for n, _ in sent.got} == {"critical"}


async def test_the_conditions_of_a_removed_rule_are_resolved() -> None:
    sent = Sent()
    conditions = Conditions(sent)
    await conditions.hold(CRASHED, "c1", "web exited", {}, now=1.0)
    await conditions.hold(HOT, "host", "CPU high", {}, now=1.0)  # pending: nobody was told, nobody is
    await conditions.forget_rules([HOT])
    assert sent.statuses() == [("crashed", "firing"), ("crashed", "resolved")]
    assert [held.rule for held in conditions.active()] == [HOT]


async def test_a_rule_that_says_something_else_under_its_name_after_a_reload_is_resolved() -> None:
    sent = Sent()
    conditions = Conditions(sent)
    await conditions.hold(CRASHED, "c1", "web exited", {}, now=1.0)
    await conditions.forget_rules([replace(CRASHED, event="oom")])
    assert sent.statuses() == [("crashed", "firing"), ("crashed", "resolved")] and conditions.active() == []


async def test_a_notification_that_cannot_be_queued_leaves_the_condition_to_be_told_again() -> None:
    sent = Sent()
    conditions = Conditions(sent)
    broken = Conditions(failing)
    await conditions.hold(CRASHED, "c1", "web exited", {}, now=1.0)
    with pytest.raises(OSError):
        await broken.hold(CRASHED, "c1", "web exited", {}, now=1.0)
    [held] = broken.active()
    assert held.fired_at is None and not broken.history  # pending: the next tick fires it
    broken._notify = sent
    await broken.tick(2.0)
    assert [status for _, status in sent.statuses()] == ["firing", "firing"] and len(broken.history) == 1


async def failing(notification: Notification, webhooks: Iterable[str]) -> None:
    raise OSError("disk full")
