"""Reusable request fields and validators: whole-string patterns, text the engine can take, sizes, durations."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields

# Docker's own floor (linuxMinMemory): the engine refuses less.
MIN_MEMORY = 6 * 1024 * 1024
# The engine's counters (Memory, NanoCpus, PidsLimit, durations) are Go int64s.
INT64_MAX = 2**63 - 1

_MAX_TEXT = 4096  # PATH_MAX; also bounds the work a pattern can be made to do.
_SIZE = re.compile(r"([0-9]{1,20}(?:\.[0-9]{1,9})?) ?([kmgtp]?)(?:i?b)?", re.IGNORECASE)
_DURATION_PART = re.compile(r"([0-9]{1,20}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(f"(?:{_DURATION_PART.pattern})+")
_DURATION_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def matches(pattern: str | re.Pattern[str], error: str) -> Callable[[str], None]:
    """A validator on the whole string: `re.match` with `$` would let a trailing newline through."""
    regex = re.compile(pattern)

    def check(value: str) -> None:
        if len(value) > _MAX_TEXT or not regex.fullmatch(value):
            raise ValidationError(error)

    return check


def absolute_path(value: str) -> None:
    if not value.startswith("/") or len(value) > _MAX_TEXT:
        raise ValidationError("must be an absolute path")


def valid_text(value: Any) -> str:
    """A string the engine and the kernel can take: valid UTF-8 (no lone surrogates) and no NUL."""
    if not isinstance(value, str):
        raise ValidationError("Not a valid string.")
    if "\x00" in value:
        raise ValidationError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("not valid Unicode") from None
    return value


class Text(fields.String):
    """A String that passes `valid_text`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return valid_text(value)


class StrictBool(fields.Boolean):
    """Only JSON true or false: marshmallow's Boolean would also take "yes", "on" and 1."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


# A list of Text, for fields that take one after reshaping their input.
STRINGS = fields.List(Text())


class Argv(fields.Field[tuple[str, ...]]):
    """A list of strings, or one string split as a shell would, like `docker run IMAGE cmd args`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            try:
                value = shlex.split(value)
            except ValueError as err:
                raise ValidationError(f"cannot split as a shell would: {err}") from None
        return tuple(STRINGS.deserialize(value))


class MemorySize(fields.Field[int]):
    """Bytes as an integer, or as `docker run --memory` writes them ("512m", "1g", "64k"): powers of 1024."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        found = _SIZE.fullmatch(value) if isinstance(value, str) else None
        if found:
            value = int(Decimal(found[1]) * 1024 ** " kmgtp".index(found[2].lower() or " "))
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError('bytes as an integer, or a size such as "512m"')
        if not MIN_MEMORY <= value <= INT64_MAX:
            raise ValidationError(f"must be from {MIN_MEMORY} bytes (6m) to {INT64_MAX}")
        return value


def duration_ns(text: str) -> Decimal | None:
    """Go's duration text ("1m30s", "500ms") in nanoseconds, or None when it is not one."""
    if len(text) > 64 or not _DURATION.fullmatch(text):
        return None
    return sum((Decimal(num) * _DURATION_NS[unit] for num, unit in _DURATION_PART.findall(text)), Decimal(0))


class Duration(fields.Field[int]):
    """Go's duration text ("1m30s", "500ms") or seconds as a number, loaded as the engine's nanoseconds."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and (parsed := duration_ns(value)) is not None:
            nanos = parsed
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= INT64_MAX:
            nanos = Decimal(value) * 10**9
        else:
            raise ValidationError('a duration such as "30s" or "1m30s", or a number of seconds')
        # The engine takes 0 ("use the default") or at least a millisecond.
        if not (nanos == 0 or 10**6 <= nanos <= INT64_MAX):
            raise ValidationError("must be 0 or from 1ms to about 292 years")
        return int(nanos)
