"""Prune schemas: the queries (the engine's filters, as `docker ... prune --filter` takes them, and dry_run) and
the answers, one per route with the kinds it touches."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validates_schema

from moorage.engine.pruning import PruneFilters
from moorage.schemas.common import StrictSchema
from moorage.schemas.containers import LABEL_FILTER
from moorage.schemas.logs import Moment

_LABELS = {"description": "KEY or KEY=VALUE, repeatable: only what carries every one"}
_NOT_LABEL = {
    "description": "KEY or KEY=VALUE: not what carries it (the engine's label!, which moorage takes once: several "
    "would spare only what carries them all)"
}
_UNTIL = {
    "description": "made at or before this (to the second): RFC 3339 with a zone, Unix seconds, or a duration "
    "back from now (24h, 1h30m)"
}


class _Labels(StrictSchema):
    label = fields.List(fields.String(validate=LABEL_FILTER), metadata=_LABELS)
    # One at most (given twice, a 400): several of the engine's label! spare only what carries them all.
    label_not = fields.String(validate=LABEL_FILTER, metadata=_NOT_LABEL)
    dry_run = fields.Boolean(load_default=False, metadata={"description": "answer what would go, and remove nothing"})


class VolumesPruneQuery(_Labels):
    # The engine's volume prune (API 1.41) takes no until: it answers a 400 for one.
    error_messages: ClassVar[dict[str, str]] = {
        "unknown": "not a filter of volume prune, which takes label, label_not and dry_run (no until)"
    }


class _Pruning(_Labels):
    until = Moment(metadata=_UNTIL)


class ContainersPruneQuery(_Pruning):
    pass


class NetworksPruneQuery(_Pruning):
    pass


_DANGLING = {"description": "true: only images without a tag; false: every image no container uses (docker -a)"}


class ImagesPruneQuery(_Pruning):
    dangling = fields.Boolean(load_default=True, metadata=_DANGLING)


class SystemPruneQuery(ImagesPruneQuery):
    volumes = fields.Boolean(load_default=False, metadata={"description": "also the volumes nothing uses"})

    @validates_schema
    def volumes_take_no_until(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("volumes") and "until" in data:
            raise ValidationError("volume prune takes no until: leave out one of until and volumes", "until")


def prune_filters(query: dict[str, Any]) -> PruneFilters:
    """A loaded query's filters, `until` to the whole second (as the engine takes a duration)."""
    until = query.get("until")
    return PruneFilters(
        until=None if until is None else math.floor(until),
        label=tuple(dict.fromkeys(query.get("label") or ())),
        label_not=(query["label_not"],) if "label_not" in query else (),
    )


# The answers.


def _nullable_integer(description: str) -> fields.Integer:
    return fields.Integer(required=True, allow_none=True, metadata={"description": description})


class PrunedContainerSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    size = _nullable_integer("bytes of its writable layer (SizeRw)")


class PrunedImageSchema(Schema):
    id = fields.String(required=True)
    references = fields.List(fields.String(), required=True, metadata={"description": "its tags and digests before"})
    untagged = fields.List(fields.String(), required=True, metadata={"description": "the references it loses"})
    deleted = fields.Boolean(
        required=True, metadata={"description": "the image goes (false: only untagged, as it is in use)"}
    )
    size = _nullable_integer("bytes, its layers shared with other images included")


class ImageRecordSchema(Schema):
    """One entry of the engine's ImagesDeleted: a reference untagged, or an image or layer deleted."""

    untagged = fields.String()
    deleted = fields.String()


class PrunedVolumeSchema(Schema):
    name = fields.String(required=True)
    driver = fields.String(required=True, allow_none=True)
    size = _nullable_integer("bytes, as docker system df -v (null when the driver does not tell)")


class PrunedNetworkSchema(Schema):
    id = fields.String(required=True, allow_none=True)
    name = fields.String(required=True)
    driver = fields.String(required=True, allow_none=True)


class BuildCacheItemSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True, allow_none=True)
    description = fields.String(required=True, allow_none=True)
    size = _nullable_integer("bytes")


class BuildCachePruneSchema(Schema):
    skipped = fields.String(
        required=True, allow_none=True, metadata={"description": "why the build cache was left alone, or null"}
    )
    items = fields.List(fields.Nested(BuildCacheItemSchema), required=True)
    reclaimed_bytes = fields.Integer(required=True)


_RECLAIMED = {"description": "bytes freed (a dry run: that it would free)"}


class _Answer(Schema):
    dry_run = fields.Boolean(required=True)
    reclaimed_bytes = fields.Integer(required=True, metadata=_RECLAIMED)


def _containers() -> fields.List:
    return fields.List(fields.Nested(PrunedContainerSchema), required=True)


def _images() -> fields.List:
    return fields.List(fields.Nested(PrunedImageSchema), required=True)


def _records() -> fields.List:
    description = "the engine's ImagesDeleted (a dry run: the references and images, not the layers they release)"
    return fields.List(fields.Nested(ImageRecordSchema), required=True, metadata={"description": description})


def _volumes(required: bool = True) -> fields.List:
    return fields.List(fields.Nested(PrunedVolumeSchema), required=required)


def _networks() -> fields.List:
    return fields.List(fields.Nested(PrunedNetworkSchema), required=True)


class ContainersPruneSchema(_Answer):
    containers = _containers()


class ImagesPruneSchema(_Answer):
    images = _images()
    images_deleted = _records()


class VolumesPruneSchema(_Answer):
    volumes = _volumes()


class NetworksPruneSchema(_Answer):
    networks = _networks()


class SystemPruneSchema(_Answer):
    containers = _containers()
    networks = _networks()
    volumes = _volumes(required=False)
    images = _images()
    images_deleted = _records()
    build_cache = fields.Nested(BuildCachePruneSchema, required=True)
