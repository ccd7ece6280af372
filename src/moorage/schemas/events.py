"""An engine event in moorage's shape, and the lines every NDJSON stream of logs or events may carry."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from moorage.schemas.common import DockerTime

_TEXT = {"type": ["string", "null"]}


class EventSchema(Schema):
    type = fields.String(attribute="Type")
    action = fields.String(attribute="Action")
    # Typed for the document: apispec cannot see what a function returns.
    id = fields.Function(lambda e: (e.get("Actor") or {}).get("ID"), metadata=_TEXT)
    name = fields.Function(lambda e: ((e.get("Actor") or {}).get("Attributes") or {}).get("name"), metadata=_TEXT)
    time = DockerTime(attribute="time")
    time_nano = fields.Integer(attribute="timeNano")


class HeartbeatSchema(Schema):
    """Written when a stream had nothing to send for [server] heartbeat_seconds: a proxy's read timeout
    does not cut it, and a reader can tell a quiet stream from a dead one."""

    heartbeat = fields.String(required=True, metadata={"format": "date-time"})


END_REASONS = ("container_stopped", "container_removed", "done", "shutdown", "engine_gone")


class StreamEndSchema(Schema):
    """The last line of a log or event stream: why it ended. `exit_code` comes with container_stopped,
    `message` with engine_gone."""

    end = fields.String(required=True, validate=validate.OneOf(END_REASONS))
    exit_code = fields.Integer(allow_none=True)
    message = fields.String()
