"""Alerts' schemas: what fires and what fired, the webhook deliveries and their query, and a rule's name."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from moorage.schemas.common import EpochTime, StrictSchema
from moorage.schemas.fields import matches
from moorage.timestamps import rfc3339

ALERT_NAME = r"[a-z0-9][a-z0-9_.-]{0,62}"
ALERT_NAME_RULE = "1 to 63 of a-z, 0-9, _, . and -, starting with a letter or digit"
_NULLABLE_MOMENT = {"type": ["string", "null"], "format": "date-time"}


class AlertRef(StrictSchema):
    name = fields.String(required=True, validate=matches(ALERT_NAME, ALERT_NAME_RULE))


class AlertStateSchema(Schema):
    """An alert of one subject (a container's id, or `host`): firing now, or a firing or resolution of late."""

    alert = fields.String()
    status = fields.String(metadata={"enum": ["pending", "firing", "resolved"]})
    severity = fields.String()
    subject = fields.String()
    summary = fields.String()
    details = fields.Raw(metadata={"type": "object"})
    started_at = EpochTime()
    at = EpochTime()


class DeliverySchema(Schema):
    """A notification's delivery to one webhook (the outbox's row)."""

    id = fields.String(metadata={"description": "also the X-Moorage-Delivery header, the same at each attempt"})
    webhook = fields.String()
    alert = fields.Function(lambda d: d.notification.alert, metadata={"type": "string"})
    status = fields.Function(lambda d: d.notification.status, metadata={"enum": ["firing", "resolved", "test"]})
    state = fields.String(metadata={"enum": ["pending", "delivered", "expired"]})
    attempts = fields.Integer()
    last_status = fields.Integer(allow_none=True, metadata={"description": "the receiver's last HTTP status"})
    last_error = fields.String(allow_none=True)
    created_at = EpochTime()
    next_attempt_at = fields.Function(
        lambda d: rfc3339(d.next_attempt_at) if d.state == "pending" else None, metadata=_NULLABLE_MOMENT
    )
    finished_at = EpochTime(allow_none=True)


class DeliveriesQuery(StrictSchema):
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    webhook = fields.String(load_default=None, validate=matches(ALERT_NAME, ALERT_NAME_RULE))
    state = fields.String(load_default=None, validate=validate.OneOf(["pending", "delivered", "expired"]))


class TestSentSchema(Schema):
    alert = fields.String()
    deliveries = fields.List(fields.String(), metadata={"description": "one per webhook, queued on disk"})
