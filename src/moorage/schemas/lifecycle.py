"""Query schemas of the lifecycle actions: stop/restart timeouts, kill signals, delete options."""

from __future__ import annotations

import signal
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validate

from .common import RequestSchema
from .fields import JsonSchema

_SIGNAL_NAMES = {sig.name for sig in signal.Signals}
MAX_SIGNAL = 64  # Linux's SIGRTMAX


class Signal(fields.Field):
    """A signal as `docker kill --signal` takes it: KILL, SIGKILL, sigkill or a number; dumped as the engine's form."""

    json_schema: ClassVar[JsonSchema] = {
        "type": "string",
        "description": "a signal name, with or without SIG, in any case; or its number",
        "anyOf": [
            {"enum": sorted(_SIGNAL_NAMES | {name.removeprefix("SIG") for name in _SIGNAL_NAMES})},
            {"pattern": "^(?:[1-9]|[1-5][0-9]|6[0-4])$"},
        ],
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = str(value).strip().upper()
        if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_SIGNAL:
            return text
        name = text if text.startswith("SIG") else f"SIG{text}"
        if name not in _SIGNAL_NAMES:
            raise ValidationError("not a signal name (e.g. SIGTERM, HUP) or number 1..64")
        return name


class StopQuery(RequestSchema):
    timeout = fields.Integer(load_default=10, validate=validate.Range(0, 3600))


class KillQuery(RequestSchema):
    signal = Signal(load_default="SIGKILL")


class DeleteQuery(RequestSchema):
    force = fields.Boolean(load_default=False)
    volumes = fields.Boolean(load_default=False)


class NoQuery(RequestSchema):
    """Actions without parameters still refuse unknown ones, so a typo is not silently ignored."""
