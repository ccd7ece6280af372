"""What a log line says of itself, read when a caller asks: the object of a line that is JSON, and its level.

Levels come in a handful of common forms: a JSON field (`"level": "warn"`, pino's and bunyan's numbers), logfmt
(`level=warn`, `lvl=`, `severity=`), and a level word near the start, in capitals or in brackets (`ERROR ...`,
`2026-12-03 10:00:00 [warn] ...`). Each is named as one of LEVELS; a line in none of them has no level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
_NAMES = {
    **{name: name for name in LEVELS},
    "dbg": "debug",
    "inf": "info",
    "information": "info",
    "notice": "info",
    "warning": "warn",
    "wrn": "warn",
    "err": "error",
    "eror": "error",
    "crit": "fatal",
    "critical": "fatal",
    "alert": "fatal",
    "emerg": "fatal",
    "emergency": "fatal",
    "panic": "fatal",
}
# pino and bunyan write the level as a number.
_NUMBERED = ((60, "fatal"), (50, "error"), (40, "warn"), (30, "info"), (20, "debug"), (10, "trace"))
_JSON_KEYS = ("level", "lvl", "severity", "log.level", "loglevel")
_WORDS = "|".join(sorted(_NAMES, key=len, reverse=True))
# logfmt's key=value, or a JSON field in a line that is not itself JSON (a prefix before the object).
_KEYED = re.compile(rf'(?:^|[\s,{{])"?(?:level|lvl|severity|loglevel)"?\s*[=:]\s*"?({_WORDS})\b', re.IGNORECASE)
# A level word in the first 80 characters: in capitals, or in any case inside brackets.
_WORD = re.compile(rf"\b({_WORDS.upper()})\b|\[({_WORDS})\]", re.IGNORECASE)
_NEAR_START = 80


def json_object(text: str) -> dict[str, Any] | None:
    """The line's object, when the whole line is one JSON object."""
    if not text.startswith("{"):
        return None
    try:
        found = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def _named(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return next((name for floor, name in _NUMBERED if value >= floor), None)
    return _NAMES.get(value.lower()) if isinstance(value, str) else None


def level_of(text: str, obj: Mapping[str, Any] | None) -> str | None:
    """The line's level, one of LEVELS, or None when it names none in a common form."""
    if obj is not None:
        for key in _JSON_KEYS:
            if key in obj and (named := _named(obj[key])) is not None:
                return named
    if found := _KEYED.search(text):
        return _NAMES[found[1].lower()]
    head = text[:_NEAR_START]
    for found in _WORD.finditer(head):
        if found[1] is not None and found[1].isupper():
            return _NAMES[found[1].lower()]
        if found[2] is not None:
            return _NAMES[found[2].lower()]
    return None


@dataclass(frozen=True)
class LineFields:
    """Which fields a caller asked of each line (`parse=json`, `parse=level`), added to a line's item."""

    json: bool
    level: bool

    def __bool__(self) -> bool:
        return self.json or self.level

    def added(self, item: dict[str, Any]) -> dict[str, Any]:
        text = item["line"]
        obj = json_object(text)
        if self.json:
            item["json"] = obj
        if self.level:
            item["level"] = level_of(text, obj)
        return item
