"""How the engine's answers spell what several layers read: a container's name in a list, a restart policy."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# The engine's list item tells a container's health and last exit only in its `Status` text (API 1.52 adds a
# `Health` object): "Up 5 minutes (healthy)", "Up 2 seconds (health: starting)", "Exited (137) 3 seconds ago".
_LISTED_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)$")
_LISTED_EXIT = re.compile(r"(?:Exited|Restarting) \((-?[0-9]+)\)")


def listed_name(c: Any) -> str:
    """A container's name from an item of the engine's list (a mapping, or aiodocker's container, which reads
    as one by key only): `Names`, each with a leading slash; its own is the one of one segment, where a link's
    (`/app/db`) may come first."""
    names = [str(name) for name in c["Names"] or ["/"]]
    return next((name for name in names if name.count("/") == 1), names[0]).lstrip("/")


def listed_health(c: Mapping[str, Any]) -> str | None:
    """healthy, unhealthy or starting, as `docker ps --filter health=` names them; None without a healthcheck."""
    if health := (c.get("Health") or {}).get("Status"):
        return None if health == "none" else str(health)
    found = _LISTED_HEALTH.search(c["Status"]) if c["Status"].endswith(")") else None
    return None if found is None else found[1].removeprefix("health: ")


def listed_exit_code(c: Mapping[str, Any]) -> int | None:
    """The exit code of an exited container, or of the last run of a restarting one; None otherwise."""
    found = _LISTED_EXIT.match(c["Status"])
    return None if found is None else int(found[1])


def inspected_name(inspected: Mapping[str, Any]) -> str:
    """A container's name from the engine's inspect, which writes it with a leading slash."""
    return str(inspected["Name"]).lstrip("/")


def restart_policy(policy: Mapping[str, Any] | None) -> str:
    """As `docker run --restart` spells it: no, always, unless-stopped, on-failure[:N]."""
    name = (policy or {}).get("Name") or "no"
    retries = (policy or {}).get("MaximumRetryCount") or 0
    return f"{name}:{retries}" if name == "on-failure" and retries else name


# Which of the engine's list items a caller may see: all of them, or a scoped caller's (web/scoping.py).
Seen = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def all_seen(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return found


# The attributes of a container's event that are the event's own, not the container's labels.
_EVENT_ATTRIBUTES = frozenset({"name", "image", "exitCode", "signal", "execID", "execDuration"})


def event_labels(attributes: Mapping[str, str]) -> dict[str, str]:
    """A container's labels from one of its events, whose attributes are its labels and the event's own."""
    return {key: value for key, value in attributes.items() if key not in _EVENT_ATTRIBUTES}
