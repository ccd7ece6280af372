"""Token schemas: the issue request and the revocation path."""

from __future__ import annotations

from marshmallow import fields, validate

from moorage.schemas.common import StrictSchema
from moorage.schemas.fields import matches, name_glob, selector_text
from moorage.settings import Permission, Role


class TokenRequest(StrictSchema):
    role = fields.Enum(Role, by_value=True)
    # A subset of the key's permissions (and of the role's bundle when a role is asked for too).
    permissions = fields.List(fields.Enum(Permission, by_value=True), validate=validate.Length(min=1))
    ttl = fields.Integer(strict=True, validate=validate.Range(min=1))
    # Added to the key's own scope: the token sees what both admit.
    selector = fields.String(validate=selector_text)
    names = fields.List(fields.String(validate=name_glob), validate=validate.Length(min=1, max=64))


class TokenRef(StrictSchema):
    jti = fields.String(required=True, validate=matches(r"[0-9a-f]{32}", "not a token id"))
