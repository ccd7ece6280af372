"""The audit log's rotation and its reader, on real files: lines newest first across rotations, never split or
lost, blocks that cut lines, filters, paging, and files renamed or gone under a query."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.access.audit import AuditLog, rotated
from moorage.access.auditquery import AuditFilter, backwards, read_page

MAX_BYTES = 1024


@pytest.fixture
def opened() -> Iterator[Callable[..., AuditLog]]:
    """Audit logs opened at tmp paths, closed at the end of the test."""
    logs: list[AuditLog] = []

    def open_log(path: Path, **options: Any) -> AuditLog:
        audit = AuditLog(path, fold_seconds=0, **options)
        audit.open()
        logs.append(audit)
        return audit

    yield open_log
    for audit in logs:
        audit.close()


@pytest.fixture
def written(opened: Callable[..., AuditLog]) -> Callable[[Path, int], AuditLog]:
    def write(path: Path, count: int) -> AuditLog:
        """An audit log of `count` calls numbered in `request_id`, rotated at MAX_BYTES, two rotations kept."""
        audit = opened(path, max_bytes=MAX_BYTES, keep=2)
        for number in range(count):
            assert audit.write(key=f"key-{number % 3}", method="POST", result=200, request_id=str(number))
        return audit

    return write


Written = Callable[[Path, int], AuditLog]


def on_disk(audit: AuditLog) -> list[list[dict[str, Any]]]:
    """Each file's lines in the order written, newest file first."""
    return [[json.loads(line) for line in path.read_text().splitlines()] for path in audit.files() if path.exists()]


def numbers(entries: list[dict[str, Any]]) -> list[int]:
    return [int(entry["request_id"]) for entry in entries]


def query(audit: AuditLog, match: AuditFilter | None = None, offset: int = 0, limit: int = 1000) -> Any:
    return read_page(audit.snapshot, match or AuditFilter(), offset, limit)


def test_a_line_that_would_pass_max_bytes_rotates_the_file_first_and_the_oldest_is_dropped(
    tmp_path: Path, written: Written
) -> None:
    audit = written(tmp_path / "audit.log", 40)
    files = on_disk(audit)
    assert len(files) == 3 and not rotated(audit.path, 3).exists()
    for path in audit.files():
        assert 0 < path.stat().st_size <= MAX_BYTES
        assert path.stat().st_mode & 0o777 == 0o600
    # Consecutive, none split (each line parses) and none lost between the kept files; the oldest are gone.
    kept = [n for lines in reversed(files) for n in numbers(lines)]
    assert kept == list(range(kept[0], 40)) and kept[0] > 0
    total, page = query(audit)
    assert total == len(kept) and numbers(page) == kept[::-1]


def test_max_bytes_0_never_rotates(tmp_path: Path, opened: Callable[..., AuditLog]) -> None:
    audit = opened(tmp_path / "audit.log", max_bytes=0)
    for number in range(50):
        audit.write(key="k", result=200, request_id=str(number))
    assert [len(lines) for lines in on_disk(audit)] == [50]


def test_a_line_longer_than_max_bytes_is_written_whole_in_a_file_of_its_own(tmp_path: Path, written: Written) -> None:
    audit = written(tmp_path / "audit.log", 2)
    audit.write(key="k", result=200, request_id="2", detail={"words": ["x" * 200] * 10})
    audit.write(key="k", result=200, request_id="3")
    assert [numbers(lines) for lines in on_disk(audit)] == [[3], [2], [0, 1]]


def test_the_log_reopened_goes_on_counting_the_bytes_of_the_file_it_finds(tmp_path: Path, written: Written) -> None:
    written(tmp_path / "audit.log", 3).close()  # closed twice at the end: a no-op
    audit = written(tmp_path / "audit.log", 40)
    assert all(path.stat().st_size <= MAX_BYTES for path in audit.files())


def test_a_rotation_that_cannot_make_its_file_loses_no_line(tmp_path: Path, written: Written) -> None:
    audit = written(tmp_path / "audit.log", 3)
    (tmp_path / "audit.log.new").mkdir()  # the new file cannot be made
    for number in range(3, 40):
        assert audit.write(key="k", result=200, request_id=str(number))
    assert [numbers(lines) for lines in on_disk(audit)] == [list(range(40))]
    (tmp_path / "audit.log.new").rmdir()
    audit.write(key="k", result=200, request_id="40")
    assert [numbers(lines) for lines in on_disk(audit)] == [[40], list(range(40))]


@pytest.mark.parametrize("block", [1, 2, 7, 64, 100, 4096])
def test_lines_are_read_last_first_whatever_blocks_cut_them(tmp_path: Path, block: int) -> None:
    lines = [b"a", b"bb" * 60, b"ccc", b"", b"d" * 300, b"e"]
    path = tmp_path / "lines"
    path.write_bytes(b"\n".join(lines) + b"\n" + b'{"being": "writ')  # the last line is not complete yet
    with path.open("rb") as file:
        found = list(backwards(file.fileno(), path.stat().st_size, block))
    assert found == [line for line in reversed(lines) if line]


