"""Reusable request fields and validators: whole-string patterns, text the engine can take, sizes, durations.

A field class of our own says what it accepts in JSON Schema as its `json_schema`, beside the code that
accepts it; the OpenAPI document takes it from there (moorage.openapi).
"""

from __future__ import annotations

import re
import shlex
from decimal import Decimal
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validate

from moorage.selectors import SelectorError, check_glob, parse_selector

JsonSchema = dict[str, Any]

# Docker's own floor (linuxMinMemory): the engine refuses less.
MIN_MEMORY = 6 * 1024 * 1024
# The engine's counters (Memory, NanoCpus, PidsLimit, durations) are Go int64s.
INT64_MAX = 2**63 - 1
# Python's `\s` spelled out: ECMA-262's `\s` lacks \x1c-\x1f and \x85 and adds U+FEFF, so a published pattern
# that wrote `\s` would not mean what the daemon checks.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

_MAX_TEXT = 4096  # PATH_MAX; also bounds the work a pattern can be made to do.
_SIZE = re.compile(r"([0-9]{1,20}(?:\.[0-9]{1,9})?) ?([kmgtpKMGTP]?)(?:[iI]?[bB])?")
_DURATION_PART = re.compile(r"([0-9]{1,20}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|ms|s|m|h)")
DURATION = re.compile(f"(?:{_DURATION_PART.pattern})+")
_DURATION_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def anchored(pattern: str) -> str:
    """`pattern` as a whole-string JSON Schema pattern: those are searched, not matched, like `re.search`."""
    return f"^(?:{pattern})$"


class matches(validate.Regexp):
    """A pattern on the whole string, at most _MAX_TEXT long: `re.match` with `$` would let a trailing newline
    through. The compiled regex is the anchored form, so that the document publishes what `fullmatch` means."""

    max_length: ClassVar[int] = _MAX_TEXT

    def __init__(self, pattern: str | re.Pattern[str], error: str) -> None:
        text, flags = (pattern.pattern, pattern.flags) if isinstance(pattern, re.Pattern) else (pattern, 0)
        super().__init__(anchored(text), flags, error=error)

    def _format_error(self, value: str | bytes) -> str:
        return self.error  # as given: Regexp would read braces in it as {input} and {regex}

    def __call__(self, value: str) -> str:  # type: ignore[override]
        if len(value) > self.max_length or not self.regex.fullmatch(value):
            raise ValidationError(self._format_error(value))
        return value


def selector_text(value: str) -> None:
    """A label selector in Kubernetes' syntax (selectors.py), at most _MAX_TEXT long."""
    try:
        if len(value) > _MAX_TEXT:
            raise SelectorError(f"longer than {_MAX_TEXT} characters")
        parse_selector(value)
    except SelectorError as err:
        raise ValidationError(str(err)) from None


def name_glob(value: str) -> None:
    """A container-name glob (`web-*`)."""
    try:
        check_glob(value)
    except SelectorError as err:
        raise ValidationError(str(err)) from None


# A path in the config (the token secret, the audit log, the disks to sample): absolute, no NUL.
ABSOLUTE_PATH = matches(r"/[^\x00]{0,4095}", "an absolute path")


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


class CappedList(fields.List):
    """A List of at most `max_items`, counted before any item is loaded: 10,000 volumes are refused at once,
    not after 10,000 nested loads. The Length validator publishes the cap as maxItems."""

    def __init__(self, inner: fields.Field, max_items: int) -> None:
        super().__init__(inner, validate=validate.Length(max=max_items))
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if isinstance(value, list) and len(value) > self.max_items:
            raise ValidationError(f"at most {self.max_items} items")
        return super()._deserialize(value, attr, data, **kwargs)


# An argument vector (command, entrypoint, a healthcheck's test) has at most this many items, and its string
# form at most this many characters before it is split: a body of 1 MiB must not make a long load.
MAX_ARGS = 4096
MAX_COMMAND_TEXT = 64 * 1024
# The items of one, for fields that take one after reshaping their input.
_ARGUMENTS = CappedList(Text(), MAX_ARGS)


def arguments(value: Any) -> tuple[str, ...]:
    """An argument vector: a list of at most MAX_ARGS valid strings, counted before any is loaded."""
    return tuple(_ARGUMENTS.deserialize(value))


class Argv(fields.Field[tuple[str, ...]]):
    """A list of strings, or one string split as a shell would, like `docker run IMAGE cmd args`."""

    json_schema: ClassVar[JsonSchema] = {
        "anyOf": [
            {"type": "string", "maxLength": MAX_COMMAND_TEXT},
            {"type": "array", "items": {"type": "string"}, "maxItems": MAX_ARGS},
        ]
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            if len(value) > MAX_COMMAND_TEXT:
                raise ValidationError(f"at most {MAX_COMMAND_TEXT} characters")
            try:
                value = shlex.split(value)
            except ValueError as err:
                raise ValidationError(f"cannot split as a shell would: {err}") from None
        return arguments(value)


class MemorySize(fields.Field[int]):
    """Bytes as an integer, or as `docker run --memory` writes them ("512m", "1g", "64k"): powers of 1024."""

    json_schema: ClassVar[JsonSchema] = {
        "anyOf": [
            {"type": "integer", "minimum": MIN_MEMORY, "maximum": INT64_MAX},
            {"type": "string", "pattern": anchored(_SIZE.pattern), "description": "at least 6m"},
        ]
    }

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
    if len(text) > 64 or not DURATION.fullmatch(text):
        return None
    return sum((Decimal(num) * _DURATION_NS[unit] for num, unit in _DURATION_PART.findall(text)), Decimal(0))


class Duration(fields.Field[int]):
    """Go's duration text ("1m30s", "500ms") or seconds as a number, loaded as the engine's nanoseconds."""

    json_schema: ClassVar[JsonSchema] = {
        "anyOf": [
            {"type": "string", "pattern": anchored(DURATION.pattern), "maxLength": 64, "description": "0, or 1ms on"},
            # Whole seconds at the top: the float nearest INT64_MAX / 1e9 is past it.
            {"type": "number", "anyOf": [{"const": 0}, {"minimum": 0.001, "maximum": INT64_MAX // 10**9}]},
        ]
    }

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
