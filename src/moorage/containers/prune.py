"""Prunes, as `docker container|image|volume|network|system prune` with `--filter`, and their dry runs.

A dry run picks what the engine's prune (Docker 20.10) would, from the engine's own lists: stopped containers
(created, exited, dead; not paused, running or restarting), images (images/prune.py), local volumes without driver
options that nothing references, networks other than bridge/host/none with no endpoint (a stopped container has
none: the engine prunes a network only stopped containers use), and for a system prune the build cache. A system
prune goes in the CLI's order, containers first, so its dry run counts what the containers it removes held as
unused. A real prune is the engine's own, with the same filters and the same `until` to the second; its answer
is what the engine reports, named and sized from the lists read just before.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from moorage.containers.diskusage import engine_disk_usage
from moorage.containers.networks import PREDEFINED
from moorage.engine.client import engine_json, engine_post
from moorage.engine.pruning import PruneFilters, engine_moment
from moorage.engine.shapes import listed_name
from moorage.images.prune import ImageOutcome, foretell, references, reported

# The engine's states of a container its prune removes (IsRunning is false): not paused, running, restarting.
STOPPED = ("created", "exited", "dead")
# Build cache records the engine's prune keeps unless all=true (buildkit's own records).
_KEPT_CACHE_TYPES = ("internal", "frontend")
# A prune is one engine call with no progress, which removes layer after layer: on a large host it outlasts
# [docker] timeout, and the engine goes on when moorage stops waiting. Waiting this long instead keeps its answer
# (and the audit's account of what went); a wedged engine still lets the call go in the end.
_PRUNE_SECONDS = 900.0
Report = dict[str, Any]


@dataclass
class Prune:
    """One prune's request: its kinds and filters, and the lists a dry run reads, each read once."""

    docker: aiodocker.Docker
    filters: PruneFilters
    dangling: bool = True
    removed_containers: set[str] = field(default_factory=set)
    _usage: dict[str, Any] | None = field(default=None, init=False)
    _containers: list[dict[str, Any]] | None = field(default=None, init=False)

    async def disk_usage(self) -> dict[str, Any]:
        """`GET /system/df`, once: volumes' sizes and references, images' shared sizes, the build cache."""
        if self._usage is None:
            self._usage = await engine_disk_usage(self.docker)
        return self._usage

    async def every_container(self) -> list[dict[str, Any]]:
        if self._containers is None:
            self._containers = await engine_json(self.docker, "containers/json", {"all": "1"})
        return self._containers

    async def _whole(self, kind: str, object_id: str) -> bool:
        """Whether an object listed as made in `until`'s second was made on it exactly (its inspect says to the
        nanosecond): the engine prunes what was made at `until`, not after. One removed since the list is not."""
        try:
            inspected = await engine_json(self.docker, f"{kind}/{object_id}/json")
        except DockerError as err:
            if err.status == 404:
                return False
            raise
        return engine_moment(inspected["Created"])[1]

    async def _made_by_until(self, listed: Iterable[dict[str, Any]], kind: str) -> dict[str, bool]:
        """For the objects listed in `until`'s second, whether each was made on it exactly."""
        borderline = [
            item["Id"]
            for item in listed
            if self.filters.until is not None and item.get("Created") == self.filters.until
        ]
        found = await asyncio.gather(*(self._whole(kind, object_id) for object_id in borderline))
        return dict(zip(borderline, found, strict=True))

    # What each prune would remove.

    async def containers(self) -> list[dict[str, Any]]:
        """The stopped containers the filters name, with their writable layers' sizes (SizeRw)."""
        query = {"status": list(STOPPED), "label": list(self.filters.label)}
        params = {"all": "1", "size": "1", "filters": json.dumps(query)}
        listed = await engine_json(self.docker, "containers/json", params)
        whole = await self._made_by_until(listed, "containers")
        chosen = [
            c
            for c in listed
            if self.filters.labels_match(c.get("Labels"))
            and self.filters.made_by_until(c["Created"], whole.get(c["Id"], False))
        ]
        self.removed_containers = {c["Id"] for c in chosen}
        items = [{"id": c["Id"], "name": listed_name(c), "size": c.get("SizeRw") or 0} for c in chosen]
        return sorted(items, key=lambda item: (item["name"], item["id"]))

    async def networks(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The networks the filters name with no endpoint, and every network listed (to name what went)."""
        listed = await engine_json(self.docker, "networks")
        maybe = [
            n
            for n in listed
            if n["Name"] not in PREDEFINED
            and n.get("Scope") != "swarm"
            and not n.get("ConfigOnly")
            and self.filters.labels_match(n.get("Labels"))
            and self.filters.made_by_until(*engine_moment(n["Created"]))
        ]
        inspected = await asyncio.gather(*(_network_or_none(self.docker, n["Id"]) for n in maybe))
        chosen = [n for n in inspected if n is not None and not n.get("Containers")]
        return sorted((_network(n) for n in chosen), key=lambda item: (item["name"], item["id"])), listed

    async def volumes(self) -> list[dict[str, Any]]:
        """Local volumes without driver options, matching the labels, that nothing references once the
        containers this prune removes are gone; with their sizes as `docker system df -v` shows them."""
        mounts = Counter(
            m["Name"]
            for c in await self.every_container()
            if c["Id"] in self.removed_containers
            for m in c.get("Mounts") or ()
            if m.get("Type") == "volume"
        )
        chosen = []
        for v in (await self.disk_usage()).get("Volumes") or ():
            usage = v.get("UsageData") or {}
            references_left = usage.get("RefCount", -1) - mounts[v["Name"]]
            unused = v.get("Driver") == "local" and not v.get("Options") and references_left == 0
            if unused and self.filters.labels_match(v.get("Labels")):
                chosen.append(_volume(v))
        return sorted(chosen, key=lambda item: item["name"])

    async def images(self, sized: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """What the image prune would untag and delete (images/prune.py), every image listed (to name what went
        in a real prune), and, when `sized`, the bytes it would free: each deleted image's size less what it
        shares with other images (the engine's disk usage, which a real prune, reporting its own, is spared)."""
        listed = await engine_json(self.docker, "images/json", {"all": "1"})
        used = {c["ImageID"] for c in await self.every_container() if c["Id"] not in self.removed_containers}
        whole = await self._made_by_until(listed, "images")
        outcomes = foretell(listed, used, self.filters, self.dangling, lambda image: whole.get(image["Id"], False))
        freed = 0
        if sized and any(outcome.deleted for outcome in outcomes):
            shared = {i["Id"]: i.get("SharedSize", 0) for i in (await self.disk_usage()).get("Images") or ()}
            sizes = {i["Id"]: i.get("Size", 0) for i in listed}
            freed = sum(sizes[o.id] - max(shared.get(o.id, 0), 0) for o in outcomes if o.deleted)
        return image_items(outcomes, listed), listed, freed

    async def build_cache(self) -> Report:
        """The build cache records the engine's build prune would remove: unused ones (and without all, not
        buildkit's own or shared ones) last used by `until`. With a label filter, none: the engine's build prune
        takes `label` and ignores it (moby's TODO), so it would remove records the filter does not name."""
        if self.filters.labelled:
            return {"skipped": "a label filter is given: the engine's build cache prune ignores labels", "items": []}
        chosen = []
        for record in (await self.disk_usage()).get("BuildCache") or ():
            if record.get("InUse"):
                continue
            if self.dangling and (record.get("Type") in _KEPT_CACHE_TYPES or record.get("Shared")):
                continue
            last_used = record.get("LastUsedAt") or record.get("CreatedAt")
            if self.filters.until is not None and last_used and engine_moment(last_used)[0] > self.filters.until:
                continue
            chosen.append(_cache_item(record))
        return {"skipped": None, "items": sorted(chosen, key=lambda item: item["id"])}


async def _network_or_none(docker: aiodocker.Docker, network_id: str) -> dict[str, Any] | None:
    """A network's inspect (its endpoints), or None for one removed since the list."""
    try:
        return dict(await engine_json(docker, f"networks/{network_id}"))
    except DockerError as err:
        if err.status == 404:
            return None
        raise


def _network(n: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": n["Id"], "name": n["Name"], "driver": n.get("Driver", "")}


def _volume(v: Mapping[str, Any]) -> dict[str, Any]:
    size = (v.get("UsageData") or {}).get("Size", -1)
    return {"name": v["Name"], "driver": v.get("Driver", ""), "size": size if size >= 0 else None}


def _cache_item(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": record["ID"],
        "type": record.get("Type", ""),
        "description": record.get("Description", ""),
        "size": record.get("Size", 0),
    }


def image_items(outcomes: Iterable[ImageOutcome], listed: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Outcomes as the answer's items, each with its image's size and its references before the prune."""
    by_id = {image["Id"]: image for image in listed}
    items = []
    for outcome in outcomes:
        image = by_id.get(outcome.id, {})
        items.append(
            {
                "id": outcome.id,
                "references": references(image),
                "untagged": outcome.untagged,
                "deleted": outcome.deleted,
                "size": image.get("Size"),
            }
        )
    return sorted(items, key=lambda item: item["id"])


def image_records(items: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """A dry run's foretelling of the engine's ImagesDeleted: the untagged references, then the deleted ids (not
    the layers those release, which the engine lists too)."""
    records = [{"untagged": ref} for item in items for ref in item["untagged"]]
    return records + [{"deleted": item["id"]} for item in items if item["deleted"]]


# The runs: each reads what it would remove, and without dry_run has the engine remove it.


async def _engine_prune(docker: aiodocker.Docker, kind: str, params: Mapping[str, str]) -> dict[str, Any]:
    return dict(await engine_post(docker, f"{kind}/prune", {}, params, seconds=_PRUNE_SECONDS) or {})


def _named(values: Iterable[str], known: Iterable[Mapping[str, Any]], key: str, *unknown: str) -> list[Report]:
    """What the engine says went (ids or names), each with what was known of it before; one not known (made since
    the list was read) with its `key` alone, its `unknown` fields null. In the dry run's order: by name, then id."""
    by_key = {item[key]: item for item in known}
    went = [dict(by_key.get(value) or {key: value, **dict.fromkeys(unknown)}) for value in values]
    return sorted(went, key=lambda item: (item.get("name") or "", item.get("id") or ""))


async def prune_containers(prune: Prune, dry_run: bool) -> Report:
    items = await prune.containers()
    if dry_run:
        return {"containers": items, "reclaimed_bytes": sum(item["size"] for item in items)}
    done = await _engine_prune(prune.docker, "containers", {"filters": prune.filters.engine()})
    went = _named(done.get("ContainersDeleted") or (), items, "id", "name", "size")
    prune.removed_containers = {item["id"] for item in went}
    return {"containers": went, "reclaimed_bytes": done.get("SpaceReclaimed", 0)}


async def prune_networks(prune: Prune, dry_run: bool) -> Report:
    items, listed = await prune.networks()
    if dry_run:
        return {"networks": items, "reclaimed_bytes": 0}
    done = await _engine_prune(prune.docker, "networks", {"filters": prune.filters.engine()})
    went = _named(done.get("NetworksDeleted") or (), [_network(n) for n in listed], "name", "id", "driver")
    return {"networks": went, "reclaimed_bytes": 0}


async def prune_volumes(prune: Prune, dry_run: bool) -> Report:
    items = await prune.volumes()
    if dry_run:
        return {"volumes": items, "reclaimed_bytes": sum(item["size"] or 0 for item in items)}
    done = await _engine_prune(prune.docker, "volumes", {"filters": prune.filters.engine()})
    went = _named(done.get("VolumesDeleted") or (), items, "name", "driver", "size")
    return {"volumes": went, "reclaimed_bytes": done.get("SpaceReclaimed", 0)}


async def prune_images(prune: Prune, dry_run: bool) -> Report:
    items, listed, freed = await prune.images(sized=dry_run)
    if dry_run:
        return {"images": items, "images_deleted": image_records(items), "reclaimed_bytes": freed}
    filters = prune.filters.engine(dangling=prune.dangling)
    done = await _engine_prune(prune.docker, "images", {"filters": filters})
    records = done.get("ImagesDeleted") or []
    went = image_items(reported(records, listed), listed)
    engine_records = [{key.lower(): value for key, value in record.items() if value} for record in records]
    return {"images": went, "images_deleted": engine_records, "reclaimed_bytes": done.get("SpaceReclaimed", 0)}


async def prune_build_cache(prune: Prune, dry_run: bool) -> Report:
    planned = await prune.build_cache()
    if dry_run or planned["skipped"]:
        return {**planned, "reclaimed_bytes": sum(item["size"] for item in planned["items"])}
    params = {"all": "0" if prune.dangling else "1"}
    if prune.filters.until is not None:
        # The engine's build prune takes a duration only: how long ago `until` is.
        params["filters"] = json.dumps({"until": [f"{max(0, int(time.time()) - prune.filters.until)}s"]})
    done = await _engine_prune(prune.docker, "build", params)
    went = _named(done.get("CachesDeleted") or (), planned["items"], "id", "type", "description", "size")
    return {"skipped": None, "items": went, "reclaimed_bytes": done.get("SpaceReclaimed", 0)}


async def prune_system(prune: Prune, dry_run: bool, volumes: bool) -> Report:
    """`docker system prune [-a] [--volumes]`: containers, networks, volumes when asked, images, the build cache,
    in that order, each seeing what the ones before removed."""
    steps: list[Callable[[Prune, bool], Awaitable[Report]]] = [prune_containers, prune_networks]
    if volumes:
        steps.append(prune_volumes)
    steps.append(prune_images)
    report: Report = {"reclaimed_bytes": 0}
    for step in steps:
        part = await step(prune, dry_run)
        report["reclaimed_bytes"] += part.pop("reclaimed_bytes")
        report.update(part)
    cache = await prune_build_cache(prune, dry_run)
    report["reclaimed_bytes"] += cache["reclaimed_bytes"]
    report["build_cache"] = cache
    return report
