"""An engine event in moorage's shape, and the lines every NDJSON stream of logs or events may carry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields, validate

from moorage.engine.shapes import event_labels
from moorage.schemas.common import docker_time
from moorage.schemas.containers import REDACTED

# The objects whose events carry their labels among the attributes (a volume's and a network's do not).
_LABELLED = ("container", "image")


def event_item(event: Mapping[str, Any]) -> dict[str, Any]:
    """One engine event in moorage's shape: the action without what the engine writes after its colon
    (`health_status: healthy`, `exec_start: sh -c ...`), which becomes `health` or `command`; a `die`'s exit
    code. Built by hand, as a list item is: a busy host sends thousands a second. EventSchema is its contract."""
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    kind = event.get("Type")
    action, _, said = (event.get("Action") or "").partition(":")
    item = {
        "type": kind,
        "action": action,
        "id": actor.get("ID"),
        "name": attributes.get("name"),
        "image": attributes.get("image") if kind == "container" else None,
        "labels": event_labels(attributes) if kind in _LABELLED else None,
        "time": docker_time(event.get("time")),
        "time_nano": event.get("timeNano"),
        "redacted": [],
    }
    if action == "health_status":
        item["health"] = said.strip()
    elif said:
        item["command"] = said.strip()
    if action == "die" and (code := attributes.get("exitCode", "")).lstrip("-").isdigit():
        item["exit_code"] = int(code)
    return item


class EventSchema(Schema):
    type = fields.String(required=True, metadata={"description": "container, image, volume, network"})
    action = fields.String(required=True, metadata={"description": "the engine's, up to its colon: health_status"})
    id = fields.String(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True)
    image = fields.String(required=True, allow_none=True, metadata={"description": "a container's image"})
    labels = fields.Dict(
        keys=fields.String(),
        values=fields.String(allow_none=True),
        required=True,
        allow_none=True,
        metadata={"description": "a container's or image's; null for volumes and networks, whose events lack them"},
    )
    time = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    time_nano = fields.Integer(required=True, allow_none=True)
    health = fields.String(metadata={"description": "health_status only: starting, healthy, unhealthy"})
    command = fields.String(metadata={"description": "exec_create and exec_start only: the command"})
    exit_code = fields.Integer(metadata={"description": "die only"})
    redacted = REDACTED


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
