"""Log grep against the real engine and GNU grep: `?grep=` keeps the lines `docker logs X | grep -E` keeps, in
every format, paged or followed, for TTY and plain containers alike; `count=true` says how many, as `grep -c`
does."""

from __future__ import annotations

import asyncio
import json
import subprocess

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from ..helpers import MakeContainer, finished, items

# Lines a service might write: levels, a request id, an empty line, a line that is only spaces.
SCRIPT = (
    "printf '"
    + r"INFO start\nWARN disk 91%%\n\nerror: Timeout after 30s\nINFO req=ab12 ok\n   \nERROR db down\nINFO done\n'"
)
PATTERNS = ["error", "^INFO", "[0-9]+%$", r"req=[a-f0-9]{4}\b", "^$", "^ *$", "down|done", "o{2,}|t{2}"]


def grep_e(container: str, pattern: str, *flags: str) -> list[str]:
    """What an operator gets from `docker logs X | tr -d '\\r' | grep -E`: a TTY's lines end in a carriage
    return, which moorage's lines do not carry."""
    logs = subprocess.run(["docker", "logs", container], capture_output=True, check=True).stdout
    logs = logs.replace(b"\r\n", b"\n")
    found = subprocess.run(["grep", "-E", *flags, "--", pattern], input=logs, capture_output=True, check=False)
    assert found.returncode in (0, 1), found.stderr
    return found.stdout.decode().splitlines()


@pytest.mark.parametrize("tty", [False, True], ids=["plain", "tty"])
async def test_grep_keeps_what_grep_e_keeps(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, tty: bool
) -> None:
    container = await finished(make_container, docker, SCRIPT, Tty=tty)
    for pattern in PATTERNS:
        for flags, query in (((), ""), (("-i",), "&grep_ignore_case=true"), (("-v",), "&grep_invert=true")):
            params = {"grep": pattern, "format": "text"}
            resp = await client.get(f"/api/v1/containers/{container}/logs?{query.lstrip('&')}", params=params)
            assert resp.status == 200, await resp.text()
            want = grep_e(container, pattern, *flags)
            assert (await resp.text()).splitlines() == want, (pattern, flags)
            counted = await client.get(
                f"/api/v1/containers/{container}/logs?{query.lstrip('&')}", params={"grep": pattern, "count": "true"}
            )
            assert (await counted.json())["data"] == {"count": len(want)}, (pattern, flags)


async def test_grep_in_json_and_ndjson_with_timestamps_matches_the_text_not_the_stamp(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, SCRIPT)
    stamped = await items(client, container, "?timestamps=true&grep=^[0-9]")  # a stamp begins with a digit
    assert stamped["items"] == []
    info = await items(client, container, "?timestamps=true&grep=^INFO")
    assert [item["line"] for item in info["items"]] == ["INFO start", "INFO req=ab12 ok", "INFO done"]
    assert all(item["timestamp"].endswith("Z") for item in info["items"])
    resp = await client.get(f"/api/v1/containers/{container}/logs", params={"grep": "ERROR", "format": "ndjson"})
    assert [line for line in (await resp.text()).splitlines()][-1] == '{"end":"done"}'
    assert '"line":"ERROR db down"' in await resp.text()


async def test_count_without_grep_counts_the_window(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, "seq 1 25000")
    resp = await client.get(f"/api/v1/containers/{container}/logs?count=true")
    assert (await resp.json())["data"] == {"count": 25000}
    tail = await client.get(f"/api/v1/containers/{container}/logs?count=true&tail=10&grep=0$")
    assert (await tail.json())["data"] == {"count": 1}, "the tail is taken first, as docker logs --tail | grep"


async def test_a_pattern_that_backtracks_elsewhere_runs_in_linear_time(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    # (a+)+$ over 'aaa...!' takes a backtracking engine 2^n steps; RE2 reads the line once.
    container = await finished(make_container, docker, "printf 'a%.0s' $(seq 1 5000); echo '!'; echo aaa")
    resp = await client.get(f"/api/v1/containers/{container}/logs", params={"grep": "^(a+)+$", "format": "text"})
    assert await resp.text() == "aaa\n"


async def test_a_followed_log_brings_only_new_matching_lines(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    script = "echo 'INFO up'; echo 'ERROR early'; read go; echo 'INFO later'; echo 'ERROR later'; sleep 600"
    running = await make_container(cmd=["sh", "-c", script], start=True, OpenStdin=True)
    query = {"follow": "true", "format": "ndjson", "grep": "^ERROR"}
    resp = await client.get(f"/api/v1/containers/{running['Id']}/logs", params=query)
    assert json.loads(await asyncio.wait_for(resp.content.readline(), 5))["line"] == "ERROR early"
    stdin = docker.containers.container(running["Id"]).attach(stdin=True, stdout=False, stderr=False)
    async with stdin:
        await stdin.write_in(b"go\n")
    assert json.loads(await asyncio.wait_for(resp.content.readline(), 5))["line"] == "ERROR later"
    await docker.containers.container(running["Id"]).kill()
    assert json.loads(await asyncio.wait_for(resp.content.readline(), 10))["end"] == "container_stopped"
