"""Container logs and events against the real engine: every parameter and format, TTY, follow, no leaks."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app

from ..helpers import SERVER_KWARGS, MakeContainer, assert_error, finished, items, make_settings, plain_key

MIXED = "echo out1; echo err1 >&2; sleep 0.1; echo out2; echo err2 >&2"


def lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["stream"], item["line"]) for item in data["items"]]


async def test_json_keeps_stdout_and_stderr_apart_with_timestamps(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, MIXED)
    data = await items(client, container)
    assert data["truncated"] is False
    got = lines(data)
    assert [line for stream, line in got if stream == "stdout"] == ["out1", "out2"]
    assert [line for stream, line in got if stream == "stderr"] == ["err1", "err2"]
    for item in data["items"]:
        assert datetime.fromisoformat(item["timestamp"][:26] + "+00:00")


@pytest.mark.parametrize(("query", "expected"), [("?stdout=false", {"stderr"}), ("?stderr=false", {"stdout"})])
async def test_one_stream_only(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, query: str, expected: set[str]
) -> None:
    container = await finished(make_container, docker, MIXED)
    data = await items(client, container, query)
    assert {stream for stream, _ in lines(data)} == expected and len(data["items"]) == 2


@pytest.mark.parametrize(("tail", "count"), [("0", 0), ("3", 3), ("all", 10), ("100", 10)])
async def test_tail(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, tail: str, count: int
) -> None:
    container = await finished(make_container, docker, "seq 1 10")
    got = [line for _, line in lines(await items(client, container, f"?tail={tail}"))]
    assert got == [str(n) for n in range(11 - count, 11)]


async def test_since_and_until_in_every_form(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, "echo early; sleep 1.5; echo late")
    both = (await items(client, container))["items"]
    early, late = (datetime.fromisoformat(item["timestamp"][:26] + "+00:00") for item in both)
    middle = early + (late - early) / 2
    rfc = middle.isoformat().replace("+00:00", "Z")
    unix = f"{middle.timestamp():.6f}"
    for since in (rfc, unix):
        assert [line for _, line in lines(await items(client, container, f"?since={since}"))] == ["late"]
        assert [line for _, line in lines(await items(client, container, f"?until={since}"))] == ["early"]
    assert len((await items(client, container, "?since=10m"))["items"]) == 2
    assert (await items(client, container, f"?since={(late + timedelta(seconds=5)).timestamp():.3f}"))["items"] == []


async def test_text_and_ndjson_formats(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, "echo one; echo two")
    plain = await client.get(f"/api/v1/containers/{container}/logs?format=text")
    assert plain.content_type == "text/plain"
    assert await plain.text() == "one\ntwo\n"
    stamped = (
        await (await client.get(f"/api/v1/containers/{container}/logs?format=text&timestamps=true")).text()
    ).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two"]
    assert all(line.split(" ", 1)[0].endswith("Z") for line in stamped)
    ndjson = await client.get(f"/api/v1/containers/{container}/logs?format=ndjson")
    assert ndjson.content_type == "application/x-ndjson"
    *parsed, end = [json.loads(line) for line in (await ndjson.text()).splitlines()]
    assert [(p["stream"], p["line"]) for p in parsed] == [("stdout", "one"), ("stdout", "two")]
    assert end == {"end": "done"}


async def test_tty_output_is_split_into_lines(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, "echo first; echo second >&2; printf 'third'", Tty=True)
    assert lines(await items(client, container)) == [("stdout", "first"), ("stdout", "second"), ("stdout", "third")]


async def test_bytes_that_are_not_utf8_are_replaced(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, r"printf '\377\376ok\n'; printf 'caf\303\251\n'")
    assert [line for _, line in lines(await items(client, container))] == ["\ufffd\ufffdok", "café"]
    text = await (await client.get(f"/api/v1/containers/{container}/logs?format=text")).text()
    assert text == "\ufffd\ufffdok\ncafé\n"


async def test_a_long_line_split_by_the_engine_is_joined(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    # The engine stores lines in pieces of 16 KiB: 40,000 characters arrive as three frames.
    container = await finished(make_container, docker, "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after")
    got = lines(await items(client, container))
    assert got == [("stdout", "x" * 40000), ("stdout", "after")]


@pytest.fixture
async def capped(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    """A client of an app that keeps 5 lines in a JSON page and allows 3 streams."""
    settings = make_settings(tmp_path, {"test-admin": "admin"}, logs={"max_lines": 5}, server={"max_streams": 3})
    return await aiohttp_client(
        create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")}
    )


@pytest.mark.parametrize(("count", "truncated"), [(5, False), (6, True), (50, True)])
async def test_the_json_page_is_capped_and_says_so(
    capped: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, count: int, truncated: bool
) -> None:
    container = await finished(make_container, docker, f"seq 1 {count}")
    data = await items(capped, container)
    assert data["truncated"] is truncated
    assert [line for _, line in lines(data)] == [str(n) for n in range(1, min(count, 5) + 1)]


async def test_streams_beyond_the_cap_are_a_429(capped: TestClient, make_container: MakeContainer) -> None:
    running = await make_container(cmd=["sleep", "600"], start=True)
    opened = [await capped.get(f"/api/v1/containers/{running['Id']}/logs?follow=true") for _ in range(3)]
    assert all(resp.status == 200 for resp in opened)
    refused = await capped.get(f"/api/v1/containers/{running['Id']}/logs?follow=true")
    assert refused.status == 429
    assert_error(await refused.json(), 429)
    for resp in opened:
        resp.close()


async def test_follow_sees_new_lines_and_ends_when_the_container_stops(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    running = await make_container(
        cmd=["sh", "-c", "echo ready; read line; echo later; sleep 600"], start=True, OpenStdin=True
    )
    resp = await client.get(f"/api/v1/containers/{running['Id']}/logs?follow=true")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "Content-Length" not in resp.headers
    assert await asyncio.wait_for(resp.content.readline(), 5) == b"ready\n"
    # Only now is "later" written: the stream must bring it within a second.
    stdin = docker.containers.container(running["Id"]).attach(stdin=True, stdout=False, stderr=False)
    async with stdin:
        await stdin.write_in(b"go\n")
    started = time.monotonic()
    assert await asyncio.wait_for(resp.content.readline(), 5) == b"later\n"
    assert time.monotonic() - started < 1
    await docker.containers.container(running["Id"]).kill()
    assert await asyncio.wait_for(resp.content.read(), 10) == b""  # the stream ends cleanly


async def test_follow_in_ndjson(client: TestClient, make_container: MakeContainer) -> None:
    running = await make_container(cmd=["sh", "-c", "echo hello >&2; sleep 600"], start=True)
    resp = await client.get(f"/api/v1/containers/{running['Id']}/logs?follow=true&format=ndjson")
    event = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
    assert (event["stream"], event["line"]) == ("stderr", "hello")
    resp.close()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tail=-1", "tail"),
        ("tail=some", "tail"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("since=2026-01-01T00:00:00", "since"),
        ("since=100&until=50", "until"),
        ("format=xml", "format"),
        ("follow=true&format=json", "format"),
        ("stdout=false&stderr=false", "stdout"),
        ("timestamps=perhaps", "timestamps"),
        ("lines=5", "lines"),
        ("grep=(unclosed", "grep"),
        ("grep=a(?=b)", "grep"),  # lookahead: not RE2's
        ("grep=", "grep"),
        ("grep_invert=true", "grep_invert"),
        ("grep_ignore_case=true", "grep_ignore_case"),
        ("count=true&follow=true", "count"),
        ("count=true&format=text", "count"),
        ("count=maybe", "count"),
        ("parse=yaml", "parse.0"),
        ("parse=json&format=text", "parse"),
        ("download=perhaps", "download"),
        ("download=true&follow=true", "download"),
        ("download=true&format=json", "download"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    client: TestClient, make_container: MakeContainer, query: str, field: str
) -> None:
    created = await make_container()
    resp = await client.get(f"/api/v1/containers/{created['Id']}/logs?{query}")
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]


@pytest.mark.parametrize("query", ["", "?follow=true", "?format=ndjson"])
async def test_an_unknown_container_is_a_404_before_any_stream(client: TestClient, query: str) -> None:
    resp = await client.get(f"/api/v1/containers/no-such-container-x/logs{query}")
    assert resp.status == 404
    assert_error(await resp.json(), 404)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle(measure: Any, target: int, slack: int, seconds: float = 10) -> int:
    """The measure once it is back within `slack` of `target`, or when `seconds` ran out."""
    for _ in range(int(seconds * 10)):
        if (value := measure()) <= target + slack:
            return int(value)
        await asyncio.sleep(0.1)
    return int(measure())


async def test_200_dropped_follow_streams_leave_no_task_connection_or_fd(
    client: TestClient, make_container: MakeContainer
) -> None:
    running = await make_container(cmd=["sh", "-c", "echo up; sleep 600"], start=True)
    url = f"/api/v1/containers/{running['Id']}/logs?follow=true"
    warm = await client.get(url)  # the first request opens pools and starts tasks that stay for good
    await warm.content.readline()
    warm.close()
    await asyncio.sleep(0.2)
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    for batch in range(4):
        opened = [await client.get(url) for _ in range(50)]
        firsts = [await asyncio.wait_for(resp.content.readline(), 5) for resp in opened]
        assert firsts == [b"up\n"] * 50, batch
        for resp in opened:
            resp.close()
    assert await settle(open_fds, fds, 2) <= fds + 2
    assert await settle(lambda: len(asyncio.all_tasks()), tasks, 0) <= tasks


async def test_events_stream_container_events_with_filters(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    since = f"{time.time() - 1:.3f}"
    made = await make_container(start=True)
    until = f"{time.time() + 1:.3f}"
    resp = await client.get(f"/api/v1/events?since={since}&until={until}&type=container")
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    *events, end = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert end == {"end": "done"}  # the window is complete
    mine = [(e["action"], e["name"]) for e in events if e["id"] == made["Id"]]
    assert ("create", made["Name"].lstrip("/")) in mine and ("start", made["Name"].lstrip("/")) in mine
    assert all(e["type"] == "container" and e["time"].endswith("Z") for e in events)
    images_only = await client.get(f"/api/v1/events?since={since}&until={until}&type=image")
    *images, end = [json.loads(line) for line in (await images_only.text()).splitlines()]
    assert all(event["type"] == "image" for event in images) and end == {"end": "done"}


async def test_events_follow_live(client: TestClient, make_container: MakeContainer) -> None:
    resp = await client.get("/api/v1/events?type=container")
    assert resp.status == 200
    made = await make_container()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        event = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
        if event["id"] == made["Id"]:
            assert event["action"] == "create"
            break
    else:
        raise AssertionError("the create event did not arrive")
    resp.close()


@pytest.mark.parametrize(
    ("query", "field"), [("type=thing", "type.0"), ("since=soon", "since"), ("until=1&since=2", "until")]
)
async def test_bad_event_parameters_are_a_400(client: TestClient, query: str, field: str) -> None:
    resp = await client.get(f"/api/v1/events?{query}")
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]
