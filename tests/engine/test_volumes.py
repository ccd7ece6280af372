"""Volumes against the real engine, cross-checked with `docker volume ls` and `docker volume inspect`: the list and
its filters and paging, the detail (users, size), create within the policy, delete (in use: 409), and the roles."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from ..helpers import TEST_LABEL, MakeContainer, app_client, assert_error, docker_cli, key_headers

ADMIN = key_headers("admin-key")
MakeVolume = Callable[..., str]


@pytest.fixture
def make_volume(case_label: str) -> Iterator[MakeVolume]:
    """Make a volume with the docker CLI, labelled with this test's case label; every volume with that label
    (those the API made included) is removed after the test."""

    def make(*labels: str, name: str | None = None) -> str:
        name = name or f"mv-{uuid.uuid4().hex[:10]}"
        flags = [arg for label in labels for arg in ("--label", label)]
        return docker_cli("volume", "create", "--label", f"{TEST_LABEL}={case_label}", *flags, name)

    yield make
    for name in cli_names(f"label={TEST_LABEL}={case_label}"):
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)


def cli_names(*filters: str) -> list[str]:
    """`docker volume ls -q` with these filters."""
    return docker_cli("volume", "ls", "-q", *(arg for f in filters for arg in ("--filter", f))).split()


def cli_inspect(name: str) -> dict[str, Any]:
    [found] = json.loads(docker_cli("volume", "inspect", name))
    return dict(found)


@pytest.fixture
async def admin(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path)


async def listed(client: TestClient, query: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/volumes?{query}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["data"])


def audited(tmp_path: Path, method: str) -> list[dict[str, Any]]:
    """The details of the audit lines of successful `method` calls to the volumes routes."""
    lines = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    return [e.get("detail") for e in lines if e["method"] == method and "/volumes" in e["path"] and e["result"] < 300]


def mine(case_label: str) -> str:
    return f"label={TEST_LABEL}={case_label}"


async def test_list_filters_match_docker_volume_ls(
    admin: TestClient, make_volume: MakeVolume, make_container: MakeContainer, case_label: str
) -> None:
    red = make_volume("colour=red", "tier")
    blue = make_volume("colour=blue", name=f"mv-blue-{case_label}")
    used = make_volume("colour=red")
    await make_container(host_config={"Binds": [f"{used}:/data"]})
    ours = f"label={TEST_LABEL}={case_label}"
    cases = {
        "": [ours],
        "&label=colour=red": [ours, "label=colour=red"],
        "&label=colour": [ours, "label=colour"],
        "&label=tier": [ours, "label=tier"],
        f"&name=blue-{case_label}": [ours, f"name=blue-{case_label}"],
        "&dangling=true": [ours, "dangling=true"],
        "&dangling=false": [ours, "dangling=false"],
        "&driver=local": [ours, "driver=local"],
    }
    for query, filters in cases.items():
        data = await listed(admin, f"label={TEST_LABEL}={case_label}{query}")
        assert sorted(item["name"] for item in data["items"]) == sorted(cli_names(*filters)), query
        assert data["total"] == len(data["items"])
    assert {v["name"] for v in (await listed(admin, f"{mine(case_label)}&dangling=false"))["items"]} == {used}
    assert {v["name"] for v in (await listed(admin, f"{mine(case_label)}&label=colour=red"))["items"]} == {red, used}
    assert (await listed(admin, f"{mine(case_label)}&name=blue-{case_label}"))["items"][0]["name"] == blue
    assert (await listed(admin, f"{mine(case_label)}&driver=other"))["total"] == 0


async def test_list_pages_and_describes(admin: TestClient, make_volume: MakeVolume, case_label: str) -> None:
    names = {make_volume("k=v") for _ in range(3)}
    whole = await listed(admin, mine(case_label))
    assert whole["total"] == 3 and {item["name"] for item in whole["items"]} == names
    first, rest = (
        await listed(admin, f"{mine(case_label)}&limit=2"),
        await listed(admin, f"{mine(case_label)}&offset=2"),
    )
    assert first["total"] == rest["total"] == 3
    assert [v["name"] for v in first["items"] + rest["items"]] == [v["name"] for v in whole["items"]]
    item = whole["items"][0]
    engine = cli_inspect(item["name"])
    assert item["labels"] == engine["Labels"] and item["mountpoint"] == engine["Mountpoint"]
    assert item["driver"] == "local" and item["scope"] == "local" and item["options"] == {}
    assert item["created_at"].startswith(engine["CreatedAt"][:19]) and item["created_at"].endswith("Z")


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "offset=-1", "dangling=maybe", "name=a*", "label==x"])
async def test_bad_list_queries_are_400(admin: TestClient, query: str) -> None:
    resp = await admin.get(f"/api/v1/volumes?{query}", headers=ADMIN)
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, 400)
    assert body["errors"][0]["field"].split(".")[0] == query.split("=")[0]


async def test_detail_names_users_and_size(
    admin: TestClient, make_volume: MakeVolume, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    name = make_volume("k=v")
    writer = await make_container(
        cmd=["sh", "-c", "head -c 1048576 /dev/zero > /data/blob"], host_config={"Binds": [f"{name}:/data"]}, start=True
    )
    await docker.containers.container(writer["Id"]).wait()
    reader = await make_container(host_config={"Binds": [f"{name}:/elsewhere:ro"]})
    await make_container(host_config={"Binds": [f"{make_volume()}:/{name}"]})  # a destination of that name: no user
    resp = await admin.get(f"/api/v1/volumes/{name}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    assert data["name"] == name and data["labels"] == cli_inspect(name)["Labels"]
    expected = sorted([writer, reader], key=lambda c: c["Name"])
    assert data["containers"] == [{"id": c["Id"], "name": c["Name"].lstrip("/")} for c in expected]
    assert data["size"] is None
    sized = (await (await admin.get(f"/api/v1/volumes/{name}?size=true", headers=ADMIN)).json())["data"]
    assert 1048576 <= sized["size"] < 1048576 + 65536


async def test_absent_volume_is_404(admin: TestClient) -> None:
    for method in ("GET", "DELETE"):
        resp = await admin.request(method, f"/api/v1/volumes/mv-absent-{uuid.uuid4().hex}", headers=ADMIN)
        assert resp.status == 404, method
        assert_error(await resp.json(), 404)
    resp = await admin.get("/api/v1/volumes/..x", headers=ADMIN)
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "name"


async def test_create_is_docker_volume_create(
    admin: TestClient, make_volume: MakeVolume, case_label: str, tmp_path: Path
) -> None:
    name = f"mv-{uuid.uuid4().hex[:10]}"
    labels = {TEST_LABEL: case_label, "app": "web"}
    resp = await admin.post("/api/v1/volumes", json={"name": name, "labels": labels}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == f"/api/v1/volumes/{name}"
    data = (await resp.json())["data"]
    engine = cli_inspect(name)
    assert data["name"] == name and engine["Driver"] == data["driver"] == "local"
    assert engine["Labels"] == data["labels"] == labels
    again = await admin.post("/api/v1/volumes", json={"name": name, "labels": {"other": "x"}}, headers=ADMIN)
    assert again.status == 409 and (await again.json())["errors"][0]["field"] == "name"
    assert cli_inspect(name)["Labels"] == labels
    assert audited(tmp_path, "POST") == [{"name": name, "driver": "local", "driver_opts": {}}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "-x"}, "name"),
        ({}, "name"),
        ({"name": "mv-x", "labels": {"": "x"}}, "labels."),
        ({"name": "mv-x", "driver_opts": {"type": 1}}, "driver_opts.type"),
        ({"name": "mv-x", "size": 1}, "size"),
    ],
)
async def test_bad_create_bodies_are_400(admin: TestClient, body: dict[str, Any], field: str) -> None:
    resp = await admin.post("/api/v1/volumes", json=body, headers=ADMIN)
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["field"] == field


async def refused(client: TestClient, case_label: str, **body: Any) -> list[dict[str, str]]:
    name = f"mv-{uuid.uuid4().hex[:10]}"
    resp = await client.post(
        "/api/v1/volumes", json={"name": name, "labels": {TEST_LABEL: case_label}, **body}, headers=ADMIN
    )
    assert resp.status == 403, await resp.text()
    assert not cli_names(f"name={name}")
    return list((await resp.json())["errors"])


async def test_policy_refuses_drivers_and_options_by_default(
    admin: TestClient, make_volume: MakeVolume, case_label: str
) -> None:
    [driver] = await refused(admin, case_label, driver="nfs-plugin")
    assert driver["field"] == "driver" and "local" in driver["message"]
    [opts] = await refused(admin, case_label, driver_opts={"type": "tmpfs", "device": "tmpfs"})
    assert opts["field"] == "driver_opts"


async def test_a_bind_in_disguise_is_refused(
    aiohttp_client: Any, tmp_path: Path, make_volume: MakeVolume, case_label: str
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    policy = {"allow_volume_driver_opts": True, "allowed_host_paths": [str(allowed)]}
    client = await app_client(aiohttp_client, tmp_path, policy=policy)
    for device in ("/", "/etc", str(tmp_path), f"{allowed}/../..", "relative"):
        bind = {"type": "none", "o": "bind", "device": device}
        [problem] = await refused(client, case_label, driver_opts=bind)
        assert problem["field"] == "driver_opts.device", device
    [block] = await refused(client, case_label, driver_opts={"type": "ext4", "device": "/dev/sda"})
    assert block["field"] == "driver_opts.device" and "/dev" in block["message"]
    for opts in ({"type": "none", "o": "bind", "device": str(allowed)}, {"type": "tmpfs", "device": "tmpfs"}):
        name = f"mv-{uuid.uuid4().hex[:10]}"
        body = {"name": name, "labels": {TEST_LABEL: case_label}, "driver_opts": opts}
        resp = await client.post("/api/v1/volumes", json=body, headers=ADMIN)
        assert resp.status == 201, await resp.text()
        assert cli_inspect(name)["Options"] == opts
    other = await app_client(aiohttp_client, tmp_path / "other", policy={"allowed_volume_drivers": ["local", "other"]})
    # Allowed by the policy, unknown to the engine: the engine's own error, not the policy's.
    resp = await other.post("/api/v1/volumes", json={"name": "mv-x", "driver": "other"}, headers=ADMIN)
    assert resp.status not in (201, 403)


async def test_delete_in_use_is_409_naming_the_containers(
    admin: TestClient,
    make_volume: MakeVolume,
    make_container: MakeContainer,
    docker: aiodocker.Docker,
    tmp_path: Path,
) -> None:
    name = make_volume()
    user = await make_container(host_config={"Binds": [f"{name}:/data"]})
    for query in ("", "?force=true"):
        resp = await admin.delete(f"/api/v1/volumes/{name}{query}", headers=ADMIN)
        assert resp.status == 409
        body = await resp.json()
        assert user["Name"].lstrip("/") in body["message"]
        assert cli_names(f"name={name}") == [name]
    await docker.containers.container(user["Id"]).delete(force=True)
    resp = await admin.delete(f"/api/v1/volumes/{name}", headers=ADMIN)
    assert resp.status == 200 and (await resp.json())["data"] == {"name": name}
    assert not cli_names(f"name={name}")
    assert audited(tmp_path, "DELETE") == [{"name": name, "force": False}]
    assert audited(tmp_path, "DELETE") == [{"name": name, "force": False}]


async def test_only_admins_create_and_delete(admin: TestClient, make_volume: MakeVolume) -> None:
    name = make_volume()
    for key in ("viewer-key", "operator-key"):
        headers = key_headers(key)
        assert (await admin.get(f"/api/v1/volumes/{name}", headers=headers)).status == 200
        assert (await admin.post("/api/v1/volumes", json={"name": "mv-x"}, headers=headers)).status == 403
        assert (await admin.delete(f"/api/v1/volumes/{name}", headers=headers)).status == 403
    assert cli_names(f"name={name}") == [name] and "mv-x" not in cli_names("name=mv-x")
