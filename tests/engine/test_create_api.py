"""POST /api/v1/containers against the real engine: what was asked for is what Docker holds, and the policy holds."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
from aiodocker.volumes import DockerVolume
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.containers.ownership import policy_mark

from ..helpers import TEST_IMAGE, TEST_LABEL, assert_error, free_port, make_settings, plain_key

Create = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]
MAX_MEMORY = 256 * 1024 * 1024


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, allowed_root: Path) -> TestClient:
    """An admin client of an app whose policy allows binds under `allowed_root` and caps memory."""
    settings = make_settings(
        tmp_path,
        {"test-admin": "admin"},
        policy={"allowed_host_paths": [str(allowed_root)], "max_memory": MAX_MEMORY},
    )
    return await aiohttp_client(create_app(settings), headers={"X-API-Key": plain_key("test-admin")})


@pytest.fixture
async def create(client: TestClient, docker: aiodocker.Docker, case_label: str) -> AsyncIterator[Create]:
    """POST a create body (labelled for this test); whatever it made is removed afterwards."""

    async def post(body: dict[str, Any], **kwargs: Any) -> tuple[int, dict[str, Any]]:
        labelled = {**body, "labels": {TEST_LABEL: case_label, **body.get("labels", {})}}
        resp = await client.post("/api/v1/containers", json=labelled, **kwargs)
        return resp.status, await resp.json()

    yield post
    for container in await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"{TEST_LABEL}={case_label}"]})
    ):
        await container.delete(force=True, v=True)


async def made(docker: aiodocker.Docker, case_label: str) -> list[str]:
    """Ids of the containers this test's requests made."""
    found = await docker.containers.list(all=True, filters=json.dumps({"label": [f"{TEST_LABEL}={case_label}"]}))
    return [c.id for c in found]


async def inspect(docker: aiodocker.Docker, container_id: str) -> dict[str, Any]:
    return await docker.containers.container(container_id).show()


async def test_minimal_create_is_201_with_the_detail(create: Create, docker: aiodocker.Docker) -> None:
    status, body = await create({"image": TEST_IMAGE})
    assert status == 201
    assert body["code"] == 201 and body["message"] == "success"
    data = body["data"]
    assert data["status"] == "created" and data["image"] == TEST_IMAGE
    engine = await inspect(docker, data["id"])
    assert engine["HostConfig"]["SecurityOpt"] == ["no-new-privileges:true"]
    assert engine["HostConfig"]["Privileged"] is False
    assert not engine["HostConfig"]["CapAdd"]


