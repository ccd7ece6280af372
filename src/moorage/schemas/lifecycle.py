"""Query and body schemas of the lifecycle actions: stop/restart timeouts, kill signals, delete options, waits
and renames."""

from __future__ import annotations

import signal
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validate

from moorage.schemas.common import StrictSchema
from moorage.schemas.containers import CONTAINER_NAME, CONTAINER_NAME_RULE
from moorage.schemas.fields import WHITESPACE, JsonSchema, Text, matches

_SIGNAL_NAMES = {sig.name for sig in signal.Signals}
MAX_SIGNAL = 64  # Linux's SIGRTMAX


def _any_case(word: str) -> str:
    """`word` in any case, in the syntax Python and ECMA-262 read alike (no inline flags in JSON Schema)."""
    return "".join(f"[{ch.upper()}{ch.lower()}]" if ch.isalpha() else ch for ch in word)


_NAMES = "|".join(_any_case(name.removeprefix("SIG")) for name in sorted(_SIGNAL_NAMES))
# What Signal takes, surrounding whitespace (str.strip's) included: a name with or without SIG, or 1..64.
_SIGNAL_PATTERN = (
    f"^[{WHITESPACE}]*(?:(?:{_any_case('SIG')})?(?:{_NAMES})|0*(?:[1-9]|[1-5][0-9]|6[0-4]))[{WHITESPACE}]*$"
)


class Signal(fields.Field):
    """A signal as `docker kill --signal` takes it: KILL, SIGKILL, sigkill or a number; dumped as the engine's form."""

    json_schema: ClassVar[JsonSchema] = {
        "type": "string",
        "description": "a signal name, with or without SIG, in any case; or its number",
        "pattern": _SIGNAL_PATTERN,
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = str(value).strip().upper()
        if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_SIGNAL:
            return text
        name = text if text.startswith("SIG") else f"SIG{text}"
        if name not in _SIGNAL_NAMES:
            raise ValidationError("not a signal name (e.g. SIGTERM, HUP) or number 1..64")
        return name


class StopQuery(StrictSchema):
    timeout = fields.Integer(load_default=10, validate=validate.Range(0, 3600))


class KillQuery(StrictSchema):
    signal = Signal(load_default="SIGKILL")


class DeleteQuery(StrictSchema):
    force = fields.Boolean(load_default=False)
    volumes = fields.Boolean(load_default=False)


class NoQuery(StrictSchema):
    """Actions without parameters still refuse unknown ones, so a typo is not silently ignored."""


# What `docker wait --condition` and the engine take.
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
MAX_WAIT = 86400  # seconds


class WaitQuery(StrictSchema):
    condition = fields.String(load_default="not-running", validate=validate.OneOf(WAIT_CONDITIONS))
    timeout = fields.Integer(load_default=300, validate=validate.Range(1, MAX_WAIT))


class WaitedSchema(StrictSchema):
    exit_code = fields.Integer(required=True)
    condition = fields.String(required=True, validate=validate.OneOf(WAIT_CONDITIONS))


class RenameBody(StrictSchema):
    name = Text(required=True, validate=matches(CONTAINER_NAME, CONTAINER_NAME_RULE))
