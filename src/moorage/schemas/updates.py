"""The answer of an image-update check."""

from __future__ import annotations

from marshmallow import Schema, fields


class ImageUpdateSchema(Schema):
    image = fields.String(required=True, metadata={"description": "the container's reference, with its tag"})
    local_digest = fields.String(
        required=True, allow_none=True, metadata={"description": "the registry's digest of the image it runs"}
    )
    remote_digest = fields.String(required=True, metadata={"description": "the registry's digest for the tag now"})
    update_available = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={"description": "null: the image never came from that registry, so its build cannot be told"},
    )
    checked_at = fields.String(required=True, metadata={"format": "date-time"})


class ItemErrorSchema(Schema):
    code = fields.Integer(required=True, metadata={"description": "the HTTP status this check alone would answer"})
    message = fields.String(required=True)


class ImageUpdateItemSchema(Schema):
    """One container of the list: its check, or why it could not be checked (the other is null)."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    check = fields.Nested(ImageUpdateSchema, required=True, allow_none=True)
    error = fields.Nested(ItemErrorSchema, required=True, allow_none=True)
