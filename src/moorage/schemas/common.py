"""Fields and helpers shared by the resource schemas."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from moorage.schemas.fields import JsonSchema
from moorage.timestamps import rfc3339

# Docker writes this for "never" (a container that has not started or finished yet).
_DOCKER_ZERO_TIME = "0001-01-01T"


class StrictSchema(Schema):
    """What moorage reads from callers and from its config is strict: a field it does not know is an error, not
    silently dropped (a typo must never widen a listing or leave a setting at its default)."""

    class Meta:
        unknown = RAISE


class PageQuery(StrictSchema):
    """limit/offset paging, applied by moorage after the engine filtered (Docker's limit is not a page)."""

    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


def docker_time(value: int | float | str | None) -> str | None:
    """Unix seconds (list payloads) or Docker's nanosecond RFC 3339 (inspect) as RFC 3339 UTC seconds.

    The common forms take a string operation, not datetime: a 500-container list calls this 500 times.
    """
    if value is None or value == "" or (isinstance(value, str) and value.startswith(_DOCKER_ZERO_TIME)):
        return None
    if isinstance(value, (int, float)):
        return time.strftime(_UTC_SECONDS, time.gmtime(value))
    if value.endswith("Z") and value[_SECONDS_LENGTH : _SECONDS_LENGTH + 1] in (".", "Z"):
        return value[:_SECONDS_LENGTH] + "Z"  # "2026-11-24T10:59:13.123456789Z", as engines write it
    # Python parses at most microseconds: cut Docker's nanoseconds before the zone.
    head, dot, tail = value.partition(".")
    if dot:
        zone_at = next((i for i, ch in enumerate(tail) if ch in "Z+-"), len(tail))
        value = head + tail[zone_at:]
    return rfc3339(datetime.fromisoformat(value))


_UTC_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
_SECONDS_LENGTH = len("2026-11-24T10:59:13")


class DockerTime(fields.Field):
    """Dumps an engine timestamp (either form) as RFC 3339 UTC with a Z, or null for Docker's zero time."""

    json_schema: ClassVar[JsonSchema] = {"type": ["string", "null"], "format": "date-time"}

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return docker_time(value)


class EpochTime(fields.Field):
    """Dumps Unix seconds as RFC 3339 UTC with a Z: to the second, or to the millisecond for what comes more than
    once a second (samples); null for none."""

    json_schema: ClassVar[JsonSchema] = {"type": "string", "format": "date-time"}

    def __init__(self, *, milliseconds: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.milliseconds = milliseconds

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else rfc3339(value, milliseconds=self.milliseconds)


class KeyedDict(fields.Dict):
    """A Dict whose errors are keyed by the entry, `ports.80/tcp`, not marshmallow's `ports.80/tcp.value`; with
    `max_entries`, a longer one is refused before any entry is loaded."""

    def __init__(self, *, max_entries: int | None = None, **kwargs: Any) -> None:
        if max_entries is not None:  # published as the object's maxProperties
            kwargs["metadata"] = {**kwargs.get("metadata", {}), "maxProperties": max_entries}
        super().__init__(**kwargs)
        self.max_entries = max_entries

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if self.max_entries is not None and isinstance(value, dict) and len(value) > self.max_entries:
            raise ValidationError(f"at most {self.max_entries} entries")
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as err:
            if not isinstance(err.messages, dict):
                raise
            keyed = {entry: problems.get("key", problems.get("value")) for entry, problems in err.messages.items()}
            raise ValidationError(keyed, valid_data=err.valid_data) from None
