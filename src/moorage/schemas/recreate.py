"""POST /containers/{id}/recreate: its options, its answer, and the old container's settings loaded as a create."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate

from moorage.containers.model import CreateRequest, PullPolicy
from moorage.containers.recreate import RecreateOptions, WaitFor
from moorage.errors import Conflict, flatten_errors
from moorage.schemas.common import StrictSchema
from moorage.schemas.containers import ContainerDetailSchema
from moorage.schemas.create import ContainerCreateSchema
from moorage.schemas.fields import StrictBool, Text
from moorage.schemas.policy import DryRunQuery
from moorage.schemas.references import reference

MAX_RECREATE_WAIT = 3600  # seconds
STEPS = ("inspected", "pulled", "created", "old_stopped", "new_started", "running", "healthy", "old_removed",
         "old_kept", "renamed", "failed", "new_removed", "old_started")  # fmt: skip


class RecreateQuery(DryRunQuery):
    stream = fields.Boolean(load_default=False)


class RecreateBody(StrictSchema):
    """All optional: an empty body recreates from the same reference, pulled if missing, and waits until it runs."""

    pull = fields.Enum(PullPolicy, by_value=True, load_default=PullPolicy.MISSING)
    image = Text(validate=reference)
    wait = fields.Enum(WaitFor, by_value=True, load_default=WaitFor.RUNNING)
    timeout = fields.Integer(strict=True, load_default=60, validate=validate.Range(1, MAX_RECREATE_WAIT))
    keep_old = StrictBool(load_default=False)

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> RecreateOptions:
        return RecreateOptions(**data)


class StepSchema(Schema):
    """One step of a recreate; which of the other fields it has depends on the step."""

    step = fields.String(required=True, validate=validate.OneOf(STEPS))
    at = fields.String(required=True)
    elapsed = fields.Float(required=True, metadata={"description": "seconds since the recreate began"})
    id = fields.String(metadata={"description": "the container the step acted on"})
    name = fields.String()
    image = fields.String()
    image_id = fields.String()
    digest = fields.String(allow_none=True, metadata={"description": "the registry's digest of the image pulled"})
    pull = fields.String()
    was_running = fields.Boolean()
    after = fields.Float(metadata={"description": "seconds from new_started to running or healthy"})
    reason = fields.String(metadata={"description": "why the recreate failed"})


class KeptSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)


class RecreatedSchema(Schema):
    container = fields.Nested(ContainerDetailSchema, required=True)
    old_id = fields.String(required=True)
    kept_old = fields.Nested(KeptSchema, allow_none=True, required=True)
    timeline = fields.List(fields.Nested(StepSchema), required=True)


class RecreateEndSchema(Schema):
    """The last line of a streamed recreate: `result` as the 200's data when done; when failed, the error
    envelope's fields as a plain call would have them; `shutdown` or `engine_gone` when moorage could not tell."""

    end = fields.String(required=True, validate=validate.OneOf(("done", "failed", "shutdown", "engine_gone")))
    result = fields.Nested(RecreatedSchema)
    code = fields.Integer()
    message = fields.String()
    errors = fields.List(fields.Dict())
    data = fields.Dict(allow_none=True)


def rebuilt_request(body: Mapping[str, Any], container: str) -> CreateRequest:
    """The old container's settings, as rebuilt, loaded as a create body is: a value the create would refuse is
    one the recreate cannot carry over (409 naming it), not the caller's error."""
    try:
        return ContainerCreateSchema().load(body)
    except ValidationError as err:
        found = flatten_errors(err.messages)
        fields = ", ".join(item["field"] for item in found)
        raise Conflict(f"container {container} has settings a create cannot take: {fields}", errors=found) from err
