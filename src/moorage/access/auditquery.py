"""The audit log read back (`GET /audit`): its lines newest first, across its rotations, filtered and paged.

A query reads a snapshot: the files opened once each, by their paths, newest first, with the size each had then,
while no rotation can run (AuditLog.snapshot), so that no file is read twice or missed; a file renamed or dropped
later is still read through its open descriptor, a line written later lies past the size taken, and a file that
is not there (not made yet, or a gap a failed rotation left) is skipped. Files are read backwards in blocks, so
memory is a block, the longest line and a page; `total` counts every line that matches, so a query reads every
kept file: at most (keep + 1) x max_bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

BLOCK = 64 * 1024  # bytes read at a time


@dataclass(frozen=True)
class AuditFilter:
    """What a line must match; every filter given must (and one of the values of `actions` and `statuses`)."""

    key: str | None = None
    actions: frozenset[str] = frozenset()
    # The object a call named (`target`), or the `id` or `name` its detail gives (a create's new container).
    target: str | None = None
    statuses: tuple[tuple[int, int], ...] = ()  # inclusive ranges: 404 is (404, 404), 4xx (400, 499)
    # Audit stamps (RFC 3339 UTC to the millisecond, one length), which sort as their text: compared as text.
    since: str | None = None
    until: str | None = None

    def __call__(self, entry: dict[str, Any]) -> bool:
        moment = entry.get("time")
        return (
            (self.key is None or entry.get("key") == self.key)
            and (not self.actions or entry.get("action") in self.actions)
            and (self.target is None or self.target in _targets(entry))
            and (not self.statuses or any(low <= s <= high for s in _results(entry) for low, high in self.statuses))
            and (self.since is None or (isinstance(moment, str) and moment >= self.since))
            and (self.until is None or (isinstance(moment, str) and moment <= self.until))
        )


def _targets(entry: dict[str, Any]) -> tuple[Any, ...]:
    detail = entry.get("detail")
    named = (detail.get("id"), detail.get("name")) if isinstance(detail, dict) else ()
    return (entry.get("target"), *named)


def _results(entry: dict[str, Any]) -> Iterator[int]:
    """A call's status, or every status a summary of folded refusals counted."""
    if isinstance(result := entry.get("result"), int):
        yield result
    if isinstance(results := entry.get("results"), dict):
        yield from (int(status) for status in results if status.isdigit())


class AuditSnapshot:
    """The audit files as they are now, newest first, each opened once by its path, with its size now."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._files: list[tuple[IO[bytes], int]] = []
        try:
            for path in paths:
                try:
                    file = path.open("rb")
                except FileNotFoundError:
                    continue
                self._files.append((file, os.fstat(file.fileno()).st_size))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> AuditSnapshot:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for file, _ in self._files:
            file.close()
        self._files.clear()

    def lines(self, block: int = BLOCK) -> Iterator[bytes]:
        """Every complete line, newest first: the files newest first, each from its end."""
        for file, size in self._files:
            yield from backwards(file.fileno(), size, block)


def backwards(fd: int, size: int, block: int = BLOCK) -> Iterator[bytes]:
    """The lines of the file's first `size` bytes, last first, read `block` bytes at a time from the end. What
    follows the last newline is a line still being written, and is left out; blank lines are skipped."""
    carry = b""  # the start of the block read last, up to its first newline: the end of a line begun earlier
    ended = False  # whether a newline follows `carry`
    position = size
    while position > 0:
        start = max(0, position - block)
        chunk = os.pread(fd, position - start, start)
        if len(chunk) < position - start:  # shorter than it was (truncated by hand): read what is left
            break
        position = start
        parts = (chunk + carry).split(b"\n")
        carry = parts[0]
        if len(parts) > 1:
            if ended and parts[-1]:
                yield parts[-1]
            yield from (line for line in reversed(parts[1:-1]) if line)
            ended = True
    if ended and carry and position == 0:
        yield carry


def read_page(
    snapshot: Callable[[], AuditSnapshot], match: AuditFilter, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """How many lines match, and the page of them from `offset`, newest first, of the snapshot taken now. A line
    that is not a JSON object (a hand edit, a write cut short by a crash) is skipped."""
    total, page = 0, []
    with snapshot() as taken:
        for line in taken.lines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(entry, dict) or not match(entry):
                continue
            if offset <= total < offset + limit:
                page.append(entry)
            total += 1
    return total, page
