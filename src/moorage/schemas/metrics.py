"""Metrics schemas: the host sample in the API reference's shape (its keys first), and the history query."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from moorage.metrics.history import SERIES
from moorage.schemas.common import EpochTime, StrictSchema
from moorage.timestamps import rfc3339


def _first_disk_percent(sample: dict[str, Any]) -> float | None:
    disks = sample.get("disks") or {}
    disk = disks.get("/") or next(iter(disks.values()), None)
    return disk["percent"] if disk else None


# The types of computed and passed-through fields, for the document: apispec cannot see them.
_PERCENT = {"type": ["number", "null"]}
_OBJECT = {"type": "object"}


class HostResourcesSchema(Schema):
    """A host sample. Percent fields are 0-100 (cpu over all cores), sizes in bytes, rates per second."""

    cpu_usage = fields.Function(lambda s: (s.get("cpu") or {}).get("percent"), metadata=_PERCENT)
    memory_usage = fields.Function(lambda s: (s.get("memory") or {}).get("percent"), metadata=_PERCENT)
    disk_usage = fields.Function(_first_disk_percent, metadata=_PERCENT)
    network = fields.Raw(attribute="network", metadata=_OBJECT)
    cpu = fields.Raw(attribute="cpu", metadata=_OBJECT)
    memory = fields.Raw(attribute="memory", metadata=_OBJECT)
    swap = fields.Raw(attribute="swap", metadata=_OBJECT)
    disks = fields.Raw(attribute="disks", metadata=_OBJECT)
    load_average = fields.Raw(attribute="load_average", metadata={"type": "array", "items": {"type": "number"}})
    uptime_seconds = fields.Raw(attribute="uptime_seconds", metadata={"type": "number"})
    sampled_at = EpochTime(milliseconds=True)
    age_seconds = fields.Float(attribute="age_seconds")
    stale = fields.Boolean(attribute="stale")


class ContainerMetricsSchema(Schema):
    """A container's latest reading: cpu_percent as `docker stats` shows it (100 per busy core), bytes."""

    id = fields.String()
    name = fields.String()
    status = fields.String()
    cpu_percent = fields.Float()
    online_cpus = fields.Integer()
    memory = fields.Raw(metadata=_OBJECT)
    network = fields.Raw(metadata=_OBJECT)
    block_io = fields.Raw(metadata=_OBJECT)
    pids = fields.Integer()
    sampled_at = EpochTime(milliseconds=True)
    age_seconds = fields.Float()


class HistoryQuery(StrictSchema):
    seconds = fields.Float(load_default=60.0, validate=validate.Range(min=0, max=86400, min_inclusive=False))


_STAT = {"type": ["object", "null"], "properties": {k: {"type": "number"} for k in ("min", "avg", "max")}}
_POINT = {
    "type": "object",
    "properties": {"at": EpochTime.json_schema, **dict.fromkeys(SERIES, _STAT)},
    "description": "A bucket's start, and the min, mean and max of each series' readings in it (null: none)",
}


def _points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points as the API writes them, built in Python rather than by a nested schema: a week of 200 containers is
    hundreds of thousands of points."""
    return [
        {
            "at": rfc3339(point["at"]),
            **{
                series: None if (stat := point[series]) is None else {k: round(v, 2) for k, v in stat.items()}
                for series in SERIES
            },
        }
        for point in points
    ]


class ContainerHistorySchema(Schema):
    """A container's history: cpu_percent as `docker stats` shows it, memory_bytes its working set, the rest in
    bytes per second."""

    id = fields.String()
    name = fields.String()
    seconds = fields.Float(metadata={"description": "what the points cover: at most the coarsest tier's span"})
    step = fields.Float(metadata={"description": "seconds per point: the tier's step, or a multiple of it"})
    points = fields.Function(lambda h: _points(h["points"]), metadata={"type": "array", "items": _POINT})


class ContainerHistoryQuery(StrictSchema):
    seconds = fields.Float(load_default=900.0, validate=validate.Range(min=0, max=10**8, min_inclusive=False))
    step = fields.Float(load_default=None, validate=validate.Range(min=1, max=10**7))
