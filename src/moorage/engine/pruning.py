"""The engine's prune filters as it applies them (Docker 20.10, API 1.41), so that a dry run picks exactly what
the engine's prune would: `until` compared with an object's creation, `label` and `label!` matched as the
engine's MatchKVList does.

`until` is kept in whole Unix seconds, as the engine itself rounds a duration (`24h` is now less 24 h, to the
second): the dry run and the prune it foretells then use the same instant, which moorage sends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moorage.engine.filters import engine_filters


@dataclass(frozen=True)
class PruneFilters:
    """What a prune is limited to: objects made at or before `until` (Unix seconds), carrying every `label`, and
    not carrying every `label_not` (the engine's `label!`)."""

    until: int | None = None
    label: tuple[str, ...] = ()
    label_not: tuple[str, ...] = ()

    @property
    def labelled(self) -> bool:
        return bool(self.label or self.label_not)

    def engine(self, **more: Any) -> str:
        """The engine's `filters` parameter of these filters and `more` (dangling)."""
        given = {"until": None if self.until is None else str(self.until), "label": list(self.label)}
        given["label!"] = list(self.label_not)
        return engine_filters({**given, **more}, "until", "label", "label!", *more)

    def labels_match(self, labels: Mapping[str, str] | None) -> bool:
        """The engine's matchLabels: every `label` is carried, and not every `label!` is (several `label!` spare
        only what carries them all: the engine's rule, which is why moorage takes one at most)."""
        if not _carries_all(self.label, labels or {}):
            return False
        return not (self.label_not and _carries_all(self.label_not, labels or {}))

    def made_by_until(self, seconds: int, whole: bool) -> bool:
        """Whether something made at `seconds` (and a fraction unless `whole`) is at or before `until`: the
        engine skips what was made after it."""
        if self.until is None:
            return True
        return seconds < self.until or (seconds == self.until and whole)


def _carries_all(wanted: Sequence[str], labels: Mapping[str, str]) -> bool:
    """MatchKVList: no filter matches all; otherwise an object without labels matches none, and each `KEY` must be
    there, each `KEY=VALUE` with that value."""
    if not wanted:
        return True
    if not labels:
        return False
    for item in wanted:
        key, equals, value = item.partition("=")
        if key not in labels or (equals and labels[key] != value):
            return False
    return True


def engine_moment(text: str) -> tuple[int, bool]:
    """An engine timestamp (RFC 3339, to the nanosecond, in any zone) as whole Unix seconds, and whether it falls
    on the second exactly. Python reads at most microseconds: the fraction is cut before parsing."""
    head, _, tail = text.partition(".")
    zone_at = next((i for i, ch in enumerate(tail) if ch in "Z+-"), len(tail))
    moment = datetime.fromisoformat(head + tail[zone_at:])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()), not tail[:zone_at].strip("0")
