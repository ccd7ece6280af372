"""Volume schemas: the list query, the create body, the delete query, and the engine's volume in moorage's shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields, validate

from moorage.containers.model import VOLUME_NAME
from moorage.schemas.common import PageQuery, StrictSchema, docker_time
from moorage.schemas.containers import LABEL_FILTER
from moorage.schemas.create import text_map
from moorage.schemas.fields import Text, matches

VOLUME_NAME_RULE = "letters, digits, _ . - (two or more, starting with a letter or digit)"
_DRIVER = matches(r"[a-zA-Z0-9][a-zA-Z0-9_.:/-]{0,127}", "a driver name: letters, digits, _ . : / -")
MAX_DRIVER_OPTS = 64


class VolumeListQuery(PageQuery):
    name = fields.String(validate=matches(r"[a-zA-Z0-9_.-]{1,128}", "letters, digits, _ . - only (a part of a name)"))
    label = fields.List(fields.String(validate=LABEL_FILTER))
    dangling = fields.Boolean(metadata={"description": "true: used by no container; false: used by one at least"})
    driver = fields.String(validate=_DRIVER)


class VolumeRef(StrictSchema):
    """A volume name in the path; anything else never reaches the engine's URL."""

    name = fields.String(required=True, validate=matches(VOLUME_NAME, f"not a volume name: {VOLUME_NAME_RULE}"))


class VolumeDetailQuery(StrictSchema):
    size = fields.Boolean(load_default=False, metadata={"description": "also the size on disk (the engine walks it)"})


class VolumeDeleteQuery(StrictSchema):
    force = fields.Boolean(
        load_default=False, metadata={"description": "as `docker volume rm -f`; a volume in use is never removed"}
    )


def _with_default(field: fields.Dict) -> fields.Dict:
    """An object field that is `{}` when left out."""
    field.load_default = dict
    return field


class VolumeCreateSchema(StrictSchema):
    name = Text(required=True, validate=matches(VOLUME_NAME, f"not a volume name: {VOLUME_NAME_RULE}"))
    labels = _with_default(text_map(validate.Length(min=1)))
    driver = Text(load_default="local", validate=_DRIVER)
    driver_opts = _with_default(text_map(validate.Length(min=1), MAX_DRIVER_OPTS))


def volume(v: Mapping[str, Any]) -> dict[str, Any]:
    """One volume from the engine's list or inspect payload (VolumeSummarySchema is its contract)."""
    return {
        "name": v["Name"],
        "driver": v["Driver"],
        "mountpoint": v["Mountpoint"],
        "created_at": docker_time(v.get("CreatedAt")),
        "scope": v["Scope"],
        "labels": v.get("Labels") or {},
        "options": v.get("Options") or {},
    }


class VolumeSummarySchema(Schema):
    """An item of `GET /volumes`."""

    name = fields.String(required=True)
    driver = fields.String(required=True)
    mountpoint = fields.String(required=True)
    created_at = fields.DateTime(required=True, allow_none=True)
    scope = fields.String(required=True, metadata={"description": "local or global"})
    labels = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    options = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class VolumeUserSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)


class VolumeDetailSchema(VolumeSummarySchema):
    """`GET /volumes/{name}`: the volume, who mounts it, and its size when asked."""

    containers = fields.List(fields.Nested(VolumeUserSchema), required=True)
    size = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "bytes, with ?size=true (null otherwise, or when the driver does not tell)"},
    )
