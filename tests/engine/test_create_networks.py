"""POST /api/v1/containers with `networks` against the real engine (issue 17): a container on several user-defined
networks at create, with its aliases and fixed addresses, cross-checked with `docker inspect` and by another
container that resolves the aliases; each refusal names its field before the engine is asked; a create that fails
on its second network or at start leaves no container behind; the detail shows every network."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from ..helpers import STOPPABLE, TEST_IMAGE, TEST_LABEL, assert_error, docker_cli, inspected, labelled, remove_labelled

Create = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]
# Subnets of this file's own (tests/engine/test_networks.py uses others of 10.231/16).
FRONT_SUBNET, BACK_SUBNET = "10.231.171.0/24", "10.231.172.0/24"


@pytest.fixture
async def nets(docker: aiodocker.Docker, case_label: str) -> AsyncIterator[tuple[str, str]]:
    """Two labelled user-defined networks of this test's own, front and back; after the test, its containers and
    then the networks (which a container holds) are removed."""
    names = (f"mt-front-{case_label}", f"mt-back-{case_label}")
    for name, subnet in zip(names, (FRONT_SUBNET, BACK_SUBNET), strict=True):
        docker_cli("network", "create", "--label", f"{TEST_LABEL}={case_label}", "--subnet", subnet, name)
    yield names
    await remove_labelled(docker, case_label)
    remove_networks(case_label)


def remove_networks(case_label: str) -> None:
    for network in docker_cli("network", "ls", "-q", "--filter", f"label={TEST_LABEL}={case_label}").split():
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


@pytest.fixture
def create(client: TestClient, case_label: str) -> Create:
    """POST a create body, labelled for this test and named for it unless the body names it."""

    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        labels = {TEST_LABEL: case_label, **body.pop("labels", {})}
        full = {"name": f"mt-nets-{case_label}", "image": TEST_IMAGE, "pull": "never", **body, "labels": labels}
        resp = await client.post("/api/v1/containers", json=full)
        return resp.status, await resp.json()

    return post


def fields(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


def named(name: str) -> list[str]:
    """`docker ps -a` by exact name: what a failed create left."""
    return docker_cli("ps", "-aq", "--filter", f"name=^/{name}$").split()


def resolved(network: str, case_label: str, alias: str) -> str:
    """The address `alias` resolves to for another container on `network` (the engine's DNS), by busybox ping."""
    run = ["docker", "run", "--rm", "--label", f"{TEST_LABEL}={case_label}", "--network", network]
    done = subprocess.run([*run, TEST_IMAGE, "ping", "-c", "1", "-W", "5", alias], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # PING web (10.231.171.10): 56 data bytes
    return done.stdout.split("(", 1)[1].split(")", 1)[0]


async def test_a_container_on_two_networks_is_on_both_with_its_aliases_and_fixed_address(
    create: Create, client: TestClient, nets: tuple[str, str], case_label: str
) -> None:
    front, back = nets
    status, body = await create(
        {
            "command": STOPPABLE,
            "start": True,
            "networks": [
                {"name": front, "aliases": ["web"], "ipv4_address": "10.231.171.10"},
                {"name": back, "aliases": ["api", "svc"]},
            ],
        }
    )
    assert status == 201, body
    engine = inspected(body["data"]["id"])
    assert engine["HostConfig"]["NetworkMode"] == front
    endpoints = engine["NetworkSettings"]["Networks"]
    assert sorted(endpoints) == sorted(nets)
    assert endpoints[front]["IPAMConfig"]["IPv4Address"] == endpoints[front]["IPAddress"] == "10.231.171.10"
    assert {"web"} <= set(endpoints[front]["Aliases"]) and {"api", "svc"} <= set(endpoints[back]["Aliases"])
    back_address = endpoints[back]["IPAddress"]
    assert back_address.startswith("10.231.172.")

    assert resolved(front, case_label, "web") == "10.231.171.10"
    assert resolved(back, case_label, "api") == resolved(back, case_label, "svc") == back_address

    resp = await client.get(f"/api/v1/containers/{body['data']['id']}")
    shown = {item["name"]: item for item in (await resp.json())["data"]["networks"]}
    for name, endpoint in endpoints.items():
        assert shown[name] == {
            "name": name,
            "network_id": endpoint["NetworkID"],
            "ipv4_address": endpoint["IPAddress"],
            "ipv6_address": None,
            "gateway": endpoint["Gateway"],
            "mac_address": endpoint["MacAddress"],
            "aliases": endpoint["Aliases"],
        }
    assert body["data"]["networks"] == list(shown.values())  # the create's answer is the detail


async def test_a_created_container_keeps_its_networks_for_its_start(
    create: Create, client: TestClient, nets: tuple[str, str]
) -> None:
    """Not started at create: the engine holds the endpoints, and gives the addresses at start."""
    front, back = nets
    status, body = await create(
        {"command": STOPPABLE, "networks": [{"name": back}, {"name": front, "ipv4_address": "10.231.171.11"}]}
    )
    assert status == 201, body
    assert [(n["name"], n["ipv4_address"]) for n in body["data"]["networks"]] == [(back, None), (front, None)]
    resp = await client.post(f"/api/v1/containers/{body['data']['id']}/start")
    assert resp.status in (200, 204), await resp.text()
    engine = inspected(body["data"]["id"])
    assert engine["HostConfig"]["NetworkMode"] == back
    assert engine["NetworkSettings"]["Networks"][front]["IPAddress"] == "10.231.171.11"


async def test_a_network_given_by_id_is_the_network_by_name(create: Create, nets: tuple[str, str]) -> None:
    front, back = nets
    front_id = docker_cli("network", "inspect", "-f", "{{.Id}}", front)
    status, body = await create({"networks": [{"name": front_id[:12], "aliases": ["web"]}, {"name": back}]})
    assert status == 201, body
    engine = inspected(body["data"]["id"])
    assert engine["HostConfig"]["NetworkMode"] == front and sorted(engine["NetworkSettings"]["Networks"]) == sorted(
        nets
    )


@pytest.mark.parametrize(
    ("networks", "more", "field"),
    [
        ([{"name": "FRONT"}], {"network": "bridge"}, "networks"),
        ([{"name": "FRONT"}], {"network_mode": "none"}, "networks"),
        ([{"name": "FRONT"}, {"name": "FRONT"}], {}, "networks.1.name"),
        ([{"name": "FRONT"}, {"name": "host"}], {}, "networks.1.name"),
        ([{"name": "none"}], {}, "networks.0.name"),
        ([{"name": "container:other"}], {}, "networks.0.name"),
        ([{"name": "bridge", "aliases": ["web"]}], {}, "networks.0.aliases"),
        ([{"name": "FRONT"}, {"name": "bridge", "ipv4_address": "172.17.0.99"}], {}, "networks.1.ipv4_address"),
        ([{"name": "BRIDGE_ID", "aliases": ["web"]}], {}, "networks.0.aliases"),
        ([{"name": "FRONT"}, {"name": "BACK", "ipv4_address": "10.231.171.12"}], {}, "networks.1.ipv4_address"),
        ([{"name": "FRONT"}, {"name": "FRONT_ID"}], {}, "networks.1.name"),
        ([{"name": "NONE_ID"}], {}, "networks.0.name"),
    ],
    ids=[
        "with-network",
        "with-network-mode",
        "twice",
        "host",
        "none",
        "container",
        "aliases-on-bridge",
        "address-on-bridge",
        "aliases-on-bridge-by-id",
        "address-outside-the-subnet",
        "twice-by-name-and-id",
        "none-by-id",
    ],
)
async def test_a_network_the_engine_would_refuse_is_a_400_naming_it_with_nothing_made(
    create: Create,
    nets: tuple[str, str],
    case_label: str,
    networks: list[dict[str, Any]],
    more: dict[str, Any],
    field: str,
) -> None:
    by_id = {"FRONT_ID": nets[0], "BRIDGE_ID": "bridge", "NONE_ID": "none"}
    ids = {ref: docker_cli("network", "inspect", "-f", "{{.Id}}", name) for ref, name in by_id.items()}
    names = {"FRONT": nets[0], "BACK": nets[1], **ids}
    given = [{**item, "name": names.get(item["name"], item["name"])} for item in networks]
    status, body = await create({"networks": given, **more})
    assert (status, fields(body)) == (400, [field]), body
    assert_error(body, 400)
    assert "Unknown field" not in body["errors"][0]["message"]
    assert labelled(case_label) == []


async def test_an_unknown_network_is_a_404_naming_it(create: Create, nets: tuple[str, str], case_label: str) -> None:
    status, body = await create({"networks": [{"name": nets[0]}, {"name": f"no-such-net-{case_label}"}]})
    assert (status, fields(body)) == (404, ["networks.1.name"]), body
    assert labelled(case_label) == []


async def test_the_host_network_by_id_is_refused_by_the_policy(
    create: Create, nets: tuple[str, str], case_label: str
) -> None:
    host_id = docker_cli("network", "inspect", "-f", "{{.Id}}", "host")
    status, body = await create({"networks": [{"name": nets[0]}, {"name": host_id[:12]}]})
    assert (status, fields(body)) == (403, ["networks.1.name"]), body
    assert labelled(case_label) == []


async def test_an_address_in_use_is_a_409_naming_it_and_leaves_no_container(
    create: Create, nets: tuple[str, str], case_label: str
) -> None:
    """The engine gives an address at start: taken, on the first network or a later one, the start fails."""
    addresses = ("10.231.171.20", "10.231.172.20")
    started = {"command": STOPPABLE, "start": True}
    first = [{"name": network, "ipv4_address": address} for network, address in zip(nets, addresses, strict=True)]
    status, body = await create({**started, "name": f"mt-first-{case_label}", "networks": first})
    assert status == 201, body
    for index, taken in enumerate(first):
        status, body = await create({**started, "networks": [taken]})
        assert (status, fields(body)) == (409, ["networks.0.ipv4_address"]), body
        status, body = await create({**started, "networks": [{"name": nets[1 - index]}, taken]})
        assert (status, fields(body)) == (409, ["networks.1.ipv4_address"]), body
        assert named(f"mt-nets-{case_label}") == []


async def test_a_start_whose_address_another_container_took_meanwhile_is_a_409(
    create: Create, client: TestClient, nets: tuple[str, str], case_label: str
) -> None:
    """Created, not started: the address is the engine's to give at the start, which finds it taken."""
    fixed = {"command": STOPPABLE, "networks": [{"name": nets[0], "ipv4_address": "10.231.171.40"}]}
    status, waiting = await create(fixed)
    assert status == 201, waiting
    status, body = await create({**fixed, "name": f"mt-first-{case_label}", "start": True})
    assert status == 201, body
    resp = await client.post(f"/api/v1/containers/{waiting['data']['id']}/start")
    assert resp.status == 409, await resp.text()
    assert "Address already in use" in (await resp.json())["message"]


async def test_a_failed_second_connect_leaves_no_container_and_the_name_free(
    create: Create, nets: tuple[str, str], case_label: str
) -> None:
    """A network on a subnet the engine chose takes no fixed address: the engine refuses the connect."""
    chosen = f"mt-chosen-{case_label}"
    docker_cli("network", "create", "--label", f"{TEST_LABEL}={case_label}", chosen)
    subnet = json.loads(docker_cli("network", "inspect", "-f", "{{json .IPAM.Config}}", chosen))[0]["Subnet"]
    address = subnet.split("/")[0].rsplit(".", 1)[0] + ".77"
    status, body = await create({"networks": [{"name": nets[0]}, {"name": chosen, "ipv4_address": address}]})
    assert (status, fields(body)) == (400, ["networks.1.ipv4_address"]), body
    assert "user configured subnets" in body["message"]
    assert named(f"mt-nets-{case_label}") == [] and labelled(case_label) == []
    status, body = await create({"networks": [{"name": nets[0]}, {"name": chosen}]})
    assert status == 201, body


async def test_the_create_is_audited_with_its_networks(create: Create, nets: tuple[str, str], tmp_path: Path) -> None:
    front, back = nets
    status, body = await create(
        {"networks": [{"name": front, "aliases": ["web"]}, {"name": back, "ipv4_address": "10.231.172.30"}]}
    )
    assert status == 201, body
    lines = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    [line] = [line for line in lines if line["path"] == "/api/v1/containers"]
    assert line["detail"]["networks"] == [
        {"name": front, "aliases": ["web"], "ipv4_address": None},
        {"name": back, "aliases": [], "ipv4_address": "10.231.172.30"},
    ]
