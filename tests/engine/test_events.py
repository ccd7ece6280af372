"""Events a script can filter, against the real engine: by container, label, action and type, healthchecks' exec
events left out unless asked for, each event with its container's name, image and labels, `health_status` and
`exec_start` split from what follows their colon, a `die`'s exit code."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.schemas.events import EventSchema

from ..helpers import HEALTHY, TEST_IMAGE, TEST_LABEL, MakeContainer, app_client, key_headers, until_health


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, auth={"secret_labels": ["db.password"]})


async def window(client: TestClient, since: float, query: str = "", key: str = "admin-key") -> list[dict[str, Any]]:
    resp = await client.get(
        f"/api/v1/events?since={since:.3f}&until={time.time():.3f}&{query}", headers=key_headers(key)
    )
    assert resp.status == 200, await resp.text()
    *events, end = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert end == {"end": "done"}
    assert [errors for event in events if (errors := EventSchema().validate(event))] == []
    return events


@pytest.fixture
async def happened(make_container: MakeContainer, docker: aiodocker.Docker, case_label: str) -> dict[str, Any]:
    """A window in which a container with a healthcheck became healthy, and two others, one named as the other's
    beginning, ran and exited 3. (The last test's containers may die in it too: filters name this case's.)"""
    since = time.time()
    checked = await make_container(
        name=f"ev-{time.time_ns()}", start=True, Healthcheck=HEALTHY, labels={"db.password": "hunter2", "tier": "web"}
    )
    await until_health(docker, checked["Id"], "healthy")
    short = checked["Name"].lstrip("/") + "-x"
    exited = await make_container(name=short, cmd=["sh", "-c", "exit 3"], start=True)
    longer = await make_container(name=short + "y", cmd=["sh", "-c", "exit 3"], start=True)
    for made in (exited, longer):
        await docker.containers.container(made["Id"]).wait()
    await asyncio.sleep(0.3)  # the healthcheck ran again meanwhile
    return {
        "since": since,
        "checked": checked,
        "exited": exited,
        "longer": longer,
        "case": f"{TEST_LABEL}={case_label}",
    }


async def test_events_name_their_container_and_split_the_engines_actions(
    client: TestClient, happened: dict[str, Any]
) -> None:
    events = await window(client, happened["since"], "type=container")
    checked = happened["checked"]
    mine = [e for e in events if e["id"] == checked["Id"]]
    assert {e["name"] for e in mine} == {checked["Name"].lstrip("/")} and {e["image"] for e in mine} == {TEST_IMAGE}
    assert all(e["labels"]["tier"] == "web" and e["labels"][TEST_LABEL] for e in mine)
    health = [e for e in mine if e["action"] == "health_status"]
    assert health and health[0]["health"] == "healthy"
    assert not [e for e in events if e["action"].startswith("exec_")], "a healthcheck's exec events are left out"
    died = [e for e in events if e["id"] == happened["exited"]["Id"] and e["action"] == "die"]
    assert [e["exit_code"] for e in died] == [3]
    execs = await window(client, happened["since"], f"exclude_exec=false&container={checked['Id'][:12]}")
    starts = [e for e in execs if e["action"] == "exec_start"]
    assert starts and all(e["command"] == "true" for e in starts)


async def test_filters_by_container_label_and_action(client: TestClient, happened: dict[str, Any]) -> None:
    exited, longer = happened["exited"], happened["longer"]
    by_name = await window(client, happened["since"], f"container={exited['Name'].lstrip('/')}")
    assert {e["id"] for e in by_name} == {exited["Id"]}, "a name is the whole name, not the names it begins"
    by_both = await window(client, happened["since"], f"container={exited['Id'][:12]}&container={longer['Id']}")
    assert {e["id"] for e in by_both} == {exited["Id"], longer["Id"]}
    by_label = await window(client, happened["since"], f"label=tier=web&label={happened['case']}")
    assert {e["id"] for e in by_label} == {happened["checked"]["Id"]}, "labels are all required, as docker's are"
    dies = await window(client, happened["since"], f"action=die&label={happened['case']}")
    assert sorted(e["id"] for e in dies) == sorted([exited["Id"], longer["Id"]])
    assert all(e["action"] == "die" for e in dies)
    healthy = await window(client, happened["since"], "action=health_status&action=start")
    assert {e["action"] for e in healthy} <= {"health_status", "start"} and {"health_status", "start"} <= {
        e["action"] for e in healthy
    }


async def test_a_key_that_may_not_read_secrets_gets_secret_labels_null(
    client: TestClient, happened: dict[str, Any]
) -> None:
    checked = happened["checked"]["Id"]
    viewer = [e for e in await window(client, happened["since"], key="viewer-key") if e["id"] == checked]
    assert viewer and all(e["labels"]["db.password"] is None and e["redacted"] == ["labels"] for e in viewer)
    assert "hunter2" not in json.dumps(viewer)
    admin = [e for e in await window(client, happened["since"]) if e["id"] == checked]
    assert all(e["labels"]["db.password"] == "hunter2" and e["redacted"] == [] for e in admin)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("action=Die!", "action.0"),
        ("container=../x", "container.0"),
        ("label==x", "label.0"),
        ("exclude_exec=maybe", "exclude_exec"),
        ("format=json", "format"),
    ],
)
async def test_bad_event_filters_are_a_400_naming_them(client: TestClient, query: str, field: str) -> None:
    resp = await client.get(f"/api/v1/events?{query}", headers=key_headers("viewer-key"))
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]


def sse_events(body: str) -> list[dict[str, str]]:
    blocks = [dict(line.split(": ", 1) for line in block.splitlines()) for block in body.strip().split("\n\n")]
    return [block for block in blocks if "event" in block]


async def test_events_as_sse_are_named_for_their_type_and_resume_after_an_id(
    client: TestClient, happened: dict[str, Any]
) -> None:
    query = f"since={happened['since']:.3f}&until={time.time():.3f}&label={happened['case']}"
    resp = await client.get(
        f"/api/v1/events?{query}", headers={**key_headers("admin-key"), "Accept": "text/event-stream"}
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    *whole, end = sse_events(await resp.text())
    assert (end["event"], json.loads(end["data"])) == ("end", {"end": "done"})
    assert len(whole) > 5 and {e["event"] for e in whole} == {"container"}
    assert [json.loads(e["data"])["type"] for e in whole] == ["container"] * len(whole)
    assert [e["id"].split(":")[0] for e in whole] == [str(json.loads(e["data"])["time_nano"]) for e in whole]
    for cut in (0, len(whole) // 2, len(whole) - 1):
        headers = {**key_headers("admin-key"), "Last-Event-ID": whole[cut]["id"]}
        again = await client.get(f"/api/v1/events?format=sse&{query}", headers=headers)
        assert [e["id"] for e in sse_events(await again.text())[:-1]] == [e["id"] for e in whole[cut + 1 :]]


async def test_a_container_killed_for_memory_has_oom_events_before_its_die_with_exit_code_137(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    since = time.time()
    # A shell that holds 64 MiB in a variable, in a container allowed 16 MiB and no swap.
    greedy = 'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo survived'
    made = await make_container(
        cmd=["sh", "-c", greedy], start=True, host_config={"Memory": 16 << 20, "MemorySwap": 16 << 20}
    )
    await docker.containers.container(made["Id"]).wait()
    events = await window(client, since, f"container={made['Id']}&action=oom&action=die")
    *ooms, died = [(e["action"], e.get("exit_code")) for e in events]
    assert died == ("die", 137)
    assert ooms and set(ooms) == {("oom", None)}  # one for each process the kernel killed for it