async def test_every_field_reaches_the_engine(
    create: Create, client: TestClient, docker: aiodocker.Docker, allowed_root: Path, case_label: str, tmp_path: Path
) -> None:
    """The labels are the request's and moorage's own: this daemon's mark and the create's id."""
    volume = f"moorage-test-{case_label}"
    host_port = free_port()
    status, body = await create(
        {
            "name": f"mt-full-{case_label}",
            "image": TEST_IMAGE,
            "command": "httpd -f -p 80 -h /www",
            "entrypoint": ["/bin/env"],
            "working_dir": "/www",
            "user": "nobody",
            "hostname": "full-test",
            "ports": {"80/tcp": f"127.0.0.1:{host_port}", "53/udp": None, "8125": [8125, "127.0.0.1:"]},
            "environment": {"GREETING": "hello world", "EMPTY": ""},
            "volumes": [
                {"host_path": str(allowed_root / "data"), "container_path": "/data", "read_only": True},
                {"volume": volume, "container_path": "/cache"},
            ],
            "labels": {"app": "web"},
            "restart_policy": "on-failure:3",
            "memory": "64m",
            "cpus": 0.5,
            "pids_limit": 64,
            "healthcheck": {"test": ["CMD", "true"], "interval": "30s", "timeout": "5s", "retries": 2},
            "start": True,
        }
    )
    assert status == 201, body
    try:
        data = body["data"]
        assert data["status"] == "running"
        engine = await inspect(docker, data["id"])
        config, host = engine["Config"], engine["HostConfig"]
        assert engine["Name"] == f"/mt-full-{case_label}"
        assert config["Cmd"] == ["httpd", "-f", "-p", "80", "-h", "/www"]
        assert config["Entrypoint"] == ["/bin/env"]
        assert (config["WorkingDir"], config["User"], config["Hostname"]) == ("/www", "nobody", "full-test")
        assert {"GREETING=hello world", "EMPTY="} <= set(config["Env"])
        labels = dict(config["Labels"])
        assert re.fullmatch("[0-9a-f]{32}", labels.pop("moorage.create")), config["Labels"]
        assert labels == {TEST_LABEL: case_label, "app": "web", "moorage.policy": policy_mark(tmp_path / "state")}
        # The daemon's mark is not shown, in the detail or the list: whoever read it could put it in an image.
        listed = await (await client.get("/api/v1/containers", params={"label": f"{TEST_LABEL}={case_label}"})).json()
        assert [item["labels"] for item in listed["data"]["items"]] == [data["labels"]]
        assert "moorage.policy" not in data["labels"] and data["labels"]["app"] == "web"
        assert host["PortBindings"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]
        assert host["PortBindings"]["53/udp"] == [{"HostIp": "", "HostPort": ""}]
        assert host["PortBindings"]["8125/tcp"] == [
            {"HostIp": "", "HostPort": "8125"},
            {"HostIp": "127.0.0.1", "HostPort": ""},
        ]
        mounts = {m["Destination"]: m for m in engine["Mounts"]}
        assert mounts["/data"]["Type"] == "bind" and mounts["/data"]["Source"] == str(allowed_root / "data")
        assert mounts["/data"]["RW"] is False
        assert mounts["/cache"]["Type"] == "volume" and mounts["/cache"]["Name"] == volume
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        assert host["Memory"] == 64 * 1024 * 1024
        assert host["NanoCpus"] == 500_000_000
        assert host["PidsLimit"] == 64
        assert config["Healthcheck"] == {
            "Test": ["CMD", "true"],
            "Interval": 30 * 10**9,
            "Timeout": 5 * 10**9,
            "Retries": 2,
        }
        assert data["port_bindings"]["80/tcp"] == [{"host_ip": "127.0.0.1", "host_port": host_port}]
        assert data["restart_policy"] == "on-failure:3"
    finally:
        await docker.containers.container(body["data"]["id"]).delete(force=True)
        await DockerVolume(docker, volume).delete()


async def test_a_created_web_server_serves_on_its_mapped_port(create: Create) -> None:
    port = free_port()
    status, body = await create(
        {
            "image": TEST_IMAGE,
            "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
            "ports": {"80/tcp": port},
            "start": True,
        }
    )
    assert status == 201, body
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            try:
                async with session.get(f"http://127.0.0.1:{port}/index.html") as resp:
                    assert resp.status == 200
                    assert "moorage test page" in await resp.text()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError("nothing served on the mapped port")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["image"]),
        ({"image": "Not A Reference"}, ["image"]),
        ({"image": TEST_IMAGE, "name": "-bad"}, ["name"]),
        ({"image": TEST_IMAGE, "ports": {"80/tcp": 70000}}, ["ports.80/tcp"]),
        ({"image": TEST_IMAGE, "ports": {"80/xyz": 80}}, ["ports.80/xyz"]),
        ({"image": TEST_IMAGE, "ports": {"80/tcp": "300.1.1.1:80"}}, ["ports.80/tcp"]),
        ({"image": TEST_IMAGE, "environment": {"A": 1}}, ["environment.A"]),
        ({"image": TEST_IMAGE, "environment": {"A=B": "x"}}, ["environment.A=B"]),
        (
            {"image": TEST_IMAGE, "volumes": [{"host_path": "relative", "container_path": "/x"}]},
            ["volumes.0.host_path"],
        ),
        ({"image": TEST_IMAGE, "volumes": [{"container_path": "/x"}]}, ["volumes.0"]),
        ({"image": TEST_IMAGE, "restart_policy": "sometimes"}, ["restart_policy"]),
        ({"image": TEST_IMAGE, "memory": "lots"}, ["memory"]),
        ({"image": TEST_IMAGE, "memory": 1024}, ["memory"]),
        ({"image": TEST_IMAGE, "cpus": -1}, ["cpus"]),
        ({"image": TEST_IMAGE, "start": "yes"}, ["start"]),
        ({"image": TEST_IMAGE, "pull": "sometimes"}, ["pull"]),
        ({"image": TEST_IMAGE, "command": 5}, ["command"]),
        ({"image": TEST_IMAGE, "working_dir": "relative"}, ["working_dir"]),
        ({"image": TEST_IMAGE, "healthcheck": {"interval": "soon"}}, ["healthcheck.interval"]),
        ({"image": TEST_IMAGE, "Privileged": True}, ["Privileged"]),
        ({"image": TEST_IMAGE, "HostConfig": {"Binds": ["/:/host"]}}, ["HostConfig"]),
        ({"image": TEST_IMAGE, "volumes_from": ["other"]}, ["volumes_from"]),
        (
            {"image": 7, "name": "-x", "ports": {"0": 1}, "memory": "x"},
            ["image", "memory", "name", "ports.0"],
        ),
    ],
)
async def test_invalid_fields_are_a_400_naming_each(
    create: Create, docker: aiodocker.Docker, case_label: str, body: dict[str, Any], fields: list[str]
) -> None:
    status, answer = await create(body)
    assert status == 400, answer
    assert_error(answer, 400)
    assert sorted(e["field"] for e in answer["errors"]) == sorted(fields)
    assert await made(docker, case_label) == []


