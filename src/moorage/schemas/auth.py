"""Token schemas: the issue request and the revocation path."""

from __future__ import annotations

from marshmallow import fields, validate

from moorage.schemas.common import StrictSchema
from moorage.schemas.fields import matches
from moorage.settings import Role


class TokenRequest(StrictSchema):
    role = fields.Enum(Role, by_value=True)
    ttl = fields.Integer(strict=True, validate=validate.Range(min=1))


class TokenRef(StrictSchema):
    jti = fields.String(required=True, validate=matches(r"[0-9a-f]{32}", "not a token id"))
