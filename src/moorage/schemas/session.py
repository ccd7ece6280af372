"""GET /containers/{id}/exec/ws: the session's query, and the control frames a client sends."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import ValidationError, fields, post_load, validate

from moorage.containers.session import SessionRequest
from moorage.schemas.common import StrictSchema
from moorage.schemas.create import USER, USER_RULE
from moorage.schemas.fields import MAX_COMMAND_TEXT, Argv, JsonSchema, Text, absolute_path, matches

# A terminal's columns and rows, as the engine's resize takes them (Go uint16s; 0 would be no size).
_TERMINAL_SIDE = validate.Range(1, 65535)


class CommandLine(Argv):
    """The program and its arguments in one query parameter, split as a shell would (`sh -c 'echo hi'`); it is
    run as split, with no shell around it."""

    json_schema: ClassVar[JsonSchema] = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_COMMAND_TEXT,
        "description": "split as a shell would: `sh`, `bash -l`, `sh -c 'top -b'`",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        argv = super()._deserialize(value, attr, data, **kwargs)
        if not argv or not argv[0]:
            raise ValidationError("the program to run, then its arguments: not empty")
        return argv


class SessionQuery(StrictSchema):
    command = CommandLine(required=True)
    tty = fields.Boolean(load_default=True, metadata={"description": "a terminal: stdout and stderr as one stream"})
    user = Text(validate=matches(USER, USER_RULE))
    working_dir = Text(validate=absolute_path)

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> SessionRequest:
        return SessionRequest(**data)


class ControlFrame(StrictSchema):
    """A text frame from the client: `{"resize": [cols, rows]}`."""

    resize = fields.List(
        fields.Integer(strict=True, validate=_TERMINAL_SIDE), required=True, validate=validate.Length(equal=2)
    )


def terminal_size(frame: Any) -> tuple[int, int]:
    """The (cols, rows) of a control frame, or a ValidationError naming its field."""
    if not isinstance(frame, dict):
        raise ValidationError({"frame": ['a JSON object: {"resize": [cols, rows]}']})
    cols, rows = ControlFrame().load(frame)["resize"]
    return cols, rows