@pytest.mark.parametrize(
    ("data", "content_type", "status", "field"),
    [
        (b'{"image": ', "application/json", 400, "body"),
        (b"[]", "application/json", 400, "body"),
        (b'{"image": NaN}', "application/json", 400, "body"),
        (b'{"image": "a", "image": "b"}', "application/json", 400, "image"),
        (b'{"image": "a", "labels": {"x": "1", "x": "2"}}', "application/json", 400, "x"),
        (b"image=busybox", "application/x-www-form-urlencoded", 415, "Content-Type"),
        (b'{"image": "x"}', "text/plain", 415, "Content-Type"),
        (b"\xff\xfe{", "application/json", 400, "body"),
    ],
)
async def test_malformed_bodies(
    client: TestClient,
    docker: aiodocker.Docker,
    case_label: str,
    data: bytes,
    content_type: str,
    status: int,
    field: str,
) -> None:
    resp = await client.post("/api/v1/containers", data=data, headers={"Content-Type": content_type})
    assert resp.status == status
    body = await resp.json()
    assert_error(body, status)
    assert [e["field"] for e in body["errors"]] == [field]


async def test_a_body_over_the_limit_is_a_413(client: TestClient) -> None:
    huge = json.dumps({"image": TEST_IMAGE, "labels": {"pad": "x" * (1024 * 1024)}}).encode()
    resp = await client.post("/api/v1/containers", data=io.BytesIO(huge), headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert_error(await resp.json(), 413)


async def test_the_go_duplicate_key_trick_is_refused(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/containers",
        data=b'{"image": "%s", "privileged": false, "privileged": true}' % TEST_IMAGE.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == ["privileged"]


@pytest.fixture
def outside(tmp_path: Path, allowed_root: Path) -> dict[str, Path]:
    """Paths that look as if they were under the allowed root, but are not."""
    (tmp_path / "elsewhere").mkdir()
    (allowed_root / "etc-link").symlink_to("/etc")
    (allowed_root / "out-link").symlink_to(tmp_path / "elsewhere")
    return {
        "elsewhere": tmp_path / "elsewhere",
        "symlink-to-etc": allowed_root / "etc-link",
        "symlink-out": allowed_root / "out-link",
        "dotdot": allowed_root / "data" / ".." / ".." / "elsewhere",
    }


def bind(path: Path | str) -> dict[str, Any]:
    return {"volumes": [{"host_path": str(path), "container_path": "/host"}]}


POLICY_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "privileged": ({"privileged": True}, "privileged"),
    "cap_add": ({"cap_add": ["NET_ADMIN"]}, "cap_add.0"),
    "cap_add-all-mixed-case": ({"cap_add": ["chown", "cap_all"]}, "cap_add.0"),
    "host-network": ({"network_mode": "host"}, "network_mode"),
    "host-network-by-name": ({"network": "host"}, "network"),
    "host-pid": ({"pid_mode": "host"}, "pid_mode"),
    "host-ipc": ({"ipc_mode": "host"}, "ipc_mode"),
    "host-uts": ({"uts_mode": "host"}, "uts_mode"),
    "host-userns": ({"userns_mode": "host"}, "userns_mode"),
    "container-pid": ({"pid_mode": "container:other"}, "pid_mode"),
    "devices": ({"devices": ["/dev/sda"]}, "devices.0"),
    "sysctls": ({"sysctls": {"net.ipv4.ip_forward": "1"}}, "sysctls.net.ipv4.ip_forward"),
    "runtime": ({"runtime": "nvidia"}, "runtime"),
    "seccomp": ({"security_opt": ["seccomp=unconfined"]}, "security_opt.0"),
    "bind-root": (bind("/"), "volumes.0.host_path"),
    "bind-etc": (bind("/etc"), "volumes.0.host_path"),
    "bind-socket": (bind("/var/run/docker.sock"), "volumes.0.host_path"),
    "bind-var": (bind("/var"), "volumes.0.host_path"),
    "bind-docker-data": (bind("/var/lib/docker/volumes"), "volumes.0.host_path"),
    "memory-over-max": ({"memory": MAX_MEMORY + 1}, "memory"),
}


@pytest.mark.parametrize("case", sorted(POLICY_CASES))
async def test_policy_denies_with_403_and_creates_nothing(
    create: Create, docker: aiodocker.Docker, case_label: str, case: str
) -> None:
    extra, field = POLICY_CASES[case]
    status, body = await create({"image": TEST_IMAGE, **extra})
    assert status == 403, body
    assert_error(body, 403)
    assert field in [e["field"] for e in body["errors"]]
    assert await made(docker, case_label) == []


@pytest.mark.parametrize("which", ["elsewhere", "symlink-to-etc", "symlink-out", "dotdot"])
async def test_policy_denies_binds_that_leave_the_allowed_root(
    create: Create, docker: aiodocker.Docker, case_label: str, outside: dict[str, Path], which: str
) -> None:
    status, body = await create({"image": TEST_IMAGE, **bind(outside[which])})
    assert status == 403, body
    assert [e["field"] for e in body["errors"]] == ["volumes.0.host_path"]
    assert await made(docker, case_label) == []


async def test_policy_denies_a_bind_backed_named_volume(
    create: Create, docker: aiodocker.Docker, case_label: str
) -> None:
    name = f"moorage-test-bind-{case_label}"
    await docker.volumes.create(
        {"Name": name, "Driver": "local", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}}
    )
    try:
        status, body = await create({"image": TEST_IMAGE, "volumes": [{"volume": name, "container_path": "/x"}]})
        assert status == 403, body
        assert [e["field"] for e in body["errors"]] == ["volumes.0.volume"]
        assert await made(docker, case_label) == []
    finally:
        await DockerVolume(docker, name).delete()


