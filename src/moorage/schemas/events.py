"""An engine event in moorage's shape."""

from __future__ import annotations

from marshmallow import Schema, fields

from .common import DockerTime

_TEXT = {"type": ["string", "null"]}


class EventSchema(Schema):
    type = fields.String(attribute="Type")
    action = fields.String(attribute="Action")
    # Typed for the document: apispec cannot see what a function returns.
    id = fields.Function(lambda e: (e.get("Actor") or {}).get("ID"), metadata=_TEXT)
    name = fields.Function(lambda e: ((e.get("Actor") or {}).get("Attributes") or {}).get("name"), metadata=_TEXT)
    time = DockerTime(attribute="time")
    time_nano = fields.Integer(attribute="timeNano")
