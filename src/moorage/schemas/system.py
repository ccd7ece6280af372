"""System schemas: the disk usage query, and the engine's `GET /system/df` in moorage's shape (`docker system df`,
and with ?verbose=true its `-v` lists)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields

from moorage.containers.diskusage import UNKNOWN, totals, volume_usage
from moorage.engine.shapes import listed_name
from moorage.schemas.common import StrictSchema, docker_time

_DANGLING = "<none>:<none>"


class DiskUsageQuery(StrictSchema):
    verbose = fields.Boolean(
        load_default=False, metadata={"description": "also every image, container, volume and build cache record"}
    )


def _known(value: int | None) -> int | None:
    """A size or count, or None where the engine wrote -1 (or nothing) for one it did not work out."""
    return None if value is None or value == UNKNOWN else value


def _repository_tag(repo_tags: list[str] | None) -> tuple[str | None, str | None]:
    """The first tag's repository and tag, as `docker system df -v` shows an image; (None, None) for a dangling
    one. The engine writes them in Docker's familiar form (`busybox:latest`), a tag after the last colon that
    is past the last slash (a registry's port is not a tag)."""
    first = next(iter(repo_tags or ()), _DANGLING)
    repository, colon, tag = first.rpartition(":")
    if first == _DANGLING or not colon or "/" in tag:
        return None, None
    return repository, tag


def image_item(image: Mapping[str, Any]) -> dict[str, Any]:
    size, shared = _known(image.get("Size")), _known(image.get("SharedSize"))
    repository, tag = _repository_tag(image.get("RepoTags"))
    return {
        "id": image["Id"],
        "repository": repository,
        "tag": tag,
        "created_at": docker_time(image.get("Created")),
        "size": size,
        "shared_size": shared,
        "unique_size": None if size is None or shared is None else size - shared,
        "containers": _known(image.get("Containers")),
    }


def container_item(container: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": container["Id"],
        "name": listed_name(container),
        "names": [name.lstrip("/") for name in container.get("Names") or ()],
        "image": container.get("Image", ""),
        "created_at": docker_time(container.get("Created")),
        "state": container.get("State", ""),
        "status": container.get("Status", ""),
        "size": container.get("SizeRw") or 0,
    }


def volume_item(volume: Mapping[str, Any]) -> dict[str, Any]:
    links, size = volume_usage(volume)
    return {"name": volume["Name"], "driver": volume.get("Driver", ""), "links": _known(links), "size": _known(size)}


def build_cache_item(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": record["ID"],
        "type": record.get("Type", ""),
        "description": record.get("Description", ""),
        "size": record.get("Size") or 0,
        "in_use": bool(record.get("InUse")),
        "shared": bool(record.get("Shared")),
        "usage_count": record.get("UsageCount") or 0,
        "created_at": docker_time(record.get("CreatedAt")),
        "last_used_at": docker_time(record.get("LastUsedAt")),
    }


def _last_used(item: Mapping[str, Any]) -> tuple[bool, str, str]:
    """The CLI's order of build cache records: never used first, then the least recently used; the id breaks ties."""
    return item["last_used_at"] is not None, item["last_used_at"] or "", item["id"]


def disk_usage(usage: Mapping[str, Any], verbose: bool) -> dict[str, Any]:
    """The engine's df as `GET /system/df` answers it: the four lines, each with its `items` when verbose (in the
    engine's order; the build cache in the CLI's), null otherwise."""
    lines = totals(usage)
    items: dict[str, list[dict[str, Any]] | None] = dict.fromkeys(lines)
    if verbose:
        items = {
            "images": [image_item(i) for i in usage.get("Images") or ()],
            "containers": [container_item(c) for c in usage.get("Containers") or ()],
            "volumes": [volume_item(v) for v in usage.get("Volumes") or ()],
            "build_cache": sorted((build_cache_item(r) for r in usage.get("BuildCache") or ()), key=_last_used),
        }
    return {kind: {**line, "items": items[kind]} for kind, line in lines.items()}


_NULLABLE = {"required": True, "allow_none": True}


class ImageUsageSchema(Schema):
    id = fields.String(required=True)
    repository = fields.String(**_NULLABLE, metadata={"description": "of the first tag; null when dangling"})
    tag = fields.String(**_NULLABLE)
    created_at = fields.DateTime(**_NULLABLE)
    size = fields.Integer(**_NULLABLE, metadata={"description": "bytes, its layers and its parents'"})
    shared_size = fields.Integer(**_NULLABLE, metadata={"description": "bytes of layers other images share"})
    unique_size = fields.Integer(**_NULLABLE, metadata={"description": "bytes only this image holds"})
    containers = fields.Integer(**_NULLABLE, metadata={"description": "containers that use it"})


class ContainerUsageSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    names = fields.List(fields.String(), required=True)
    image = fields.String(required=True)
    created_at = fields.DateTime(**_NULLABLE)
    state = fields.String(required=True)
    status = fields.String(required=True)
    size = fields.Integer(required=True, metadata={"description": "bytes of its writable layer (SizeRw)"})


class VolumeUsageSchema(Schema):
    name = fields.String(required=True)
    driver = fields.String(required=True)
    links = fields.Integer(**_NULLABLE, metadata={"description": "containers that mount it"})
    size = fields.Integer(**_NULLABLE, metadata={"description": "bytes; null when the driver does not tell"})


class BuildCacheUsageSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True)
    description = fields.String(required=True)
    size = fields.Integer(required=True)
    in_use = fields.Boolean(required=True)
    shared = fields.Boolean(required=True)
    usage_count = fields.Integer(required=True)
    created_at = fields.DateTime(**_NULLABLE)
    last_used_at = fields.DateTime(**_NULLABLE)


class _UsageLineSchema(Schema):
    """A line of `docker system df`: its figures (its items, with ?verbose=true, are the subclass's)."""

    count = fields.Integer(required=True, metadata={"description": "how many in all"})
    active = fields.Integer(required=True, metadata={"description": "how many in use"})
    size = fields.Integer(required=True, metadata={"description": "bytes"})
    reclaimable = fields.Integer(required=True, metadata={"description": "bytes that those not in use hold"})
    reclaimable_percent = fields.Integer(
        **_NULLABLE, metadata={"description": "of size, rounded down as the CLI does; null when size is 0"}
    )


def _items(item: type[Schema]) -> fields.List:
    return fields.List(fields.Nested(item), **_NULLABLE, metadata={"description": "with ?verbose=true; else null"})


class ImageDiskUsageSchema(_UsageLineSchema):
    items = _items(ImageUsageSchema)


class ContainerDiskUsageSchema(_UsageLineSchema):
    items = _items(ContainerUsageSchema)


class VolumeDiskUsageSchema(_UsageLineSchema):
    items = _items(VolumeUsageSchema)


class BuildCacheDiskUsageSchema(_UsageLineSchema):
    items = _items(BuildCacheUsageSchema)


class DiskUsageSchema(Schema):
    """`GET /system/df`."""

    images = fields.Nested(ImageDiskUsageSchema, required=True)
    containers = fields.Nested(ContainerDiskUsageSchema, required=True)
    volumes = fields.Nested(VolumeDiskUsageSchema, required=True)
    build_cache = fields.Nested(BuildCacheDiskUsageSchema, required=True)
