"""The merge of many sources' lines, each in order, without the engine: every line out once, in timestamp order
when the merge may wait for every source, a restarted source read again after its cursor, and memory bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.logs import merge
from moorage.logs.merge import Cursor, Joiner, Notice, Reorder, Source, merged, primed

# Each source: its stamps (sorted, repeats allowed), cut into runs of the given sizes.
stamps = st.lists(st.integers(0, 50), max_size=60).map(sorted)
sources = st.lists(st.tuples(stamps, st.lists(st.integers(1, 7), min_size=1)), min_size=1, max_size=6)


def stamp(n: int) -> str:
    return f"2026-12-04T10:00:{n:02d}.000000000Z"


async def source_of(key: Hashable, stamped: list[int], sizes: list[int], pause: float = 0) -> Source:
    yield Notice({"joined": key})
    lines = [(stamp(n), {"key": key, "n": i, "timestamp": stamp(n)}) for i, n in enumerate(stamped)]
    at = 0
    for size in sizes * (len(lines) + 1):
        if at >= len(lines):
            break
        await asyncio.sleep(pause)
        yield lines[at : at + size]
        at += size
    yield Notice({"left": key})


def no_opener(key: Hashable, cursor: Cursor | None) -> Source:
    raise AssertionError(f"nothing joins here: {key}")


async def collected(batches: Any) -> list[Any]:
    return [item async for batch in batches for item in batch]


@settings(max_examples=200, deadline=None)
@given(sources)
async def test_without_a_window_every_line_comes_once_in_timestamp_order_each_source_in_its_own(
    given_sources: list[tuple[list[int], list[int]]],
) -> None:
    made = {key: source_of(key, stamped, sizes) for key, (stamped, sizes) in enumerate(given_sources)}

    out = await collected(merged(made, no_opener, None, window=None))
    lines = [item for item in out if "n" in item]
    assert [item["timestamp"] for item in lines] == sorted(stamp(n) for stamped, _ in given_sources for n in stamped)
    for key, (stamped, _) in enumerate(given_sources):
        assert [item["n"] for item in lines if item["key"] == key] == list(range(len(stamped)))
        mine = [i for i, item in enumerate(out) if item.get("key") == key]
        # It joined before its first line and left after its last.
        left = out.index({"left": key})
        assert out.index({"joined": key}) < min(mine, default=left) and max(mine, default=-1) < left


async def test_a_quiet_source_holds_a_line_back_only_for_the_window() -> None:
    async def quiet() -> Source:
        yield Notice("quiet joined")
        await asyncio.sleep(30)
        yield [(stamp(0), "never")]

    loop = asyncio.get_running_loop()
    made = {"busy": source_of("busy", [5], [1]), "quiet": quiet()}
    batches = merged(made, no_opener, None, window=0.05)
    started = loop.time()
    seen: list[Any] = []
    async with asyncio.timeout(5):
        async for batch in batches:
            seen.extend(batch)
            if any(isinstance(item, dict) and item.get("n") == 0 for item in seen):
                break
    await batches.aclose()
    assert 0.05 <= loop.time() - started < 2
    assert "never" not in seen


async def test_a_source_that_begins_again_is_read_again_after_its_cursor() -> None:
    opened: list[Cursor | None] = []

    def opener(key: Hashable, cursor: Cursor | None) -> Source:
        opened.append(cursor)
        return source_of(key, [3, 4, 4, 5], [4])  # what the engine gives from the cursor's stamp (4) on

    async def joiners() -> Any:
        await asyncio.sleep(0.01)
        yield Joiner("a", began_ns=10)  # it started again while its first source was being read

    first = {"a": source_of("a", [1, 2, 4], [1])}
    out = await collected(merged(first, opener, joiners(), window=0.01, began_ns=5))
    assert opened == [Cursor(stamp(4), 1)]
    assert [item["timestamp"] for item in out if isinstance(item, dict) and "n" in item] == [
        stamp(n) for n in (1, 2, 4, 3, 4, 4, 5)
    ]


async def test_a_start_from_before_the_merge_chose_its_sources_is_not_read_again() -> None:
    async def joiners() -> Any:
        yield Joiner("a", began_ns=4)

    out = await collected(merged({"a": source_of("a", [1], [1])}, no_opener, joiners(), window=0.01, began_ns=5))
    assert len([item for item in out if isinstance(item, dict) and "n" in item]) == 1


async def test_a_source_far_ahead_of_another_is_not_read_further_than_the_hold(monkeypatch: Any) -> None:
    monkeypatch.setattr(merge, "HOLD", 10)
    read = {"late": 0}

    async def late() -> Source:
        for n in range(100):
            read["late"] = n
            yield [(stamp(40), n)]

    async def early() -> Source:
        await asyncio.sleep(0.05)  # its first line, the earliest of all, comes last
        read["when early came"] = read["late"]
        yield [(stamp(1), "first")]

    batches = merged({"late": late(), "early": early()}, no_opener, None, window=None)
    out = await collected(batches)
    assert out[0] == "first" and out[1:] == list(range(100))
    assert read["when early came"] <= 10  # the late source waited, held at the hold
    assert read["late"] == 99


def test_reorder_releases_a_sources_notice_after_its_held_lines() -> None:
    reorder = Reorder(window=None)
    reorder.open("a")
    reorder.open("b")
    reorder.add("a", [(stamp(2), "a2")], now=0)
    reorder.notice("a", "a left")
    reorder.close("a")
    assert reorder.due(0) == []  # b may still send an earlier line
    reorder.add("b", [(stamp(1), "b1"), (stamp(3), "b3")], now=0)
    assert reorder.due(0) == ["b1", "a2", "a left", "b3"]  # b3 too: b is the only source left, and it sent b3


async def test_primed_sources_raise_a_failure_to_open_before_anything_is_read() -> None:
    closed: list[str] = []

    async def fine() -> Source:
        try:
            yield Notice("fine joined")
        finally:
            closed.append("fine")

    async def failing() -> Source:
        raise LookupError("No such container: x")
        yield Notice("never")

    try:
        await primed({"fine": fine(), "failing": failing()})
    except LookupError as err:
        assert str(err) == "No such container: x"
    else:
        raise AssertionError("a failure to open was not raised")
    assert closed == ["fine"]


def test_a_restarted_sources_notices_follow_its_earlier_lines_not_all_it_holds() -> None:
    reorder = Reorder(window=None)
    for key in ("a", "b"):
        reorder.open(key)
    reorder.add("a", [(stamp(2), "a2")], now=0)
    reorder.notice("a", "a stopped")
    reorder.close("a")
    reorder.open("a")  # it started again
    reorder.notice("a", "a joined")
    reorder.add("a", [(stamp(5), "a5")], now=0)
    reorder.add("b", [(stamp(3), "b3")], now=0)
    assert reorder.due(0) == ["a2", "a stopped", "a joined", "b3"]  # a5 waits: b may still send a line before it


async def test_a_source_that_sent_no_line_is_read_again_from_when_it_began() -> None:
    opened: list[Cursor | None] = []

    def opener(key: Hashable, cursor: Cursor | None) -> Source:
        opened.append(cursor)
        return source_of(key, [], [1])

    async def joiners() -> Any:
        await asyncio.sleep(0.01)
        yield Joiner("a", began_ns=10**9 * 3600)

    out = await collected(merged({"a": source_of("a", [], [1])}, opener, joiners(), window=0.01, began_ns=5 * 10**9))
    assert opened == [Cursor("1970-01-01T00:00:05.000000000Z", 0)]  # not its whole log again, as tail=0 asked
    assert out.count({"left": "a"}) == 2
