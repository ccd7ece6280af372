"""Networks against the real engine, cross-checked with `docker network inspect`: list (filters, paging), inspect
with the containers attached, create within the policy, remove, connect and disconnect, and who may do each."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..helpers import TEST_LABEL, MakeContainer, app_client, assert_error, docker_cli, key_headers, until

MakeNetwork = Callable[..., str]


def network_inspect(name: str) -> dict[str, Any]:
    """`docker network inspect`, or {} for a network that is not there."""
    done = subprocess.run(["docker", "network", "inspect", name], capture_output=True, text=True, check=False)
    return json.loads(done.stdout)[0] if done.returncode == 0 else {}


def remove_networks(case_label: str) -> None:
    for network in docker_cli("network", "ls", "-q", "--filter", f"label={TEST_LABEL}={case_label}").split():
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


@pytest.fixture
def make_network(case_label: str) -> Iterator[MakeNetwork]:
    """`docker network create` with the test's label; every network of the test is removed after it."""

    def make(name: str, *args: str) -> str:
        return docker_cli("network", "create", "--label", f"{TEST_LABEL}={case_label}", *args, name).strip()

    yield make
    remove_networks(case_label)


@pytest.fixture
def cleanup(case_label: str) -> Iterator[None]:
    """For the networks a test creates through the API (each labelled with the test's label)."""
    yield
    remove_networks(case_label)


def create_body(case_label: str, name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "labels": {TEST_LABEL: case_label}, **more}