async def test_a_taken_name_is_a_409(create: Create, case_label: str) -> None:
    name = f"mt-taken-{case_label}"
    assert (await create({"image": TEST_IMAGE, "name": name}))[0] == 201
    status, body = await create({"image": TEST_IMAGE, "name": name})
    assert status == 409
    assert_error(body, 409)


@pytest.mark.parametrize("pull", ["missing", "always", "never"])
async def test_an_image_that_cannot_be_had_is_a_404_naming_it(
    create: Create, docker: aiodocker.Docker, case_label: str, pull: str
) -> None:
    image = f"127.0.0.1:5000/moorage-test/absent-{case_label}:latest"
    status, body = await create({"image": image, "pull": pull})
    assert status == 404
    assert image in body["message"]
    assert [e["field"] for e in body["errors"]] == ["image"]
    assert await made(docker, case_label) == []


async def test_a_missing_image_is_pulled_first(create: Create, docker: aiodocker.Docker, pushed_only: str) -> None:
    status, body = await create({"image": pushed_only})
    assert status == 201, body
    assert (await docker.images.inspect(f"{pushed_only}:latest"))["Id"] == body["data"]["image_id"]


async def test_pull_never_does_not_pull(create: Create, pushed_only: str) -> None:
    status, _ = await create({"image": pushed_only, "pull": "never"})
    assert status == 404


