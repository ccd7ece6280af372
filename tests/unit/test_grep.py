"""Log grep: the lines kept are those Python's `re` finds a match in, line by line, for patterns both engines read
alike; whatever the pattern, matching takes linear time."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.engine.frames import CUT_MARK, CutLine
from moorage.logs.grep import LineGrep, PatternError

STAMP = "2026-12-02T10:00:00.123456789Z"
# Pieces of patterns RE2 and Python's re (ASCII) read alike: anchors, classes, alternation, repeats, boundaries.
_PIECES = ["a", "b", "c", " ", "1", ".", r"\d", r"\w", r"\s", "[a-b]", "[^a]", "^", "$", r"\b", "a*", "b+", "c?",
           "(a|bc)", "(?:ab)+", r"\.", "[0-9]{2}", "Z", r"\A", r"\z"]  # fmt: skip
_TEXT = st.text(alphabet="abc 1.Z\t", max_size=12)


def expected(lines: list[str], pattern: str, ignore_case: bool, invert: bool) -> list[int]:
    flags = re.ASCII | (re.IGNORECASE if ignore_case else 0)
    found = re.compile(pattern.replace(r"\z", r"\Z"), flags)  # Python spells RE2's end of text \Z
    return [i for i, line in enumerate(lines) if bool(found.search(line)) != invert]


def as_run(lines: list[str], stamped: bool, tty: bool) -> bytes:
    ending = "\r\n" if tty else "\n"
    return "".join((f"{STAMP} " if stamped else "") + line + ending for line in lines).encode()


@settings(max_examples=600, deadline=None)
@given(
    lines=st.lists(_TEXT, max_size=12),
    pieces=st.lists(st.sampled_from(_PIECES), min_size=1, max_size=5),
    ignore_case=st.booleans(),
    invert=st.booleans(),
    stamped=st.booleans(),
    tty=st.booleans(),
)
def test_the_lines_kept_are_those_re_matches_line_by_line(
    lines: list[str], pieces: list[str], ignore_case: bool, invert: bool, stamped: bool, tty: bool
) -> None:
    pattern = "".join(pieces)
    grep = LineGrep.of(pattern, ignore_case=ignore_case, invert=invert, stamped=stamped, tty=tty)
    run = as_run(lines, stamped, tty)
    kept = grep.kept(run)
    want = [lines[i] for i in expected(lines, pattern, ignore_case, invert)]
    assert kept == as_run(want, stamped, tty), pattern
    assert grep.counted(run) == len(want)


def test_a_pathological_pattern_answers_in_milliseconds() -> None:
    grep = LineGrep.of("(a+)+$", ignore_case=False, invert=False, stamped=True, tty=False)
    run = as_run(["a" * 200_000 + "!"] * 5, stamped=True, tty=False)
    started = time.perf_counter()
    assert grep.kept(run) == b""
    # Python's re takes exponential time on this; RE2 takes linear time (about a millisecond here).
    assert time.perf_counter() - started < 0.5


def test_a_cut_line_is_judged_by_what_of_it_is_shown() -> None:
    run = CutLine(f"{STAMP} error at the start".encode() + CUT_MARK + b"\n")
    assert LineGrep.of("error", ignore_case=False, invert=False, stamped=True, tty=False).kept(run) is run
    assert LineGrep.of("cut", ignore_case=False, invert=False, stamped=True, tty=False).kept(run) == b""


@pytest.mark.parametrize("pattern", ["(", "a{1001}", "[z-a]", r"(?<=a)b", r"\1"])
def test_a_pattern_re2_does_not_take_is_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        LineGrep.of(pattern, ignore_case=False, invert=False, stamped=False, tty=False)


def test_a_stamp_is_not_part_of_the_line() -> None:
    grep = LineGrep.of(r"^\d", ignore_case=False, invert=False, stamped=True, tty=False)
    assert grep.kept(as_run(["1 up", "down 2"], stamped=True, tty=False)) == as_run(["1 up"], True, False)
    digits = LineGrep.of("2026", ignore_case=False, invert=False, stamped=True, tty=False)
    assert digits.kept(as_run(["no year", "in 2026"], stamped=True, tty=False)) == as_run(["in 2026"], True, False)