async def data_of(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return (await resp.json())["data"]


async def test_list_filters_and_pages_as_the_engine_lists(
    client: TestClient, make_network: MakeNetwork, case_label: str
) -> None:
    for index in range(3):
        make_network(f"mt-net-{case_label}-{index}", "--label", f"nth={index}")
    label = f"label={TEST_LABEL}={case_label}"
    found = await data_of(await client.get("/api/v1/networks", params={"label": f"{TEST_LABEL}={case_label}"}))
    assert found["total"] == 3
    assert [n["name"] for n in found["items"]] == [f"mt-net-{case_label}-{i}" for i in range(3)]
    engine = network_inspect(found["items"][0]["name"])
    assert found["items"][0]["id"] == engine["Id"] and found["items"][0]["driver"] == engine["Driver"] == "bridge"
    assert found["items"][0]["ipam"][0]["subnet"] == engine["IPAM"]["Config"][0]["Subnet"]
    assert found["items"][0]["labels"] == engine["Labels"]
    assert len(docker_cli("network", "ls", "-q", "--filter", label).split()) == 3

    paged = await data_of(
        await client.get("/api/v1/networks", params={"label": f"{TEST_LABEL}={case_label}", "limit": 2, "offset": 1})
    )
    assert paged["total"] == 3 and [n["name"] for n in paged["items"]] == [f"mt-net-{case_label}-{i}" for i in (1, 2)]

    by_name = await data_of(await client.get("/api/v1/networks", params={"name": f"{case_label}-1"}))
    assert [n["name"] for n in by_name["items"]] == [f"mt-net-{case_label}-1"]
    by_both = await data_of(
        await client.get("/api/v1/networks", params=[("label", f"{TEST_LABEL}={case_label}"), ("label", "nth=2")])
    )
    assert [n["name"] for n in by_both["items"]] == [f"mt-net-{case_label}-2"]
    hosts = await data_of(await client.get("/api/v1/networks", params={"driver": "host"}))
    assert [n["name"] for n in hosts["items"]] == ["host"]
    bridges = await data_of(await client.get("/api/v1/networks", params={"driver": "bridge", "limit": 1000}))
    assert {n["name"] for n in bridges["items"]} >= {"bridge", *(f"mt-net-{case_label}-{i}" for i in range(3))}
    assert all(n["driver"] == "bridge" for n in bridges["items"])

    for bad in ({"limit": 0}, {"name": "a b"}, {"driver": "../x"}, {"unknown": "1"}):
        resp = await client.get("/api/v1/networks", params=bad)
        assert resp.status == 400, bad
        assert_error(await resp.json(), 400)


async def test_inspect_shows_the_containers_attached_and_their_addresses(
    client: TestClient, make_network: MakeNetwork, make_container: MakeContainer, case_label: str
) -> None:
    name = f"mt-net-{case_label}"
    network_id = make_network(name, "--subnet", "10.231.21.0/24")
    container = await make_container(start=True, host_config={"NetworkMode": name})
    for ref in (name, network_id, network_id[:12]):
        shown = await data_of(await client.get(f"/api/v1/networks/{ref}"))
        assert shown["id"] == network_id and shown["name"] == name
    engine = network_inspect(name)["Containers"][container["Id"]]
    assert shown["containers"] == [
        {
            "id": container["Id"],
            "name": container["Name"].lstrip("/"),
            "ipv4_address": engine["IPv4Address"].split("/")[0],
            "ipv6_address": None,
            "mac_address": engine["MacAddress"],
        }
    ]
    assert ipaddress.ip_address(shown["containers"][0]["ipv4_address"]) in ipaddress.ip_network("10.231.21.0/24")
    resp = await client.get("/api/v1/networks/mt-no-such-network")
    assert resp.status == 404
    assert_error(await resp.json(), 404)


async def test_create_makes_what_was_asked_and_is_audited(
    client: TestClient, case_label: str, cleanup: Any, tmp_path: Path
) -> None:
    name = f"mt-net-{case_label}"
    body = create_body(
        case_label,
        name,
        internal=True,
        attachable=True,
        ipam={"subnet": "10.231.22.0/24", "gateway": "10.231.22.254", "ip_range": "10.231.22.128/25"},
    )
    resp = await client.post("/api/v1/networks", json=body)
    created = await data_of(resp, 201)
    engine = network_inspect(name)
    assert resp.headers["Location"] == f"/api/v1/networks/{engine['Id']}"
    assert created["id"] == engine["Id"] and created["containers"] == []
    assert engine["Driver"] == "bridge" and engine["Internal"] and engine["Attachable"]
    assert engine["IPAM"]["Config"] == [
        {"Subnet": "10.231.22.0/24", "IPRange": "10.231.22.128/25", "Gateway": "10.231.22.254"}
    ]
    assert created["ipam"] == [{"subnet": "10.231.22.0/24", "gateway": "10.231.22.254", "ip_range": "10.231.22.128/25"}]
    assert engine["Labels"] == {TEST_LABEL: case_label}

    def audited() -> list[dict[str, Any]]:
        log = tmp_path / "state" / "audit.log"
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [line for line in lines if line.get("detail", {}).get("id") == engine["Id"]]

    await until(lambda: bool(audited()), "the create's audit line")
    assert audited()[0]["detail"] == {"id": engine["Id"], "name": name, "driver": "bridge", "subnet": "10.231.22.0/24"}

    again = await client.post("/api/v1/networks", json=create_body(case_label, name))
    assert again.status == 409, await again.text()
    assert_error(await again.json(), 409)


@pytest.mark.parametrize(
    ("ipam", "field"),
    [
        ({"subnet": "10.231.23.0/24", "gateway": "10.231.24.1"}, "ipam.gateway"),
        ({"subnet": "10.231.23.0/24", "ip_range": "10.231.0.0/16"}, "ipam.ip_range"),
        ({"subnet": "10.231.23.1/24"}, "ipam.subnet"),
        ({"subnet": "10.231.23.0"}, "ipam.subnet"),
        ({"gateway": "10.231.23.1"}, "ipam.subnet"),
        ({"subnet": "10.231.23.0/24", "gateway": "fd00::1"}, "ipam.gateway"),
    ],
)
async def test_a_gateway_or_range_outside_the_subnet_is_400(
    client: TestClient, case_label: str, ipam: dict[str, str], field: str
) -> None:
    name = f"mt-net-{case_label}"
    resp = await client.post("/api/v1/networks", json=create_body(case_label, name, ipam=ipam))
    await refused_as_bad(resp, name, field)


async def test_ipv6_needs_an_ipv6_subnet(client: TestClient, case_label: str, cleanup: None) -> None:
    name = f"mt-net-{case_label}"
    for more in ({}, {"ipam": {"subnet": "10.231.23.0/24"}}):
        resp = await client.post("/api/v1/networks", json=create_body(case_label, name, enable_ipv6=True, **more))
        await refused_as_bad(resp, name, "enable_ipv6")
    ipv6 = {"enable_ipv6": True, "ipam": {"subnet": "fd00:231:1::/64"}}
    created = await data_of(await client.post("/api/v1/networks", json=create_body(case_label, name, **ipv6)), 201)
    engine = network_inspect(name)
    assert created["enable_ipv6"] is engine["EnableIPv6"] is True
    assert [c["subnet"] for c in created["ipam"]] == [c["Subnet"] for c in engine["IPAM"]["Config"]]
    assert "fd00:231:1::/64" in [c["Subnet"] for c in engine["IPAM"]["Config"]]


async def refused_as_bad(resp: Any, name: str, field: str) -> None:
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert_error(body, 400)
    assert [e["field"] for e in body["errors"]] == [field]
    assert network_inspect(name) == {}


def own_subnets() -> list[str]:
    """Subnets this machine already has: the docker0 bridge's, and the host's own IPv4 ones."""
    routes = docker_cli("network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}").split()
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] != "00000000" and parts[0] != "docker0":
            address = ipaddress.IPv4Address(int(parts[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(parts[7], 16).to_bytes(4, "little"))
            routes.append(str(ipaddress.IPv4Network(f"{address}/{mask}")))
    return routes


async def test_the_policy_refuses_another_driver_and_a_subnet_of_the_hosts(client: TestClient, case_label: str) -> None:
    name = f"mt-net-{case_label}"
    resp = await client.post("/api/v1/networks", json=create_body(case_label, name, driver="macvlan"))
    assert resp.status == 403, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["driver"]
    subnets = own_subnets()
    assert "172.17.0.0/16" in subnets  # docker0's
    for subnet in subnets:
        # The host's subnet itself, and a part of it.
        for asked in (subnet, str(next(ipaddress.ip_network(subnet).subnets(new_prefix=28)))):
            resp = await client.post("/api/v1/networks", json=create_body(case_label, name, ipam={"subnet": asked}))
            assert resp.status == 403, (asked, await resp.text())
            body = await resp.json()
            assert_error(body, 403)
            assert [e["field"] for e in body["errors"]] == ["ipam.subnet"]
    assert network_inspect(name) == {}


async def test_an_allowed_driver_passes_the_policy(
    aiohttp_client: Any, tmp_path: Path, case_label: str, cleanup: None
) -> None:
    """With macvlan allowed, the policy lets the create through to the engine: without a parent the engine puts
    it on a dummy link of its own (not the host's LAN), or, on a kernel without macvlan, says "operation not
    supported" (a 500 of the engine's, so a 502)."""
    admin = await app_client(aiohttp_client, tmp_path, policy={"allowed_network_drivers": ["bridge", "macvlan"]})
    name = f"mt-net-{case_label}"
    body = create_body(case_label, name, driver="macvlan", internal=True, ipam={"subnet": "10.231.25.0/24"})
    resp = await admin.post("/api/v1/networks", json=body, headers=key_headers("admin-key"))
    assert resp.status in (201, 502), await resp.text()
    if resp.status == 201:
        assert network_inspect(name)["Driver"] == "macvlan"
    else:
        assert (await resp.json())["message"] == "operation not supported"


async def test_delete_removes_a_network_and_refuses_one_in_use_or_predefined(
    client: TestClient, make_network: MakeNetwork, make_container: MakeContainer, case_label: str
) -> None:
    name = f"mt-net-{case_label}"
    network_id = make_network(name)
    container = await make_container(host_config={"NetworkMode": name})
    resp = await client.delete(f"/api/v1/networks/{name}")
    assert resp.status == 409, await resp.text()
    assert container["Name"].lstrip("/") in (await resp.json())["message"]
    assert network_inspect(name)["Id"] == network_id
    docker_cli("rm", "-f", container["Id"])
    assert await data_of(await client.delete(f"/api/v1/networks/{name}")) == {"id": network_id}
    assert network_inspect(name) == {}
    resp = await client.delete(f"/api/v1/networks/{name}")
    assert resp.status == 404
    for predefined in ("bridge", "host", "none"):
        engine_id = network_inspect(predefined)["Id"]
        for ref in (predefined, engine_id):
            resp = await client.delete(f"/api/v1/networks/{ref}")
            assert resp.status == 403, await resp.text()
            assert_error(await resp.json(), 403)
        assert network_inspect(predefined)["Id"] == engine_id


async def test_connect_and_disconnect_a_container(
    client: TestClient, make_network: MakeNetwork, make_container: MakeContainer, case_label: str
) -> None:
    name = f"mt-net-{case_label}"
    make_network(name, "--subnet", "10.231.26.0/24")
    container = await make_container(start=True)
    body = {"container": container["Id"], "aliases": ["web"], "ipv4_address": "10.231.26.10"}
    shown = await data_of(await client.post(f"/api/v1/networks/{name}/connect", json=body))
    assert [(c["id"], c["ipv4_address"]) for c in shown["containers"]] == [(container["Id"], "10.231.26.10")]
    endpoint = json.loads(docker_cli("inspect", container["Id"]))[0]["NetworkSettings"]["Networks"][name]
    assert endpoint["IPAMConfig"]["IPv4Address"] == "10.231.26.10" and "web" in endpoint["Aliases"]

    again = await client.post(f"/api/v1/networks/{name}/connect", json={"container": container["Id"]})
    assert again.status == 409, await again.text()
    other = await make_container(start=True)
    for address in ("not-an-ip", "10.231.27.1"):
        asked = {"container": other["Id"], "ipv4_address": address}
        resp = await client.post(f"/api/v1/networks/{name}/connect", json=asked)
        assert resp.status == 400 and [e["field"] for e in (await resp.json())["errors"]] == ["ipv4_address"]
    taken = {"container": other["Id"], "ipv4_address": "10.231.26.10"}
    resp = await client.post(f"/api/v1/networks/{name}/connect", json=taken)
    assert resp.status == 409, await resp.text()

    gone = await data_of(await client.post(f"/api/v1/networks/{name}/disconnect", json={"container": container["Id"]}))
    assert gone["containers"] == [] and network_inspect(name)["Containers"] == {}
    resp = await client.post(f"/api/v1/networks/{name}/disconnect", json={"container": container["Id"]})
    assert resp.status == 409, await resp.text()
    resp = await client.post(f"/api/v1/networks/{name}/connect", json={"container": "mt-no-such-container"})
    assert resp.status == 404, await resp.text()
    resp = await client.post("/api/v1/networks/mt-no-such-network/connect", json={"container": container["Id"]})
    assert resp.status == 404, await resp.text()


async def test_the_host_and_none_networks_are_refused_as_at_create(
    client: TestClient, make_container: MakeContainer
) -> None:
    container = await make_container(start=True)
    for network in ("host", "none"):
        for action in ("connect", "disconnect"):
            resp = await client.post(f"/api/v1/networks/{network}/{action}", json={"container": container["Id"]})
            assert resp.status == 403, await resp.text()
            assert [e["field"] for e in (await resp.json())["errors"]] == ["network_id"]
    networks = json.loads(docker_cli("inspect", container["Id"]))[0]["NetworkSettings"]["Networks"]
    assert set(networks) == {"bridge"}


async def test_roles(
    aiohttp_client: Any, tmp_path: Path, make_network: MakeNetwork, make_container: MakeContainer, case_label: str
) -> None:
    """A viewer reads; an operator also connects and disconnects; only an admin creates and removes."""
    client = await app_client(aiohttp_client, tmp_path)
    name = f"mt-net-{case_label}"
    make_network(name)
    container = await make_container(start=True)
    attach = {"container": container["Id"]}
    for key in ("viewer-key", "operator-key"):
        headers = key_headers(key)
        assert (await client.get("/api/v1/networks", headers=headers)).status == 200
        assert (await client.get(f"/api/v1/networks/{name}", headers=headers)).status == 200
        create = create_body(case_label, f"{name}-{key}")
        assert (await client.post("/api/v1/networks", json=create, headers=headers)).status == 403
        assert (await client.delete(f"/api/v1/networks/{name}", headers=headers)).status == 403
    viewer = key_headers("viewer-key")
    for action in ("connect", "disconnect"):
        assert (await client.post(f"/api/v1/networks/{name}/{action}", json=attach, headers=viewer)).status == 403
    assert network_inspect(name)["Containers"] == {}
    operator = key_headers("operator-key")
    resp = await client.post(f"/api/v1/networks/{name}/connect", json=attach, headers=operator)
    assert resp.status == 200, await resp.text()
    assert list(network_inspect(name)["Containers"]) == [container["Id"]]
    resp = await client.post(f"/api/v1/networks/{name}/disconnect", json=attach, headers=operator)
    assert resp.status == 200, await resp.text()
    assert network_inspect(f"{name}-viewer-key") == {} and network_inspect(name)["Containers"] == {}


async def test_aliases_on_the_default_bridge_are_a_400_naming_them(
    client: TestClient, make_network: MakeNetwork, make_container: MakeContainer, case_label: str
) -> None:
    """The engine refuses network-scoped aliases off a user-defined network."""
    name = f"mt-net-{case_label}"
    make_network(name)
    container = await make_container(host_config={"NetworkMode": name})
    resp = await client.post("/api/v1/networks/bridge/connect", json={"container": container["Id"], "aliases": ["x"]})
    assert resp.status == 400 and [e["field"] for e in (await resp.json())["errors"]] == ["aliases"], await resp.text()
    assert sorted(json.loads(docker_cli("inspect", container["Id"]))[0]["NetworkSettings"]["Networks"]) == [name]
