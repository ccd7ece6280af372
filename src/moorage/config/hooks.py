"""`[[hooks]]` of config.toml: a deploy hook, the container it recreates and the secret its calls are signed with."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, post_load, validate

from moorage.config.secrets import secret_from_file
from moorage.containers.model import PullPolicy
from moorage.containers.recreate import WaitFor
from moorage.schemas.common import StrictSchema
from moorage.schemas.containers import CONTAINER_NAME, CONTAINER_NAME_RULE
from moorage.schemas.fields import matches
from moorage.schemas.hooks import HOOK_NAME, HOOK_NAME_RULE
from moorage.schemas.recreate import MAX_RECREATE_WAIT
from moorage.settings import Hook


class HookSchema(StrictSchema):
    name = fields.String(required=True, validate=matches(HOOK_NAME, HOOK_NAME_RULE))
    container = fields.String(required=True, validate=matches(CONTAINER_NAME, CONTAINER_NAME_RULE))
    secret_file = fields.String(required=True)
    pull = fields.String(load_default=PullPolicy.ALWAYS.value, validate=validate.OneOf([p.value for p in PullPolicy]))
    wait = fields.String(load_default=WaitFor.RUNNING.value, validate=validate.OneOf([w.value for w in WaitFor]))
    timeout = fields.Integer(strict=True, load_default=60, validate=validate.Range(1, MAX_RECREATE_WAIT))

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> Hook:
        return Hook(secret=secret_from_file(data.pop("secret_file")), **data)
