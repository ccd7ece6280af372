"""`parse=json` and `parse=level` against the real engine: the object of a JSON line and the level a line names,
beside the line itself, in the JSON page and in NDJSON alike."""

from __future__ import annotations

import json

import aiodocker
from aiohttp.test_utils import TestClient

from ..helpers import MakeContainer, finished, items

LINES = [
    '{"level":"warn","msg":"disk at 91%","pct":91}',
    '{"level":50,"msg":"pino error"}',
    "time=2026-12-04T10:00:00Z level=error msg=boom",
    "2026-12-04 10:00:00 [info] listening",
    "plain words",
    "[1, 2, 3]",
]
WANT = [
    ({"level": "warn", "msg": "disk at 91%", "pct": 91}, "warn"),
    ({"level": 50, "msg": "pino error"}, "error"),
    (None, "error"),
    (None, "info"),
    (None, None),
    (None, None),
]


def script() -> str:
    return "".join(f"echo '{line}'; " for line in LINES)


async def test_json_and_level_are_read_from_each_line(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, script())
    page = await items(client, container, "?parse=json&parse=level")
    assert [item["line"] for item in page["items"]] == LINES
    assert [(item["json"], item["level"]) for item in page["items"]] == WANT
    resp = await client.get(f"/api/v1/containers/{container}/logs?format=ndjson&parse=level")
    streamed = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [item.get("level", "absent") for item in streamed[:-1]] == [level for _, level in WANT]
    assert all("json" not in item for item in streamed)
    assert streamed[-1] == {"end": "done"}


async def test_without_parse_lines_carry_neither_field(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, script())
    page = await items(client, container)
    assert all(set(item) == {"stream", "timestamp", "line"} for item in page["items"])
