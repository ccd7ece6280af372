"""GET /api/v1/containers/{id}: by full id, short id or name; what Docker holds, in moorage's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moorage.schemas.containers import ContainerDetailSchema

from ..helpers import TEST_IMAGE, TEST_LABEL, MakeContainer, assert_error, docker_cli, inspected


@pytest.fixture
async def configured(make_container: MakeContainer, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "data").mkdir()
    return await make_container(
        start=True,
        cmd=["httpd", "-f", "-p", "80", "-h", "/www"],
        labels={"app": "web"},
        Env=["GREETING=hello=world", "EMPTY="],
        WorkingDir="/www",
        ExposedPorts={"80/tcp": {}, "53/udp": {}},
        host_config={
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            "Mounts": [{"Type": "bind", "Source": str(tmp_path / "data"), "Target": "/data", "ReadOnly": True}],
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Memory": 64 * 1024 * 1024,
            "NanoCpus": 500_000_000,
        },
    )


@pytest.mark.parametrize("ref", ["full", "short", "name"])
async def test_detail_by_any_reference(client: Any, configured: dict[str, Any], ref: str) -> None:
    key = {"full": configured["Id"], "short": configured["Id"][:12], "name": configured["Name"].lstrip("/")}[ref]
    resp = await client.get(f"/api/v1/containers/{key}")
    assert resp.status == 200
    assert (await resp.json())["data"]["id"] == configured["Id"]


async def test_detail_holds_what_docker_holds(client: Any, configured: dict[str, Any], tmp_path: Path) -> None:
    data = (await (await client.get(f"/api/v1/containers/{configured['Id']}")).json())["data"]
    assert data["name"] == configured["Name"].lstrip("/")
    assert data["status"] == "running"
    assert data["image"] == TEST_IMAGE
    assert data["created_at"].endswith("Z")
    assert data["labels"] == {TEST_LABEL: configured["Config"]["Labels"][TEST_LABEL], "app": "web"}
    assert data["command"] == ["httpd", "-f", "-p", "80", "-h", "/www"]
    assert data["environment"]["GREETING"] == "hello=world"
    assert data["environment"]["EMPTY"] == ""
    assert data["working_dir"] == "/www"
    assert data["volumes"] == [
        {"type": "bind", "host_path": str(tmp_path / "data"), "container_path": "/data", "read_only": True}
    ]
    assert data["port_bindings"] == {"80/tcp": [{"host_ip": "127.0.0.1", "host_port": None}]}
    [live] = data["ports"]["80/tcp"]
    assert live["host_ip"] == "127.0.0.1" and live["host_port"] > 0
    assert data["ports"]["53/udp"] == []
    assert data["restart_policy"] == "on-failure:3"
    assert data["memory"] == 64 * 1024 * 1024
    assert data["cpus"] == 0.5
    state = data["state"]
    assert state["running"] is True and state["status"] == "running"
    assert state["started_at"].endswith("Z") and state["finished_at"] is None
    assert state["exit_code"] == 0 and state["pid"] > 0
    assert state["health"] is None


async def test_detail_is_exactly_what_its_schema_declares(
    client: Any, configured: dict[str, Any], make_container: MakeContainer
) -> None:
    """The detail is built without marshmallow (for speed); its schema, which the OpenAPI document shows,
    must still describe every key and type of it."""
    checked = await make_container(
        start=True, cmd=["sleep", "60"], Healthcheck={"Test": ["CMD", "true"], "Interval": 500_000_000}
    )
    for container in (configured, checked):
        data = (await (await client.get(f"/api/v1/containers/{container['Id']}")).json())["data"]
        assert ContainerDetailSchema().validate(data) == {}
    assert data["state"]["health"]["status"] in {"starting", "healthy"}
    assert data["state"]["health"]["failing_streak"] == 0


async def test_detail_of_a_container_that_exited(client: Any, make_container: MakeContainer, docker: Any) -> None:
    exited = await make_container(cmd=["sh", "-c", "exit 3"], start=True)
    await docker.containers.container(exited["Id"]).wait()
    state = (await (await client.get(f"/api/v1/containers/{exited['Id']}")).json())["data"]["state"]
    assert state["status"] == "exited" and state["running"] is False
    assert state["exit_code"] == 3
    assert state["finished_at"].endswith("Z")


async def test_detail_of_a_created_container_has_no_start_time(client: Any, make_container: MakeContainer) -> None:
    created = await make_container()
    data = (await (await client.get(f"/api/v1/containers/{created['Id']}")).json())["data"]
    assert data["status"] == "created"
    assert data["state"]["started_at"] is None and data["state"]["finished_at"] is None
    assert data["restart_policy"] == "no"
    assert data["ports"] == {}


async def test_unknown_container_is_a_404(client: Any) -> None:
    resp = await client.get("/api/v1/containers/no-such-container-here")
    assert resp.status == 404
    body = await resp.json()
    assert_error(body, 404)
    assert "no-such-container-here" in body["message"]


@pytest.mark.parametrize("ref", ["..%2F..%2Fimages%2Fjson", "-rf", "%00", "a%2Fb", "_x"])
async def test_a_reference_that_is_not_an_id_or_name_is_a_400(client: Any, ref: str) -> None:
    resp = await client.get(f"/api/v1/containers/{ref}")
    assert resp.status == 400
    body = await resp.json()
    assert [e["field"] for e in body["errors"]] == ["container_id"]


async def test_detail_shows_the_network_with_its_addresses_once_it_runs(
    client: Any, make_container: MakeContainer, docker: Any
) -> None:
    """On the default bridge: no address before the start, the engine's after it, as `docker inspect` has them."""
    made = await make_container()
    data = (await (await client.get(f"/api/v1/containers/{made['Id']}")).json())["data"]
    assert data["network_mode"] == "default"
    assert data["networks"] == [
        {
            "name": "bridge",
            "network_id": None,
            "ipv4_address": None,
            "ipv6_address": None,
            "gateway": None,
            "mac_address": None,
            "aliases": [],
        }
    ]
    await docker.containers.container(made["Id"]).start()
    endpoint = inspected(made["Id"])["NetworkSettings"]["Networks"]["bridge"]
    [shown] = (await (await client.get(f"/api/v1/containers/{made['Id']}")).json())["data"]["networks"]
    assert shown == {
        "name": "bridge",
        "network_id": docker_cli("network", "inspect", "-f", "{{.Id}}", "bridge"),
        "ipv4_address": endpoint["IPAddress"],
        "ipv6_address": endpoint["GlobalIPv6Address"] or None,
        "gateway": endpoint["Gateway"],
        "mac_address": endpoint["MacAddress"],
        "aliases": [],
    }
    assert shown["ipv4_address"] and shown["gateway"] and shown["mac_address"]
