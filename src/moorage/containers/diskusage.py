"""Disk usage as `docker system df` reckons it, from the engine's one `GET /system/df`.

The engine (20.10, API 1.41) gives the raw lists; the figures are the docker CLI's (cli/command/formatter/
disk_usage.go), so that moorage and `docker system df` never disagree about what a prune would give back:
- images: the size is the engine's LayersSize (shared layers counted once); an image is active when a container
  uses it; what a used image keeps is its size less what it shares with others, and the rest is reclaimable.
- containers: the size is the sum of their writable layers (SizeRw); a running, paused or restarting one is
  active, and the others' layers are reclaimable.
- volumes: the size is the sum of the sizes the engine could tell (UsageData.Size, -1 when it cannot: a driver
  other than local); one mounted by a container (RefCount) is active, the others' sizes are reclaimable.
- build cache: records shared with another are counted once, by the one they share; one in use is active, and
  everything but the unshared records in use is reclaimable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from moorage.engine.client import engine_json

# The states in which `docker system df` counts a container as active.
ACTIVE_STATES = frozenset({"running", "paused", "restarting"})
# What the engine writes for a size or count it did not work out.
UNKNOWN = -1
# What the engine answers (a 500) to a second disk usage while one runs: another caller's, which is soon done.
_BUSY = "a disk usage operation is already running"
_TRIES = 40
_PAUSE = 0.25


async def engine_disk_usage(docker: aiodocker.Docker, params: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The engine's `GET /system/df`: it walks every container's layer and every local volume, so it can take a
    while on a big host; one call answers everything. The engine answers one at a time: another caller's is
    waited for up to 10 s, then the engine's refusal is the answer (a 409)."""
    for _ in range(_TRIES - 1):
        try:
            return dict(await engine_json(docker, "system/df", params))
        except DockerError as err:
            if _BUSY not in str(err.message):
                raise
        await asyncio.sleep(_PAUSE)
    return dict(await engine_json(docker, "system/df", params))


def totals(usage: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The four lines of `docker system df`, each as {count, active, size, reclaimable, reclaimable_percent}."""
    return {
        "images": image_totals(usage.get("Images") or (), usage.get("LayersSize") or 0),
        "containers": container_totals(usage.get("Containers") or ()),
        "volumes": volume_totals(usage.get("Volumes") or ()),
        "build_cache": build_cache_totals(usage.get("BuildCache") or ()),
    }


def _line(count: int, active: int, size: int, reclaimable: int) -> dict[str, Any]:
    """One line; the percent is the CLI's (whole, rounded down), null where there is no size to take it of."""
    percent = reclaimable * 100 // size if size > 0 else None
    return {"count": count, "active": active, "size": size, "reclaimable": reclaimable, "reclaimable_percent": percent}


def image_totals(images: Iterable[Mapping[str, Any]], layers_size: int) -> dict[str, Any]:
    images = list(images)
    kept = sum(
        i["Size"] - i["SharedSize"]
        for i in images
        if i.get("Containers", 0) != 0 and UNKNOWN not in (i["Size"], i["SharedSize"])
    )
    active = sum(1 for i in images if i.get("Containers", 0) > 0)
    return _line(len(images), active, layers_size, layers_size - kept)


def container_active(container: Mapping[str, Any]) -> bool:
    return container.get("State") in ACTIVE_STATES


def container_totals(containers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    containers = list(containers)
    size = sum(c.get("SizeRw") or 0 for c in containers)
    idle = sum(c.get("SizeRw") or 0 for c in containers if not container_active(c))
    return _line(len(containers), sum(1 for c in containers if container_active(c)), size, idle)


def volume_usage(volume: Mapping[str, Any]) -> tuple[int, int]:
    """(RefCount, Size) of a volume's UsageData, UNKNOWN for what the engine left out."""
    data = volume.get("UsageData") or {}
    return data.get("RefCount", UNKNOWN), data.get("Size", UNKNOWN)


def volume_totals(volumes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    usages = [volume_usage(v) for v in volumes]
    size = sum(s for _, s in usages if s != UNKNOWN)
    idle = sum(s for links, s in usages if s != UNKNOWN and links == 0)
    return _line(len(usages), sum(1 for links, _ in usages if links > 0), size, idle)


def build_cache_totals(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    records = list(records)
    size = sum(r.get("Size") or 0 for r in records if not r.get("Shared"))
    held = sum(r.get("Size") or 0 for r in records if r.get("InUse") and not r.get("Shared"))
    return _line(len(records), sum(1 for r in records if r.get("InUse")), size, size - held)
