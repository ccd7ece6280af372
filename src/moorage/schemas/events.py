"""An engine event in moorage's shape."""

from __future__ import annotations

from marshmallow import Schema, fields

from .common import DockerTime


class EventSchema(Schema):
    type = fields.String(attribute="Type")
    action = fields.String(attribute="Action")
    id = fields.Function(lambda e: (e.get("Actor") or {}).get("ID"))
    name = fields.Function(lambda e: ((e.get("Actor") or {}).get("Attributes") or {}).get("name"))
    time = DockerTime(attribute="time")
    time_nano = fields.Integer(attribute="timeNano")
