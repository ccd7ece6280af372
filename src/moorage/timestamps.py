"""The one writer of moorage's timestamps (RFC 3339, UTC, with a Z), and how old a sample is. Imports nothing
of moorage, so that every module may use it (the audit, the log formatter, the schemas, the metrics)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def rfc3339(moment: datetime | float | None = None, *, milliseconds: bool = False) -> str:
    """`moment` (a datetime, Unix seconds, or now) to the second, as the API's fields are; to the millisecond for
    log and audit lines and metrics samples, which come more than once a second. Cut, never rounded up."""
    if moment is None:
        moment = datetime.now(UTC)
    elif not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    timespec = "milliseconds" if milliseconds else "seconds"
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def compact(moment: datetime | float) -> str:
    """`moment` to the second in UTC with no separators (`20261204T100000Z`): for file names, which a colon breaks
    on some systems."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(float(moment), UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def rfc3339_fixed(ns: int) -> str:
    """Nanoseconds since the epoch as the engine stamps log lines: RFC3339NanoFixed, nine digits always."""
    seconds, fraction = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time in UTC with up to nine digits of fraction, as the engine
    stamps log lines (RFC3339Nano, trailing zeros dropped); a datetime would keep only six. ValueError if not."""
    whole, dot, rest = text.partition(".")
    fraction = rest.removesuffix("Z") if dot else ""
    if dot and not (rest.endswith("Z") and fraction.isdigit() and len(fraction) <= 9):
        raise ValueError(f"not an RFC 3339 time in UTC: {text!r}")
    moment = datetime.fromisoformat(whole + ("Z" if dot else ""))
    if moment.tzinfo is None or moment.utcoffset():
        raise ValueError(f"not an RFC 3339 time in UTC: {text!r}")
    return int(moment.timestamp()) * 10**9 + int(fraction.ljust(9, "0"))


def age_seconds(moment: float) -> float:
    """Seconds since `moment` (Unix seconds), to the millisecond; never below 0 when the clock stepped back."""
    return round(max(0.0, time.time() - moment), 3)
