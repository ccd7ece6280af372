"""How the engine's answers spell what several layers read: a container's name in a list, a restart policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def listed_name(c: Any) -> str:
    """A container's name from an item of the engine's list (a mapping, or aiodocker's container, which reads
    as one by key only): `Names`, each with a leading slash."""
    return str((c["Names"] or ["/"])[0]).lstrip("/")


def inspected_name(inspected: Mapping[str, Any]) -> str:
    """A container's name from the engine's inspect, which writes it with a leading slash."""
    return str(inspected["Name"]).lstrip("/")


def restart_policy(policy: Mapping[str, Any] | None) -> str:
    """As `docker run --restart` spells it: no, always, unless-stopped, on-failure[:N]."""
    name = (policy or {}).get("Name") or "no"
    retries = (policy or {}).get("MaximumRetryCount") or 0
    return f"{name}:{retries}" if name == "on-failure" and retries else name
