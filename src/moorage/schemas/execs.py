"""POST /containers/{id}/exec: the command, its limits, and the answer."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate

from moorage.containers.execs import ExecRequest
from moorage.errors import BadRequest, FieldError
from moorage.schemas.common import StrictSchema
from moorage.schemas.create import ENV_NAME, USER, USER_RULE, text_map
from moorage.schemas.fields import MAX_ARGS, MAX_COMMAND_TEXT, JsonSchema, Text, absolute_path, arguments, matches
from moorage.settings import ExecSettings

ENCODINGS = ("utf-8", "base64")
DEFAULT_TIMEOUT = 60.0  # seconds
DEFAULT_OUTPUT = 1024 * 1024  # bytes
# What one exec's stdin may hold: a script, a config, not an upload (PUT /files takes those).
MAX_STDIN = 1024 * 1024


class ExecCommand(fields.Field[tuple[str, ...]]):
    """A list is the program and its arguments; a string is a command line for the container's `sh -c`."""

    json_schema: ClassVar[JsonSchema] = {
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": MAX_COMMAND_TEXT},
            {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_ARGS},
        ]
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            if not value.strip() or len(value) > MAX_COMMAND_TEXT:
                raise ValidationError(f"a command line of 1 to {MAX_COMMAND_TEXT} characters")
            return ("sh", "-c", value)
        argv = arguments(value)
        if not argv or not argv[0]:
            raise ValidationError("the program to run, then its arguments: not empty")
        return argv


class ExecQuery(StrictSchema):
    stream = fields.Boolean(load_default=False)


class ExecBody(StrictSchema):
    """The limits' maxima are the config's ([exec] max_timeout, max_output): the handler checks them."""

    command = ExecCommand(required=True)
    environment = text_map(ENV_NAME)
    user = Text(validate=matches(USER, USER_RULE))
    working_dir = Text(validate=absolute_path)
    stdin = Text(validate=validate.Length(max=MAX_STDIN))
    timeout = fields.Float(validate=validate.Range(0.1, 86400), metadata={"description": "default 60"})
    max_output = fields.Integer(
        strict=True, validate=validate.Range(0, 1024**3), metadata={"description": "default 1 MiB"}
    )
    encoding = fields.String(load_default="utf-8", validate=validate.OneOf(ENCODINGS))


def exec_request(body: dict[str, Any], limits: ExecSettings) -> ExecRequest:
    """The loaded body within the config's maxima: a limit asked above one is a 400 naming it; one not asked is
    the default, or the maximum when that is lower."""
    found: list[FieldError] = []
    if body.get("timeout", 0) > limits.max_timeout:
        found.append({"field": "timeout", "message": f"at most [exec] max_timeout, {limits.max_timeout} s"})
    if body.get("max_output", 0) > limits.max_output:
        found.append({"field": "max_output", "message": f"at most [exec] max_output, {limits.max_output} bytes"})
    if found:
        raise BadRequest(f"invalid request body: {found[0]['field']}", errors=found)
    stdin = body.get("stdin")
    return ExecRequest(
        command=body["command"],
        environment=body.get("environment", {}),
        user=body.get("user"),
        working_dir=body.get("working_dir"),
        stdin=None if stdin is None else stdin.encode(),
        timeout=body.get("timeout", min(DEFAULT_TIMEOUT, limits.max_timeout)),
        max_output=body.get("max_output", min(DEFAULT_OUTPUT, limits.max_output)),
    )


class ExecResultSchema(Schema):
    exit_code = fields.Integer(required=True, allow_none=True, metadata={"description": "null: it could not be told"})
    stdout = fields.String(required=True)
    stderr = fields.String(required=True)
    encoding = fields.String(required=True, validate=validate.OneOf(ENCODINGS))
    truncated = fields.Boolean(required=True, metadata={"description": "output past max_output was dropped"})
    timed_out = fields.Boolean(required=True, metadata={"description": "killed when its timeout passed"})
    duration = fields.Float(required=True, metadata={"description": "seconds"})


class ExecLineSchema(Schema):
    stream = fields.String(required=True, validate=validate.OneOf(("stdout", "stderr")))
    line = fields.String(required=True)


class ExecEndSchema(Schema):
    """The last line of a streamed exec."""

    exit_code = fields.Integer(required=True, allow_none=True)
    timed_out = fields.Boolean(required=True)
    duration = fields.Float(required=True)
