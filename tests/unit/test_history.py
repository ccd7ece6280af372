"""Container metric history: each point agrees with the readings it stands for, a ring forgets what is past its span,
the file gives back the same answers and a bad one costs only the history, and the memory stays within its bound."""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from moorage.metrics.history import SERIES, ContainerHistory
from moorage.settings import MetricsSettings

TIERS = ((1.0, 10.0), (5.0, 60.0))  # 10 per-second slots, 12 five-second ones
START = 1_699_999_980.0  # a multiple of a minute: every step of the tests below starts a bucket here
NOW = 1_700_000_037.75  # inside a bucket of either tier, not on its edge
GRID = 0.25  # readings and windows on quarter seconds, which divide exactly: no bucket edge is a rounding question
Reading = tuple[float, dict[str, float]]


def f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def full(value: float) -> dict[str, float]:
    return dict.fromkeys(SERIES, value)


def tier_for(seconds: float) -> tuple[float, float]:
    """The spec's choice: the finest tier whose span covers `seconds`, else the coarsest."""
    return next((tier for tier in TIERS if tier[1] >= seconds), TIERS[-1])


def held_since(tier: tuple[float, float]) -> float:
    """The start of the oldest bucket the tier's ring holds at NOW, when readings came up to NOW."""
    step, span = tier
    return (math.floor(NOW / step) - math.ceil(span / step) + 1) * step


def brute_force(readings: list[Reading], seconds: float, step: float) -> list[dict[str, Any]]:
    """The points of the readings in the last `seconds` before NOW, in buckets of `step`, aggregated afresh."""
    buckets: dict[int, list[dict[str, float]]] = {}
    for at, values in readings:
        buckets.setdefault(math.floor(at / step), []).append(values)
    points = []
    for bucket in range(math.floor((NOW - seconds) / step), math.floor(NOW / step) + 1):
        if bucket not in buckets:
            continue
        point: dict[str, Any] = {"at": bucket * step}
        for key in SERIES:
            seen = [f32(values[key]) for values in buckets[bucket] if key in values]
            point[key] = {"min": min(seen), "avg": sum(seen) / len(seen), "max": max(seen)} if seen else None
        points.append(point)
    return points


