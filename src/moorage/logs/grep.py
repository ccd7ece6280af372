"""Choosing log lines by a caller's regular expression, in linear time and at the speed of the log itself.

A caller's pattern runs in RE2 (google-re2), whose matching is linear in the text: `(a+)+$` over a long line
costs what any pattern does, so no request can stall the daemon. A pattern matches a line as `grep -E` matches
it: the line as the caller reads it, its timestamp and newline aside.

Calling RE2 once a line costs about 2 µs, most of what the engine spends sending that line. So a run of lines
is searched as one text, never matching across a newline (`never_nl`), and only the lines where a match
begins are looked at; a match that begins in a timestamp, or reaches the carriage return that ends a TTY's
line (one the caller does not see), is judged again on its line alone. A pattern that anchors (`^`, `\\A`,
`\\z`, or `$` in a TTY's lines) is judged line by line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import re2

from moorage.engine.frames import CUT_MARK, CutLine

# RE2's own bound on a compiled pattern's memory; a bigger one is refused as too complex, not run.
_MAX_MEMORY = 8 << 20


class PatternError(ValueError):
    """The pattern is not one RE2 takes; its message says why."""


def _options(ignore_case: bool, never_nl: bool) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.never_nl = never_nl
    options.max_mem = _MAX_MEMORY
    options.log_errors = False
    return options


def _anchored(pattern: str, tty: bool) -> bool:
    """Whether the pattern may hold only at a line's start or end (conservatively: a caret in a class other
    than its negation counts too), or turns a flag off (`(?-m)`): such a pattern is judged line by line."""
    i, size, in_class = 0, len(pattern), False
    while i < size:
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped == "Q":  # literal up to \E
                end = pattern.find("\\E", i + 2)
                i = size if end < 0 else end + 2
                continue
            if escaped in ("A", "z") and not in_class:
                return True
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
            elif pattern.startswith("[:", i):
                i = max(pattern.find(":]", i + 2), i) + 1
        elif char == "[":
            in_class = True
            i += 1
            i += pattern.startswith("^", i)
            i += pattern.startswith("]", i)
            continue
        elif char == "^" or (char == "$" and tty) or _turns_off_a_flag(pattern, i):
            return True
        i += 1
    return False


def _turns_off_a_flag(pattern: str, i: int) -> bool:
    """`(?-m)`, `(?i-s:...)`: a flag group with a minus at pattern[i]."""
    if not pattern.startswith("(?", i):
        return False
    end = min((pos for pos in (pattern.find(")", i), pattern.find(":", i)) if pos >= 0), default=len(pattern))
    return "-" in pattern[i:end]


@dataclass(frozen=True)
class LineGrep:
    """`grep -E pattern` over runs of whole lines (each ending in a newline; stamped: `STAMP text`)."""

    line: re2._Regexp  # the pattern on one line's text
    run: re2._Regexp  # the pattern over a run, never across a newline
    by_line: bool
    invert: bool
    stamped: bool
    tty: bool  # lines end in a carriage return the caller does not see

    @classmethod
    def of(cls, pattern: str, *, ignore_case: bool, invert: bool, stamped: bool, tty: bool) -> LineGrep:
        try:
            line = re2.compile(pattern.encode(), options=_options(ignore_case, never_nl=False))
            run = re2.compile(b"(?m)" + pattern.encode(), options=_options(ignore_case, never_nl=True))
        except re2.error as err:
            raise PatternError(str(err) or "not a regular expression RE2 takes") from None
        return cls(line, run, _anchored(pattern, tty), invert, stamped, tty)

    def _text(self, run: bytes, start: int, end: int) -> bytes:
        """The line at run[start:end] (its newline excluded) as the caller reads it: no stamp, no carriage return."""
        if self.stamped:
            start = run.find(b" ", start, end) + 1 or start
        return run[start : end - 1 if self.tty and run[end - 1 : end] == b"\r" else end]

    def matched(self, run: bytes) -> Iterator[tuple[int, int]]:
        """(start, end) of each line of the run that matches, its newline included."""
        if self.by_line:
            start = 0
            while (newline := run.find(b"\n", start)) >= 0:
                if self.line.search(self._text(run, start, newline)):
                    yield start, newline + 1
                start = newline + 1
            return
        pos, search = 0, self.run.search
        while (found := search(run, pos)) is not None:
            begins = found.start()
            end = run.find(b"\n", begins)
            if end < 0:  # an empty match after the last line
                return
            start = run.rfind(b"\n", 0, begins) + 1
            text_start = (run.find(b" ", start, end) + 1 or start) if self.stamped else start
            # A match that begins in the stamp, or reaches a TTY's carriage return, may not hold on the text.
            reaches_cr = self.tty and found.end() >= end and run[end - 1 : end] == b"\r"
            if (begins >= text_start and not reaches_cr) or self.line.search(self._text(run, start, end)):
                yield start, end + 1
            pos = end + 1

    def kept(self, run: bytes) -> bytes:
        """The run's lines the caller asked for: those that match, or (invert) those that do not."""
        if type(run) is CutLine:
            shown = run[: -len(CUT_MARK) - 1] + b"\n"
            return run if bool(next(self.matched(shown), None)) != self.invert else b""
        spans = list(self.matched(run))
        if not self.invert:
            return b"".join(run[start:end] for start, end in spans)
        gaps, last = [], 0
        for start, end in spans:
            gaps.append(run[last:start])
            last = end
        gaps.append(run[last:])
        return b"".join(gaps)

    def counted(self, run: bytes) -> int:
        if type(run) is CutLine:
            return 1 if self.kept(run) else 0
        found = sum(1 for _ in self.matched(run))
        return run.count(b"\n") - found if self.invert else found


async def grepped(runs: AsyncIterator[tuple[int, bytes]], grep: LineGrep) -> AsyncIterator[tuple[int, bytes]]:
    """The runs with only the lines the grep keeps; a run left empty is not passed on."""
    async for stream, run in runs:
        if kept := grep.kept(run):
            yield stream, kept
