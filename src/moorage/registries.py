"""Private registries: `[[registries]]` credentials, sent to the engine for the matching host only.

The password never leaves this module's dataclass except in the X-Registry-Auth header that
aiodocker builds for the engine; repr hides it, so a logged settings object does not show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiodocker.utils import compose_auth_header
from marshmallow import ValidationError, fields, post_load, validates_schema

from .schemas.common import StrictSchema
from .schemas.fields import matches
from .schemas.references import DOMAIN, registry_host


@dataclass(frozen=True)
class Registry:
    host: str
    username: str
    password: str = field(repr=False)

    def auth_header(self) -> str:
        """The engine's X-Registry-Auth value for a pull from this registry."""
        return compose_auth_header({"username": self.username, "password": self.password}, self.host)


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


def credentials_for(name: str, registries: Iterable[Registry]) -> Registry | None:
    """The configured credentials for the registry a repository name points at, if any."""
    host = registry_host(name)
    return next((registry for registry in registries if registry.host == host), None)
