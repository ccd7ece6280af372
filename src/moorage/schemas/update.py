"""PATCH /containers/{id}: what the engine changes on a live container, in the create body's forms."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, post_load, validates_schema

from moorage.containers.model import ContainerUpdate
from moorage.schemas.create import ContainerLimits


class ContainerUpdateSchema(ContainerLimits):
    @validates_schema
    def something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError(f"give at least one of {', '.join(sorted(self.fields))}", "body")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> ContainerUpdate:
        return ContainerUpdate(**data)