async def test_a_host_port_in_use_is_a_409_and_leaves_nothing(
    create: Create, docker: aiodocker.Docker, case_label: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        status, body = await create(
            {"image": TEST_IMAGE, "command": ["sleep", "60"], "ports": {"80/tcp": f"127.0.0.1:{port}"}, "start": True}
        )
    assert status == 409, body
    assert "already" in body["message"]
    assert await made(docker, case_label) == []


async def test_start_true_runs_it(create: Create) -> None:
    status, body = await create(
        {"image": TEST_IMAGE, "command": "sleep 60", "start": True, "name": f"mt-{uuid.uuid4().hex[:8]}"}
    )
    assert status == 201
    assert body["data"]["state"]["running"] is True


@pytest.mark.parametrize("network", ["none", "bridge"])
async def test_network_reaches_the_engine(create: Create, docker: aiodocker.Docker, network: str) -> None:
    status, body = await create({"image": TEST_IMAGE, "network": network})
    assert status == 201, body
    assert (await inspect(docker, body["data"]["id"]))["HostConfig"]["NetworkMode"] == network
    assert body["data"]["network_mode"] == network


async def test_an_unknown_network_is_a_404_and_leaves_nothing(
    create: Create, docker: aiodocker.Docker, case_label: str
) -> None:
    status, body = await create({"image": TEST_IMAGE, "network": f"no-such-net-{case_label}", "start": True})
    assert status == 404, body
    assert await made(docker, case_label) == []


async def test_a_bind_inside_another_containers_writable_bind_is_refused(
    create: Create, docker: aiodocker.Docker, case_label: str, allowed_root: Path
) -> None:
    # A container that can write the allowed root could swap data/ for a symlink to / before the next start.
    status, _ = await create({"image": TEST_IMAGE, **bind(allowed_root)})
    assert status == 201
    status, body = await create({"image": TEST_IMAGE, **bind(allowed_root / "data")})
    assert status == 403, body
    assert [e["field"] for e in body["errors"]] == ["volumes.0.host_path"]
    assert "can write" in body["errors"][0]["message"]
    assert len(await made(docker, case_label)) == 1


async def test_a_read_only_bind_above_is_no_threat(create: Create, allowed_root: Path) -> None:
    read_only = {"volumes": [{"host_path": str(allowed_root), "container_path": "/host", "read_only": True}]}
    assert (await create({"image": TEST_IMAGE, **read_only}))[0] == 201
    assert (await create({"image": TEST_IMAGE, **bind(allowed_root / "data")}))[0] == 201


async def test_a_writable_bind_above_an_existing_one_is_refused(create: Create, allowed_root: Path) -> None:
    assert (await create({"image": TEST_IMAGE, **bind(allowed_root / "data")}))[0] == 201
    status, body = await create({"image": TEST_IMAGE, **bind(allowed_root)})
    assert status == 403
    assert "contains" in body["errors"][0]["message"]
    both = {
        "volumes": [
            {"host_path": str(allowed_root), "container_path": "/a"},
            {"host_path": str(allowed_root / "data"), "container_path": "/b"},
        ]
    }
    assert (await create({"image": TEST_IMAGE, **both}))[0] == 403


async def test_a_bind_swapped_for_a_symlink_after_create_is_refused_at_start(
    create: Create, client: TestClient, docker: aiodocker.Docker, allowed_root: Path
) -> None:
    status, body = await create({"image": TEST_IMAGE, "command": ["sleep", "60"], **bind(allowed_root / "data")})
    assert status == 201
    (allowed_root / "data").rename(allowed_root / "moved")
    (allowed_root / "data").symlink_to("/etc")
    resp = await client.post(f"/api/v1/containers/{body['data']['id']}/start")
    assert resp.status == 403
    assert [e["field"] for e in (await resp.json())["errors"]] == ["volumes.0.host_path"]
    assert (await inspect(docker, body["data"]["id"]))["State"]["Running"] is False


async def test_the_host_network_named_by_its_id_is_refused(
    create: Create, docker: aiodocker.Docker, case_label: str
) -> None:
    host_id = next(n["Id"] for n in await docker.networks.list() if n["Name"] == "host")
    for ref in (host_id, host_id[:12]):
        status, body = await create({"image": TEST_IMAGE, "network": ref})
        assert status == 403, body
        assert [e["field"] for e in body["errors"]] == ["network"]
    assert await made(docker, case_label) == []
