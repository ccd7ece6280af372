"""The query of /containers/{id}/files (a path in the container, a single file's name) and what an upload wrote."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate

from moorage.containers.files import container_path
from moorage.schemas.common import StrictSchema
from moorage.schemas.fields import JsonSchema, valid_text

_PATH_RULE = "an absolute path in the container, without a '..' component"
_NAME_RULE = "a file name: no '/', not '.' or '..'"


class ContainerPath(fields.String):
    """An absolute path in the container, normalized; `..` is refused rather than resolved (container_path)."""

    json_schema: ClassVar[JsonSchema] = {
        "type": "string",
        "pattern": r"^/[^\x00]*$",
        "maxLength": 4096,
        "description": _PATH_RULE,
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = valid_text(value)
        if len(text) > 4096:
            raise ValidationError("must be at most 4096 characters")
        try:
            return container_path(text)
        except ValueError as err:
            raise ValidationError(str(err)) from None


def _file_name(value: str) -> None:
    if "/" in value or value in (".", ".."):
        raise ValidationError(_NAME_RULE)


class FilesQuery(StrictSchema):
    path = ContainerPath(required=True)


class FilesPutQuery(FilesQuery):
    name = fields.String(
        validate=[validate.Length(1, 255), _file_name, valid_text],
        metadata={"description": "the name of the single file an application/octet-stream body is, in `path`"},
    )


class WrittenSchema(Schema):
    path = fields.String(required=True, metadata={"description": "the directory written into, as resolved"})
    entries = fields.Integer(required=True, metadata={"description": "tar entries written (1 for a single file)"})
    bytes = fields.Integer(required=True, metadata={"description": "bytes of the regular files written"})