def test_a_file_of_one_unfinished_line_has_none(tmp_path: Path) -> None:
    path = tmp_path / "lines"
    path.write_bytes(b'{"time": "2026')
    with path.open("rb") as file:
        assert list(backwards(file.fileno(), path.stat().st_size, 4)) == []


def test_pages_are_newest_first_and_total_counts_every_match(tmp_path: Path, written: Written) -> None:
    audit = written(tmp_path / "audit.log", 40)
    total, everything = query(audit)
    assert numbers(everything) == sorted(numbers(everything), reverse=True)
    pages = [query(audit, offset=offset, limit=4) for offset in range(0, total + 4, 4)]
    assert all(count == total for count, _ in pages)
    assert [n for _, page in pages for n in numbers(page)] == numbers(everything)
    assert pages[-1][1] == []


def test_filters(tmp_path: Path, opened: Callable[..., AuditLog]) -> None:
    audit = opened(tmp_path / "audit.log")
    lines = [
        {"key": "ci", "action": "start_container", "target": "web", "result": 200},
        {"key": "ci", "action": "stop_container", "target": "web", "result": 409},
        {"key": "ops", "action": "create_container", "target": None, "result": 201, "detail": {"id": "c1" * 32}},
        {"key": None, "action": None, "target": None, "result": 401},
        {"key": None, "folded": 7, "results": {"401": 5, "429": 2}, "methods": {"GET": 7}},
        {"key": "ops", "action": "delete_container", "target": "db", "result": 404},
    ]
    for number, line in enumerate(lines):
        audit.write(request_id=str(number), **line)

    def found(**match: Any) -> list[int]:
        total, page = query(audit, AuditFilter(**match))
        assert total == len(page)
        return sorted(numbers(page))

    assert found(key="ci") == [0, 1]
    assert found(actions=frozenset({"start_container", "delete_container"})) == [0, 5]
    assert found(target="web") == [0, 1]
    assert found(target="c1" * 32) == [2]  # a create's new container, from its detail
    assert found(statuses=((401, 401),)) == [3, 4]  # a summary by any status it counted
    assert found(statuses=((400, 499),)) == [1, 3, 4, 5]
    assert found(statuses=((200, 299), (429, 429))) == [0, 2, 4]
    assert found(key="ops", statuses=((400, 499),)) == [5]
    stamps = [entry["time"] for entry in on_disk(audit)[0]]
    assert found(since=stamps[2]) == [n for n, stamp in enumerate(stamps) if stamp >= stamps[2]]
    assert found(until=stamps[2]) == [n for n, stamp in enumerate(stamps) if stamp <= stamps[2]]
    assert found(since="2999-01-01T00:00:00.000Z") == []


def test_a_line_that_is_no_json_object_is_skipped(tmp_path: Path, written: Written) -> None:
    audit = written(tmp_path / "audit.log", 2)
    with audit.path.open("a") as file:
        file.write('{"time": "2026-12-02T0\n[1, 2]\n')  # a write a crash cut short, and a hand edit
    audit.write(key="k", result=200, request_id="2")
    total, page = query(audit)
    assert (total, numbers(page)) == (3, [2, 1, 0])


def test_a_query_reads_what_was_there_when_it_began_though_files_rotate_under_it(
    tmp_path: Path, written: Written
) -> None:
    audit = written(tmp_path / "audit.log", 25)
    before = query(audit)
    snapshot = audit.snapshot()
    for number in range(25, 60):  # rotated several times: every file the snapshot opened is renamed or dropped
        audit.write(key="k", result=200, request_id=str(number))
    assert read_page(lambda: snapshot, AuditFilter(), 0, 1000) == before
    assert numbers(query(audit)[1])[0] == 59


def test_a_file_gone_before_a_query_opens_it_is_skipped(tmp_path: Path, written: Written) -> None:
    audit = written(tmp_path / "audit.log", 25)
    os.unlink(rotated(audit.path, 1))
    total, page = query(audit)
    assert numbers(page) == [n for lines in on_disk(audit)[::-1] for n in numbers(lines)][::-1] and total == len(page)
    assert numbers(page)[0] == 24


def test_queries_from_another_thread_while_lines_rotate_the_files_see_each_kept_line_once(
    tmp_path: Path, written: Written
) -> None:
    audit = written(tmp_path / "audit.log", 1)
    writer = threading.Thread(target=lambda: [audit.write(key="k", request_id=str(n)) for n in range(1, 3000)])
    writer.start()
    seen = []
    while writer.is_alive() or not seen:
        total, page = query(audit)
        seen.append(numbers(page))
        assert total == len(page)
    writer.join()
    for found in seen:  # consecutive: none missed or read twice, whatever the rotations between two opens
        assert found == list(range(found[0], found[0] - len(found), -1)), found
    assert len(seen) > 1 and len({found[0] for found in seen}) > 1  # read while the lines came
