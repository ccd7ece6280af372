"""Token schemas: the issue request and the revocation path."""

from __future__ import annotations

from marshmallow import fields, validate

from moorage.schemas.common import StrictSchema
from moorage.schemas.fields import matches
from moorage.settings import Permission, Role


class TokenRequest(StrictSchema):
    role = fields.Enum(Role, by_value=True)
    # A subset of the key's permissions (and of the role's bundle when a role is asked for too).
    permissions = fields.List(fields.Enum(Permission, by_value=True), validate=validate.Length(min=1))
    ttl = fields.Integer(strict=True, validate=validate.Range(min=1))


class TokenRef(StrictSchema):
    jti = fields.String(required=True, validate=matches(r"[0-9a-f]{32}", "not a token id"))
