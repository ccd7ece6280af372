"""Engine events and list items in moorage's shape, from the payloads Docker 20.10 and later send."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.engine.shapes import listed_exit_code, listed_health
from moorage.schemas.events import EventSchema, event_item


def engine_event(action: str, kind: str = "container", **attributes: str) -> dict[str, Any]:
    return {
        "Type": kind,
        "Action": action,
        "Actor": {"ID": "ab" * 32, "Attributes": {"name": "web", "image": "nginx:1", "app": "shop", **attributes}},
        "time": 1764633600,
        "timeNano": 1764633600123456789,
    }


@pytest.mark.parametrize(
    ("action", "attributes", "expected"),
    [
        ("health_status: healthy", {}, {"action": "health_status", "health": "healthy"}),
        ("health_status: unhealthy", {}, {"action": "health_status", "health": "unhealthy"}),
        ("exec_start: sh -c echo a:b", {"execID": "1"}, {"action": "exec_start", "command": "sh -c echo a:b"}),
        ("die", {"exitCode": "137"}, {"action": "die", "exit_code": 137}),
        ("die", {"exitCode": "-1"}, {"action": "die", "exit_code": -1}),
        ("oom", {}, {"action": "oom"}),
        ("kill", {"signal": "15"}, {"action": "kill"}),
    ],
)
def test_an_action_is_split_from_what_the_engine_writes_after_its_colon(
    action: str, attributes: dict[str, str], expected: dict[str, Any]
) -> None:
    item = event_item(engine_event(action, **attributes))
    extra = {k: item[k] for k in ("action", "health", "command", "exit_code") if k in item}
    assert extra == expected
    assert item["labels"] == {"app": "shop"}, "the event's own attributes are not the container's labels"
    assert (item["name"], item["image"], item["time"]) == ("web", "nginx:1", "2025-12-02T00:00:00Z")
    assert EventSchema().validate({**item, "redacted": []}) == {}


def test_a_volumes_event_has_no_labels_and_no_image() -> None:
    item = event_item(engine_event("mount", kind="volume", driver="local"))
    assert item["labels"] is None and item["image"] is None


@pytest.mark.parametrize(
    ("status", "health", "exit_code"),
    [
        ("Up 5 minutes (healthy)", "healthy", None),
        ("Up 2 seconds (health: starting)", "starting", None),
        ("Up 1 hour (unhealthy)", "unhealthy", None),
        ("Up 3 days (Paused)", None, None),
        ("Up 3 days", None, None),
        ("Exited (137) 3 seconds ago", None, 137),
        ("Restarting (1) Less than a second ago", None, 1),
        ("Created", None, None),
    ],
)
def test_a_list_items_status_text_tells_its_health_and_exit_code(
    status: str, health: str | None, exit_code: int | None
) -> None:
    item = {"Status": status}
    assert (listed_health(item), listed_exit_code(item)) == (health, exit_code)


def test_a_newer_engines_health_object_is_read_first() -> None:
    assert listed_health({"Status": "Up 1 second", "Health": {"Status": "unhealthy"}}) == "unhealthy"
    assert listed_health({"Status": "Up 1 second", "Health": {"Status": "none"}}) is None
