"""POST /hooks/{name}: the hook's name in the path and the `async` query."""

from __future__ import annotations

from marshmallow import fields

from moorage.schemas.common import StrictSchema
from moorage.schemas.fields import matches

HOOK_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}"
HOOK_NAME_RULE = "letters, digits, _ . - (at most 64)"


class HookRef(StrictSchema):
    name = fields.String(required=True, validate=matches(HOOK_NAME, HOOK_NAME_RULE))


class HookQuery(StrictSchema):
    run_async = fields.Boolean(data_key="async", load_default=False)
