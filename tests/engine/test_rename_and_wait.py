"""Renaming a container and waiting for one, against the real engine (issue 15)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiodocker

from ..helpers import TEST_IMAGE, TEST_LABEL, MakeContainer, app_client, assert_error, docker_cli, key_headers


def engine_name(container: dict[str, Any]) -> str:
    return docker_cli("inspect", "-f", "{{.Name}}", container["Id"]).lstrip("/")


async def test_a_rename_gives_the_container_its_new_name_and_is_audited(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    made = await make_container()
    new = f"mt-renamed-{uuid.uuid4().hex[:8]}"
    resp = await client.post(
        f"/api/v1/containers/{made['Id']}/rename", json={"name": new}, headers=key_headers("admin-key")
    )
    body = await resp.json()
    assert resp.status == 200 and body["data"]["name"] == new and body["data"]["id"] == made["Id"]
    assert engine_name(made) == new
    [line] = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert (line["method"], line["path"], line["result"], line["key"]) == (
        "POST",
        f"/api/v1/containers/{made['Id']}/rename",
        200,
        "admin-key",
    )
    assert line["detail"] == {"id": made["Id"], "name": new}  # what it did, not only what was asked


async def test_a_name_another_container_has_is_409_naming_the_field_and_changes_nothing(
    client: Any, make_container: MakeContainer
) -> None:
    first, second = await make_container(), await make_container()
    resp = await client.post(f"/api/v1/containers/{second['Id']}/rename", json={"name": engine_name(first)})
    body = await resp.json()
    assert resp.status == 409
    assert_error(body, 409)
    assert body["errors"][0]["field"] == "name"
    assert engine_name(second) == second["Name"].lstrip("/")


async def test_a_bad_name_or_body_is_400_naming_the_field(client: Any, make_container: MakeContainer) -> None:
    made = await make_container()
    for sent, field in (({"name": "-starts-with-dash"}, "name"), ({"name": "a/b"}, "name"), ({}, "name"),
                        ({"name": "ok", "extra": 1}, "extra")):  # fmt: skip
        resp = await client.post(f"/api/v1/containers/{made['Id']}/rename", json=sent)
        body = await resp.json()
        assert resp.status == 400, sent
        assert field in {e["field"] for e in body["errors"]}, (sent, body)
    assert engine_name(made) == made["Name"].lstrip("/")


async def test_renaming_needs_an_admin_and_an_unknown_container_is_404(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    made = await make_container()
    resp = await client.post(
        f"/api/v1/containers/{made['Id']}/rename", json={"name": "mt-x-op"}, headers=key_headers("operator-key")
    )
    assert resp.status == 403 and engine_name(made) == made["Name"].lstrip("/")
    resp = await client.post(
        "/api/v1/containers/no-such-container-x/rename", json={"name": "mt-x"}, headers=key_headers("admin-key")
    )
    assert resp.status == 404


async def test_wait_answers_the_exit_code_once_the_container_stops(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    made = await make_container(cmd=["sh", "-c", "sleep 1; exit 3"], start=True)
    resp = await client.post(f"/api/v1/containers/{made['Id']}/wait?timeout=30", headers=key_headers("viewer-key"))
    body = await resp.json()
    assert resp.status == 200 and body["data"] == {"exit_code": 3, "condition": "not-running"}


async def test_a_wait_past_its_timeout_is_504_and_leaves_the_container_running(
    client: Any, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    made = await make_container(start=True)
    resp = await client.post(f"/api/v1/containers/{made['Id']}/wait?condition=next-exit&timeout=1")
    body = await resp.json()
    assert resp.status == 504
    assert_error(body, 504)
    assert body["errors"][0]["field"] == "timeout"
    assert (await docker.containers.container(made["Id"]).show())["State"]["Running"] is True


async def test_wait_for_removal_ends_when_the_container_is_removed(
    client: Any, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    made = await make_container(start=True)
    waiting = asyncio.ensure_future(client.post(f"/api/v1/containers/{made['Id']}/wait?condition=removed&timeout=60"))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await docker.containers.container(made["Id"]).delete(force=True)
    resp = await asyncio.wait_for(waiting, 30)
    body = await resp.json()
    assert resp.status == 200 and body["data"]["condition"] == "removed" and body["data"]["exit_code"] == 137


async def test_a_bad_wait_is_400_naming_the_parameter_and_an_unknown_container_404(
    client: Any, make_container: MakeContainer
) -> None:
    made = await make_container()
    for query, field in (("condition=stopped", "condition"), ("timeout=0", "timeout"), ("timeout=x", "timeout"),
                         ("until=1", "until")):  # fmt: skip
        resp = await client.post(f"/api/v1/containers/{made['Id']}/wait?{query}")
        body = await resp.json()
        assert resp.status == 400 and field in {e["field"] for e in body["errors"]}, (query, body)
    resp = await client.post("/api/v1/containers/no-such-container-x/wait?timeout=5")
    assert resp.status == 404


async def test_a_create_is_audited_with_the_container_it_made(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    name = f"mt-audited-{uuid.uuid4().hex[:8]}"
    body = {"image": TEST_IMAGE, "name": name, "labels": {TEST_LABEL: "audited"}}
    resp = await client.post("/api/v1/containers", json=body, headers=key_headers("admin-key"))
    created = (await resp.json())["data"]
    try:
        assert resp.status == 201
        [line] = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
        assert line["detail"] == {"id": created["id"], "name": name}
    finally:
        docker_cli("rm", "-f", created["id"])
