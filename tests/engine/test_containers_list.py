"""GET /api/v1/containers against the real engine: filters, paging, total, order, item shape, bad parameters."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiodocker
import pytest

from moorage.schemas.containers import ContainerSummarySchema

from ..helpers import TEST_IMAGE, TEST_LABEL, MakeContainer, assert_error


async def listed(client: Any, case_label: str, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/api/v1/containers?label={TEST_LABEL}={case_label}{query}")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


@pytest.fixture
async def three(make_container: MakeContainer, docker: aiodocker.Docker) -> dict[str, dict[str, Any]]:
    """A created, a running and an exited container, made in that order."""
    created = await make_container(labels={"role": "idle", "tier": "back"})
    running = await make_container(
        start=True,
        labels={"role": "web", "tier": "front"},
        ExposedPorts={"80/tcp": {}},
        host_config={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}},
    )
    exited = await make_container(cmd=["true"], start=True, labels={"role": "job", "tier": "back"})
    await docker.containers.container(exited["Id"]).wait()
    return {"created": created, "running": running, "exited": exited}


def names(data: dict[str, Any]) -> list[str]:
    return [item["name"] for item in data["items"]]


def name_of(container: dict[str, Any]) -> str:
    return container["Name"].lstrip("/")


async def test_lists_newest_first_with_total(client: Any, case_label: str, three: dict[str, Any]) -> None:
    data = await listed(client, case_label)
    assert data["total"] == 3
    assert names(data) == [name_of(three[k]) for k in ("exited", "running", "created")]


async def test_item_shape(client: Any, case_label: str, three: dict[str, Any]) -> None:
    data = await listed(client, case_label, "&status=running")
    [item] = data["items"]
    running = three["running"]
    assert item["id"] == running["Id"]
    assert item["name"] == name_of(running) and not item["name"].startswith("/")
    assert item["status"] == "running"
    assert item["image"] == TEST_IMAGE
    assert item["created_at"].endswith("Z")
    created = datetime.fromisoformat(item["created_at"])
    assert abs((created - datetime.fromisoformat(running["Created"][:19] + "+00:00")).total_seconds()) < 1
    assert item["labels"] == {TEST_LABEL: case_label, "role": "web", "tier": "front"}
    [binding] = item["ports"]["80/tcp"]
    assert binding["host_ip"] == "127.0.0.1" and 0 < binding["host_port"] < 65536


async def test_items_are_exactly_what_their_schema_declares(
    client: Any, case_label: str, three: dict[str, Any]
) -> None:
    data = await listed(client, case_label)
    assert len(data["items"]) == 3
    assert ContainerSummarySchema(many=True).validate(data["items"]) == {}


@pytest.mark.parametrize("status", ["created", "running", "exited"])
async def test_status_filter(client: Any, case_label: str, three: dict[str, Any], status: str) -> None:
    data = await listed(client, case_label, f"&status={status}")
    assert data["total"] == 1
    assert names(data) == [name_of(three[status])]
    assert data["items"][0]["status"] == status


async def test_status_filter_paused_finds_none(client: Any, case_label: str, three: dict[str, Any]) -> None:
    assert (await listed(client, case_label, "&status=paused")) == {"total": 0, "items": []}


async def test_name_filter_is_a_substring_match(client: Any, case_label: str, three: dict[str, Any]) -> None:
    full = name_of(three["running"])
    data = await listed(client, case_label, f"&name={full[3:9]}")
    assert names(data) == [full]


async def test_name_filter_dot_is_literal(client: Any, case_label: str, make_container: MakeContainer) -> None:
    await make_container(name=f"dot-{case_label}.x")
    await make_container(name=f"dot-{case_label}ax")
    data = await listed(client, case_label, f"&name={case_label}.x")
    assert names(data) == [f"dot-{case_label}.x"]


async def test_label_filters_by_key_and_by_key_value_and_combine(
    client: Any, case_label: str, three: dict[str, Any]
) -> None:
    assert (await listed(client, case_label, "&label=role"))["total"] == 3
    back = await listed(client, case_label, "&label=tier=back")
    assert sorted(names(back)) == sorted([name_of(three["created"]), name_of(three["exited"])])
    both = await listed(client, case_label, "&label=tier=back&label=role=job")
    assert names(both) == [name_of(three["exited"])]
    assert (await listed(client, case_label, "&label=no-such-label"))["total"] == 0


async def test_paging_keeps_the_total(client: Any, case_label: str, three: dict[str, Any]) -> None:
    everything = names(await listed(client, case_label))
    page = await listed(client, case_label, "&limit=1&offset=1")
    assert page["total"] == 3 and names(page) == everything[1:2]
    page = await listed(client, case_label, "&limit=2&offset=2")
    assert page["total"] == 3 and names(page) == everything[2:]
    assert await listed(client, case_label, "&offset=3") == {"total": 3, "items": []}


async def test_default_limit_is_100(client: Any) -> None:
    resp = await client.get("/api/v1/containers")
    data = (await resp.json())["data"]
    assert len(data["items"]) == min(100, data["total"])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("status=", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("limit=1&limit=2", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("name=a/b", "name"),
        ("name=", "name"),
        ("name=.*", "name"),
        ("label=", "label.0"),
        ("label=a&label==b", "label.1"),
        ("sort=name", "sort"),
    ],
)
async def test_bad_parameter_is_a_400_naming_it(client: Any, query: str, field: str) -> None:
    resp = await client.get(f"/api/v1/containers?{query}")
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, 400)
    assert [e["field"] for e in body["errors"]] == [field]


async def test_several_bad_parameters_are_all_named(client: Any) -> None:
    resp = await client.get("/api/v1/containers?limit=0&offset=-1&status=nope")
    body = await resp.json()
    assert resp.status == 400
    assert sorted(e["field"] for e in body["errors"]) == ["limit", "offset", "status"]


async def test_concurrent_lists_agree(client: Any, case_label: str, three: dict[str, Any]) -> None:
    results = await asyncio.gather(*(listed(client, case_label) for _ in range(20)))
    assert all(r == results[0] for r in results)


async def test_success_is_the_envelope(client: Any) -> None:
    resp = await client.get("/api/v1/containers?limit=1")
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"code", "message", "data"}
    assert body["code"] == 200 and body["message"] == "success"
