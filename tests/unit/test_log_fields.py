"""The fields `parse=` reads from a line: the object of a JSON line, and a level in the forms apps write."""

from __future__ import annotations

import pytest

from moorage.logs.fields import LineFields, json_object, level_of


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('{"level":"warn","msg":"disk at 91%"}', "warn"),
        ('{"level":50,"msg":"pino error"}', "error"),
        ('{"level":30,"msg":"pino info"}', "info"),
        ('{"severity":"CRITICAL","message":"gcp"}', "fatal"),
        ('{"log.level":"debug","message":"ecs"}', "debug"),
        ("time=2026-12-04T10:00:00Z level=error msg=boom", "error"),
        ("ts=1 lvl=WARNING caller=main.go:12", "warn"),
        ('app: {"level": "info", "msg": "prefixed json"}', "info"),
        ("2026-12-04 10:00:00 [warn] upstream slow", "warn"),
        ("ERROR: relation does not exist", "error"),
        ("2026/12/04 10:00:00 [notice] 1#1: nginx started", "info"),
        ("W1204 10:00:00 klog style is not read", None),
        ("an error happened in lower case prose", None),
        ("plain line", None),
        ('{"level":true}', None),
    ],
)
def test_the_level_is_read_from_common_forms(line: str, level: str | None) -> None:
    assert level_of(line, json_object(line)) == level


def test_a_level_word_far_into_the_line_is_not_its_level() -> None:
    assert level_of("x" * 100 + " ERROR", None) is None


@pytest.mark.parametrize("line", ["[1, 2]", '{"a": ', "{not json}", '"text"', ""])
def test_only_a_whole_json_object_is_a_lines_object(line: str) -> None:
    assert json_object(line) is None


def test_fields_are_added_only_as_asked() -> None:
    item = {"line": '{"level":"error","n":1}'}
    assert LineFields(json=True, level=False).added(dict(item)) == {**item, "json": {"level": "error", "n": 1}}
    assert LineFields(json=False, level=True).added(dict(item)) == {**item, "level": "error"}
    assert not LineFields(json=False, level=False)
