"""`[[registries]]` of config.toml: a registry's credentials, the password given or read from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marshmallow import ValidationError, fields, post_load, validates_schema

from moorage.images.references import DOMAIN
from moorage.schemas.common import StrictSchema
from moorage.schemas.fields import matches
from moorage.settings import Registry


class RegistrySchema(StrictSchema):
    host = fields.String(
        required=True, validate=matches(DOMAIN, "a registry host[:port], e.g. registry.example.com:5000")
    )
    username = fields.String(required=True, validate=matches(r"[^\x00-\x1f]{1,255}", "1 to 255 printable characters"))
    password = fields.String()
    password_file = fields.String()

    @validates_schema
    def one_password(self, data: dict[str, Any], **_: Any) -> None:
        if ("password" in data) == ("password_file" in data):
            raise ValidationError("give exactly one of password and password_file", "password")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> Registry:
        password = data.get("password")
        if password is None:
            try:
                password = Path(data["password_file"]).read_text().rstrip("\n")
            except OSError as err:
                raise ValidationError(f"cannot read: {err.strerror}", "password_file") from None
        return Registry(host=data["host"], username=data["username"], password=password)
