"""`[[hooks]]` of config.toml: a deploy hook, the container it recreates and the secret its calls are signed with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate

from moorage.containers.model import PullPolicy
from moorage.containers.recreate import WaitFor
from moorage.schemas.common import StrictSchema
from moorage.schemas.containers import CONTAINER_NAME, CONTAINER_NAME_RULE
from moorage.schemas.fields import matches
from moorage.schemas.hooks import HOOK_NAME, HOOK_NAME_RULE
from moorage.schemas.recreate import MAX_RECREATE_WAIT
from moorage.settings import Hook

# GitHub's and Gitea's advice: a secret long enough that its HMAC cannot be guessed.
MIN_SECRET_BYTES = 16


class HookSchema(StrictSchema):
    name = fields.String(required=True, validate=matches(HOOK_NAME, HOOK_NAME_RULE))
    container = fields.String(required=True, validate=matches(CONTAINER_NAME, CONTAINER_NAME_RULE))
    secret_file = fields.String(required=True)
    pull = fields.String(load_default=PullPolicy.ALWAYS.value, validate=validate.OneOf([p.value for p in PullPolicy]))
    wait = fields.String(load_default=WaitFor.RUNNING.value, validate=validate.OneOf([w.value for w in WaitFor]))
    timeout = fields.Integer(strict=True, load_default=60, validate=validate.Range(1, MAX_RECREATE_WAIT))

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> Hook:
        try:
            secret = Path(data.pop("secret_file")).read_bytes().rstrip(b"\r\n")
        except OSError as err:
            raise ValidationError(f"cannot read: {err.strerror}", "secret_file") from None
        if len(secret) < MIN_SECRET_BYTES:
            raise ValidationError(f"the secret must be at least {MIN_SECRET_BYTES} bytes", "secret_file")
        return Hook(secret=secret, **data)
