"""GET /api/v1/logs against the real engine: many containers' logs as one stream, each line naming its container,
in timestamp order, equal line for line to what `docker logs --timestamps` gives for each."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import aiodocker
from aiohttp.test_utils import TestClient

from moorage.timestamps import rfc3339_ns
from moorage.web.state import STREAMS

from ..helpers import TEST_LABEL, MakeContainer, app_client, assert_error, finished, key_headers, until

SCRIPT = 'i=0; while [ $i -lt {n} ]; do echo "{who} line $i"; i=$((i+1)); done'


def docker_logs(container: str, *flags: str) -> list[str]:
    out = subprocess.run(["docker", "logs", *flags, container], capture_output=True, check=True, text=True).stdout
    return out.splitlines()


def stamped_lines(container: str) -> list[tuple[str, str]]:
    """(timestamp, line) of every line of the container's log, as `docker logs -t` gives them."""
    return [tuple(line.split(" ", 1)) for line in docker_logs(container, "--timestamps")]  # type: ignore[misc]


async def ndjson(client: TestClient, query: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/v1/logs?{query}")
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/x-ndjson"
    return [json.loads(line) for line in (await resp.text()).splitlines()]


async def test_a_merged_dump_holds_every_line_of_each_container_once_in_timestamp_order(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    made = [await finished(make_container, docker, SCRIPT.format(n=300, who=who)) for who in ("a", "b", "c")]
    made_too = await finished(make_container, docker, SCRIPT.format(n=50, who="d"))
    items = await ndjson(client, f"label={TEST_LABEL}={case_label}")
    assert items[-1] == {"end": "done"}
    lines = [item for item in items if "line" in item]
    joined = [item for item in items if item.get("notice") == "joined"]
    assert sorted(item["container"]["id"] for item in joined) == sorted([*made, made_too])
    for container in [*made, made_too]:
        plain = docker_logs(container)  # the engine's own account, line for line
        mine = [(item["timestamp"], item["line"]) for item in lines if item["container"]["id"] == container]
        assert mine == stamped_lines(container)
        assert len(plain) == len(mine)
    stamps = [item["timestamp"] for item in lines]
    assert stamps == sorted(stamps)


async def test_named_containers_and_a_label_are_one_set_and_tail_since_and_grep_apply_to_each(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    first = await finished(make_container, docker, SCRIPT.format(n=100, who="first"))
    second = await finished(make_container, docker, SCRIPT.format(n=100, who="second"))
    items = await ndjson(client, f"container={first}&container={first[:12]}&container={second}&tail=5&grep=7$")
    lines = [(item["container"]["id"], item["line"]) for item in items if "line" in item]
    want = [line for line in docker_logs(first, "--tail", "5") if line.endswith("7")]
    assert [line for cid, line in lines if cid == first] == want
    assert len([item for item in items if item.get("notice") == "joined"]) == 2


async def test_text_names_each_line_as_compose_does_and_a_zip_holds_a_file_per_container(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    made = [await finished(make_container, docker, SCRIPT.format(n=2000, who=who)) for who in ("x", "y")]
    names = {container: (await docker.containers.container(container).show())["Name"].lstrip("/") for container in made}
    resp = await client.get(f"/api/v1/logs?label={TEST_LABEL}={case_label}&format=text")
    assert resp.status == 200
    text = (await resp.text()).splitlines()
    for container, name in names.items():
        assert [line.split(" | ", 1)[1] for line in text if line.startswith(f"{name} | ")] == docker_logs(container)
    resp = await client.get(f"/api/v1/logs?label={TEST_LABEL}={case_label}&download=zip")
    assert resp.status == 200
    assert resp.content_type == "application/zip"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="logs-')
    archive = zipfile.ZipFile(io.BytesIO(await resp.read()))
    files = sorted(archive.namelist())
    window = r"-[0-9]{8}T[0-9]{6}Z-[0-9]{8}T[0-9]{6}Z\.log$"
    assert [re.sub(window, "", file) for file in files] == sorted(names.values())
    for container, name in names.items():
        (file,) = [file for file in files if file.startswith(f"{name}-")]
        assert archive.read(file).decode().splitlines() == docker_logs(container)


async def test_bad_queries_are_400s_naming_the_field_and_an_unknown_container_is_a_404(client: TestClient) -> None:
    for query, field in (
        ("", "container"),
        ("container=a&download=perhaps", "download"),
        ("label=x&download=true&follow=true", "download"),
        ("label=x&format=json", "format"),
        ("label=x&count=true", "count"),
        ("label=x&parse=json&format=text", "parse"),
        ("label==x", "label.0"),
        ("container=-x", "container.0"),
    ):
        resp = await client.get(f"/api/v1/logs?{query}")
        assert resp.status == 400, query
        body = await resp.json()
        assert_error(body, 400)
        assert [error["field"] for error in body["errors"]] == [field], query
    resp = await client.get("/api/v1/logs?container=moorage-no-such-container")
    assert resp.status == 404
    assert (await resp.json())["message"] == "No such container: moorage-no-such-container"


async def test_nothing_matching_a_label_is_an_empty_stream_that_ends(client: TestClient) -> None:
    assert await ndjson(client, "label=moorage.test.none=carries-this") == [{"end": "done"}]


WINDOW_MS = 1000
# 200 lines in bursts of 20, 50 ms apart, after a pause so that a container that joins is read from its first.
PACED = (
    'sleep 0.5; i=0; while [ $i -lt 200 ]; do echo "{who} line $i"; i=$((i+1));'
    " [ $((i % 20)) = 0 ] && usleep 50000; done; exit {code}"
)


async def read_until_stopped(resp: Any, count: int) -> list[dict[str, Any]]:
    """The stream's items until `count` containers have been told stopped."""
    items: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        while sum(1 for item in items if item.get("notice") == "container_stopped") < count:
            line = await resp.content.readline()
            assert line, f"the stream ended early: {items[-3:]}"
            items.append(json.loads(line))
    return items


async def test_a_followed_merge_of_20_containers_10_started_later_has_every_line_once_in_order_within_the_window(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, case_label: str
) -> None:
    client = await app_client(aiohttp_client, tmp_path, logs={"merge_window_ms": WINDOW_MS})
    paced = [["sh", "-c", PACED.format(who=f"c{n}", code=n)] for n in range(20)]
    early = [(await make_container(cmd=cmd, start=True))["Id"] for cmd in paced[:10]]
    query = f"label={TEST_LABEL}={case_label}&follow=true&tail=all"
    async with client.get(f"/api/v1/logs?{query}", headers=key_headers("viewer-key")) as resp:
        assert resp.status == 200
        late = [(await make_container(cmd=cmd, start=True))["Id"] for cmd in paced[10:]]
        items = await read_until_stopped(resp, 20)
    made = [*early, *late]
    told = [item for item in items if item.get("notice") == "container_stopped"]
    stopped = {item["container"]["id"]: item["exit_code"] for item in told}
    assert stopped == {container: n for n, container in enumerate(made)}
    joined = [item["container"]["id"] for item in items if item.get("notice") == "joined"]
    assert sorted(joined) == sorted(made)
    lines = [item for item in items if "line" in item]
    for container in made:
        mine = [(item["timestamp"], item["line"]) for item in lines if item["container"]["id"] == container]
        assert mine == stamped_lines(container)  # every line, once, in the container's order
    latest = ""
    for item in lines:  # no line comes after one stamped later by more than the window
        latest = max(latest, item["timestamp"])
        assert rfc3339_ns(latest) - rfc3339_ns(item["timestamp"]) <= WINDOW_MS * 10**6, item


async def test_a_container_that_restarts_is_read_again_from_where_it_stopped_without_a_line_twice(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    made = await make_container(cmd=["sh", "-c", 'for i in 1 2 3; do echo "run line $i"; done; exit 3'], start=True)
    await docker.containers.container(made["Id"]).wait()
    query = f"label={TEST_LABEL}={case_label}&follow=true&tail=all"
    async with client.get(f"/api/v1/logs?{query}") as resp:
        assert resp.status == 200
        first = await read_until_stopped(resp, 1)
        await docker.containers.container(made["Id"]).start()
        items = first + await read_until_stopped(resp, 1)
    notices = [(item["notice"], item.get("exit_code")) for item in items if "notice" in item]
    assert notices == [("joined", None), ("container_stopped", 3), ("joined", None), ("container_stopped", 3)]
    lines = [(item["timestamp"], item["line"]) for item in items if "line" in item]
    assert lines == stamped_lines(made["Id"])
    assert len(lines) == 6


async def test_an_event_stream_of_a_merge_resumes_after_its_last_event_id(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    for who in ("a", "b", "c"):
        await finished(make_container, docker, SCRIPT.format(n=100, who=who))
    path = f"/api/v1/logs?label={TEST_LABEL}={case_label}"

    async def events(headers: dict[str, str]) -> list[tuple[str, str]]:
        resp = await client.get(path, headers={"Accept": "text/event-stream", **headers})
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        found = []
        for block in (await resp.text()).split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
            if fields.get("event") == "line":
                found.append((fields["id"], json.loads(fields["data"])["line"]))
        return found

    whole = await events({})
    assert len(whole) == 300
    for k in (0, 149, 298, 299):
        assert await events({"Last-Event-ID": whole[k][0]}) == whole[k + 1 :], k


async def test_a_scoped_key_merges_only_the_containers_its_scope_admits(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    keys = {"team-a": {"role": "viewer", "selector": "team=a"}}
    client = await app_client(aiohttp_client, tmp_path, keys)
    ours = await finished(make_container, docker, SCRIPT.format(n=5, who="a"), labels={"team": "a"})
    theirs = await finished(make_container, docker, SCRIPT.format(n=5, who="b"), labels={"team": "b"})
    resp = await client.get(f"/api/v1/logs?label={TEST_LABEL}={case_label}", headers=key_headers("team-a"))
    assert resp.status == 200
    seen = {json.loads(line)["container"]["id"] for line in (await resp.text()).splitlines() if "container" in line}
    assert seen == {ours}
    resp = await client.get(f"/api/v1/logs?container={theirs}", headers=key_headers("team-a"))
    assert resp.status == 404
    assert (await resp.json())["message"] == f"No such container: {theirs}"


async def test_a_followed_merge_of_named_containers_ends_when_all_of_them_have_stopped(
    client: TestClient, make_container: MakeContainer
) -> None:
    made = [
        (await make_container(cmd=["sh", "-c", f"echo {n}; sleep {n}; exit {n}"], start=True))["Id"] for n in (1, 2)
    ]
    async with asyncio.timeout(30):
        items = await ndjson(client, f"container={made[0]}&container={made[1]}&follow=true")
    assert items[-1] == {"end": "containers_stopped"}
    told = {item["container"]["id"]: item["exit_code"] for item in items if item.get("notice") == "container_stopped"}
    assert told == {made[0]: 1, made[1]: 2}
    assert [item["line"] for item in items if "line" in item] == ["1", "2"]


async def test_a_client_that_leaves_a_followed_merge_frees_every_stream_it_held(
    client: TestClient, make_container: MakeContainer, case_label: str
) -> None:
    for _ in range(3):
        await make_container(cmd=["sh", "-c", "while true; do echo tick; usleep 20000; done"], start=True)
    gate = client.app[STREAMS]
    resp = await client.get(f"/api/v1/logs?label={TEST_LABEL}={case_label}&follow=true")
    assert resp.status == 200
    await resp.content.readline()
    assert gate.in_use == 4  # the merge's own, and one per container
    resp.close()
    await until(lambda: gate.in_use == 0, "the merge's streams to be freed")


async def test_a_followed_merge_until_a_moment_past_reads_to_it_and_ends(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    made = await finished(make_container, docker, SCRIPT.format(n=20, who="past"))
    async with asyncio.timeout(30):
        items = await ndjson(client, f"label={TEST_LABEL}={case_label}&follow=true&until=0s")
    assert items[-1] == {"end": "done"}
    assert [item["line"] for item in items if "line" in item] == docker_logs(made)