def assert_same_points(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [p["at"] for p in got] == [p["at"] for p in expected]
    for point, wanted in zip(got, expected, strict=True):
        for key in SERIES:
            if wanted[key] is None:
                assert point[key] is None, (point["at"], key)
                continue
            assert (point[key]["min"], point[key]["max"]) == (wanted[key]["min"], wanted[key]["max"]), (point, key)
            # float32 sums: a few units in the 7th digit at most for the readings here.
            assert math.isclose(point[key]["avg"], wanted[key]["avg"], rel_tol=1e-5, abs_tol=1e-9), (point, key)


def readings_since(start: float, values: st.SearchStrategy[float]) -> st.SearchStrategy[list[Reading]]:
    """Readings between `start` and NOW on the grid, each with some of the series (a bit mask), each series a value of
    its own. Three draws a reading, not one a series: generating the data is most of these tests' time."""
    quarters = int((NOW - start) / GRID)

    def reading(quarter: int, mask: int, value: float) -> Reading:
        present = [key for i, key in enumerate(SERIES) if mask >> i & 1]
        return NOW - quarter * GRID, {key: value * (i + 1) for i, key in enumerate(present)}

    return st.lists(
        st.builds(reading, st.integers(0, quarters), st.integers(1, 2 ** len(SERIES) - 1), values), max_size=30
    )


@st.composite
def windows(draw: st.DrawFn) -> tuple[float, float | None, list[Reading]]:
    """A query's seconds and step, and readings that its tier's ring still holds whole."""
    seconds = draw(st.integers(1, 70)) * GRID * 4 + draw(st.sampled_from([0.0, GRID]))
    step = draw(st.one_of(st.none(), st.sampled_from([1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0])))
    readings = draw(readings_since(held_since(tier_for(seconds)), st.floats(0, 1e6)))
    return seconds, step, readings


def history_of(readings: list[Reading], tiers: tuple[tuple[float, float], ...] = TIERS) -> ContainerHistory:
    history = ContainerHistory(tiers)
    for at, values in readings:
        history.record("c1", "web", at, values)
    return history


@settings(max_examples=80, deadline=None)
@given(windows())
def test_each_point_is_the_aggregate_of_the_readings_in_its_bucket(
    window: tuple[float, float | None, list[Reading]],
) -> None:
    seconds, step, readings = window
    tier_step, span = tier_for(seconds)
    used = tier_step if step is None else max(tier_step, math.ceil(step / tier_step) * tier_step)
    history = history_of([(NOW - 600.0, full(1.0)), *readings])  # the first is long gone from every ring
    answer = history.query("c1", seconds, step, NOW)
    assert (answer["seconds"], answer["step"]) == (min(seconds, span), used)
    assert_same_points(answer["points"], brute_force(readings, min(seconds, span), used))


@settings(max_examples=50, deadline=None)
@given(readings_since(NOW - 60.0, st.floats(allow_nan=False, allow_infinity=False, width=32)))
@example([(NOW - q * GRID, full(0.1)) for q in range(3)])  # the float32 sum 0.3 over 3 is past 0.1 in float32
def test_min_avg_max_are_in_order_for_every_point_and_series(readings: list[Reading]) -> None:
    history = history_of([(NOW - 600.0, full(1.0)), *readings])
    for seconds, step in ((10.0, None), (60.0, None), (60.0, 15.0), (60.0, 60.0)):
        for point in history.query("c1", seconds, step, NOW)["points"]:
            for key in SERIES:
                if point[key] is not None:
                    assert point[key]["min"] <= point[key]["avg"] <= point[key]["max"], (point, key)


def test_a_ring_forgets_readings_older_than_its_span() -> None:
    history = history_of([(START + s, full(s)) for s in range(30)], tiers=((1.0, 10.0),))
    points = history.query("c1", 10.0, None, START + 29.5)["points"]
    assert [p["at"] - START for p in points] == list(range(20, 30))
    # Back when 6..15 were the last ten seconds: those slots now hold 16..25.
    assert history.query("c1", 10.0, None, START + 15.5)["points"] == []


def test_a_slot_on_its_next_lap_does_not_mix_the_old_readings_into_the_new_bucket() -> None:
    history = history_of(
        [(START + 3.0, full(100.0)), (START + 13.0, full(1.0)), (START + 13.5, full(3.0))], ((1.0, 10.0),)
    )
    (point,) = history.query("c1", 10.0, None, START + 13.9)["points"]
    assert point["at"] == START + 13.0
    assert point["cpu_percent"] == {"min": 1.0, "avg": 2.0, "max": 3.0}


def test_a_late_reading_for_a_bucket_the_ring_has_left_is_dropped_not_laid_over_the_newer_one() -> None:
    history = history_of([(START + 13.0, full(1.0)), (START + 3.0, full(100.0))], ((1.0, 10.0),))
    assert [
        (p["at"] - START, p["cpu_percent"]["max"]) for p in history.query("c1", 10.0, None, START + 13.5)["points"]
    ] == [(13.0, 1.0)]


def test_a_query_longer_than_the_finest_span_takes_the_next_tier() -> None:
    history = history_of([(START + s, full(s)) for s in range(40)])
    fine = history.query("c1", 10.0, None, START + 39.5)
    assert (fine["step"], len(fine["points"])) == (1.0, 10)
    coarse = history.query("c1", 30.0, None, START + 39.5)
    assert coarse["step"] == 5.0
    assert [(p["at"] - START, p["cpu_percent"]) for p in coarse["points"]] == [
        (5.0 * b, {"min": 5.0 * b, "avg": 5.0 * b + 2, "max": 5.0 * b + 4}) for b in range(1, 8)
    ]
    # Past the coarsest span: all that is kept, and the answer says how much that is.
    longest = history.query("c1", 3600.0, None, START + 39.5)
    assert (longest["seconds"], longest["step"], len(longest["points"])) == (60.0, 5.0, 8)


def test_a_step_finer_than_the_tier_is_the_tiers_and_one_between_multiples_is_rounded_up() -> None:
    history = history_of([(START + s, full(s)) for s in range(60)])
    assert history.query("c1", 60.0, 1.0, START + 59.5)["step"] == 5.0
    answer = history.query("c1", 60.0, 12.0, START + 59.5)
    assert answer["step"] == 15.0
    assert [p["at"] - START for p in answer["points"]] == [0.0, 15.0, 30.0, 45.0]
    assert answer["points"][0]["memory_bytes"] == {"min": 0.0, "avg": 7.0, "max": 14.0}


def test_missing_and_unusable_values_are_no_reading_of_their_series() -> None:
    history = ContainerHistory(TIERS)
    history.record("c1", "web", START, {"cpu_percent": 10.0, "memory_bytes": math.nan})
    history.record("c1", "web", START + 0.5, {"cpu_percent": 20.0, "memory_bytes": 4e9, "network_rx_bytes_per_s": 1e39})
    (point,) = history.query("c1", 10.0, None, START + 1)["points"]
    assert point["cpu_percent"] == {"min": 10.0, "avg": 15.0, "max": 20.0}
    assert point["memory_bytes"] == {"min": 4e9, "avg": 4e9, "max": 4e9}
    assert [key for key in SERIES if point[key] is None] == list(SERIES[2:])


def test_the_answer_names_the_container_by_its_latest_name_and_an_unknown_id_is_a_key_error() -> None:
    history = ContainerHistory(TIERS)
    history.record("c1", "web", NOW - 2, full(1.0))
    history.record("c1", "web-renamed", NOW - 1, full(1.0))
    answer = history.query("c1", 10.0, None, NOW)
    assert (answer["id"], answer["name"], history.name_of("c1")) == ("c1", "web-renamed", "web-renamed")
    with pytest.raises(KeyError):
        history.query("nope", 10.0, None, NOW)
    with pytest.raises(KeyError):
        history.name_of("nope")


def test_forget_and_retain_drop_removed_containers() -> None:
    history = ContainerHistory(TIERS)
    for cid in ("a", "b", "c", "d"):
        history.record(cid, cid, NOW, full(1.0))
    history.forget("a")
    history.forget("never-seen")
    assert history.ids() == ["b", "c", "d"]
    history.retain(iter(["c", "x"]))
    assert history.ids() == ["c"]
    with pytest.raises(KeyError):
        history.query("b", 10.0, None, NOW)


def filled(count: int = 3) -> ContainerHistory:
    history = ContainerHistory(TIERS)
    for cid in range(count):
        for s in range(80):
            history.record(
                f"{cid:064x}", f"app-{cid}", NOW - s * 0.75, {"cpu_percent": s * 1.5 + cid, "memory_bytes": 1e8 + s}
            )
    return history


def answers(history: ContainerHistory) -> dict[str, list[dict[str, Any]]]:
    return {
        cid: [history.query(cid, s, step, NOW) for s, step in ((10, None), (60, None), (60, 20))]
        for cid in history.ids()
    }


def test_a_written_history_loads_back_to_the_same_answers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    history = filled()
    path = tmp_path / "history.bin"
    path.write_bytes(b"the previous file")
    history.snapshot().write(path)
    loaded = ContainerHistory.load(path, TIERS)
    assert loaded.ids() == history.ids()
    assert answers(loaded) == answers(history)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["history.bin"]  # no temporary file left beside it
    assert caplog.records == []


def test_a_snapshot_is_a_copy_that_later_readings_do_not_change(tmp_path: Path) -> None:
    history = filled(1)
    (cid,) = history.ids()
    snapshot = history.snapshot()
    before = answers(history)
    history.record(cid, "app-0", NOW, full(1e6))
    snapshot.write(tmp_path / "history.bin")
    assert answers(ContainerHistory.load(tmp_path / "history.bin", TIERS)) == before


def test_a_missing_file_is_an_empty_history_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert ContainerHistory.load(tmp_path / "absent.bin", TIERS).ids() == []
    assert caplog.records == []


def _with_header(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    length = int.from_bytes(data[8:12], "little")
    header = json.loads(data[12 : 12 + length])
    change(header)
    encoded = json.dumps(header).encode()
    return data[:8] + len(encoded).to_bytes(4, "little") + encoded + data[12 + length :]


BAD_FILES: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "garbage": lambda data: bytes(range(256)) * 16,
    "the header only": lambda data: data[: 12 + int.from_bytes(data[8:12], "little")],
    "cut in the header": lambda data: data[:40],
    "cut in half": lambda data: data[: len(data) // 2],
    "one byte short": lambda data: data[:-1],
    "one byte more": lambda data: data + b"\0",
    "a flipped byte in a body": lambda data: data[:-20] + bytes([data[-20] ^ 0xFF]) + data[-19:],
    "another version": lambda data: _with_header(data, lambda h: h.update(version=2)),
    "a malformed container list": lambda data: _with_header(data, lambda h: h.update(containers={"id": 1})),
    "an empty header": lambda data: _with_header(data, lambda h: h.clear()),
    "a header that is not an object": lambda data: data[:8] + (3).to_bytes(4, "little") + b"[1]" + data[8:],
}


@pytest.mark.parametrize("damage", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_an_unreadable_or_foreign_file_is_an_empty_history_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "history.bin"
    filled().snapshot().write(path)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="moorage.metrics.history"):
        assert ContainerHistory.load(path, TIERS).ids() == []
    assert [(r.levelno, str(path) in r.getMessage()) for r in caplog.records] == [(logging.WARNING, True)]


def test_a_file_of_other_tiers_loads_empty_under_the_configured_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.bin"
    filled().snapshot().write(path)
    assert ContainerHistory.load(path, ((1.0, 10.0), (5.0, 120.0))).ids() == []
    assert [(r.levelno, "tiers" in r.getMessage()) for r in caplog.records] == [(logging.WARNING, True)]


def test_the_default_tiers_cost_what_the_module_says_and_200_containers_stay_within_it() -> None:
    tiers = MetricsSettings().history_tiers
    arrays = (900 + 1440 + 1008) * (8 + len(SERIES) * (4 + 4 + 4 + 2))
    assert arrays == 308_016
    history = ContainerHistory(tiers)
    assert arrays < history.bytes_per_container <= arrays + 4096
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(200):
            history.record(f"{n:064x}", f"container-{n}", NOW, full(1.0))
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Measured on CPython 3.11: 61,961,538 bytes (309,808 a container, 1,792 of it beside the arrays).
    assert 200 * arrays <= used <= 200 * history.bytes_per_container, (
        f"200 containers took {used:,} bytes, {used / 200:,.0f} each; bound {history.bytes_per_container:,} each"
    )


def test_a_step_far_longer_than_the_ring_walks_only_the_ring() -> None:
    """A step of months over the per-second tier: one point of what the ring holds, answered at once."""
    history = ContainerHistory(TIERS)
    for n in range(10):
        history.record("c1", "web", NOW - n, full(float(n)))
    started = time.perf_counter()
    answer = history.query("c1", 5, 10**7, NOW)
    assert time.perf_counter() - started < 0.05
    assert answer["step"] == 10**7 and len(answer["points"]) == 1
