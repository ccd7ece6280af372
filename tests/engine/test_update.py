"""PATCH /containers/{id}: `docker update` of a live container's limits and restart policy (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiodocker

from ..helpers import MakeContainer, app_client, assert_error, key_headers


async def host_config(docker: aiodocker.Docker, container: dict[str, Any]) -> dict[str, Any]:
    return dict((await docker.containers.container(container["Id"]).show())["HostConfig"])


async def test_a_running_container_gets_its_new_limits_and_restart_policy(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    running = await make_container(start=True, host_config={"Memory": 64 * 1024 * 1024})
    change = {
        "memory": "96m",
        "memory_reservation": "32m",
        "cpus": 0.5,
        "pids_limit": 50,
        "restart_policy": "on-failure:3",
    }
    resp = await client.patch(f"/api/v1/containers/{running['Id']}", json=change, headers=key_headers("admin-key"))
    body = await resp.json()
    assert resp.status == 200, body
    data = body["data"]
    assert (data["memory"], data["cpus"], data["restart_policy"]) == (96 * 1024 * 1024, 0.5, "on-failure:3")
    assert data["state"]["running"] is True
    host = await host_config(docker, running)
    assert host["Memory"] == 96 * 1024 * 1024 and host["MemoryReservation"] == 32 * 1024 * 1024
    assert (host["NanoCpus"], host["PidsLimit"]) == (500_000_000, 50)
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    [line] = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert (line["method"], line["result"], line["detail"]) == (
        "PATCH",
        200,
        {
            "id": running["Id"],
            "Memory": 96 * 1024 * 1024,
            "MemoryReservation": 32 * 1024 * 1024,
            "NanoCpus": 500_000_000,
            "PidsLimit": 50,
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        },
    )


async def test_what_the_body_leaves_out_stays_as_it_was(
    client: Any, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    made = await make_container(host_config={"Memory": 64 * 1024 * 1024, "PidsLimit": 40})
    resp = await client.patch(f"/api/v1/containers/{made['Id']}", json={"restart_policy": "unless-stopped"})
    assert resp.status == 200
    host = await host_config(docker, made)
    assert (host["Memory"], host["PidsLimit"]) == (64 * 1024 * 1024, 40)
    assert host["RestartPolicy"]["Name"] == "unless-stopped"


async def test_the_policy_maxima_apply_403_naming_each_field_and_nothing_changes(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    client = await app_client(
        aiohttp_client, tmp_path, policy={"max_memory": "128m", "max_cpus": 1.0, "max_pids_limit": 100}
    )
    made = await make_container(host_config={"Memory": 64 * 1024 * 1024})
    before = await host_config(docker, made)
    over = {"memory": "256m", "memory_reservation": "200m", "cpus": 2, "pids_limit": 1000}
    resp = await client.patch(f"/api/v1/containers/{made['Id']}", json=over, headers=key_headers("admin-key"))
    body = await resp.json()
    assert resp.status == 403
    assert_error(body, 403)
    assert {e["field"] for e in body["errors"]} == {"memory", "memory_reservation", "cpus", "pids_limit"}
    after = await host_config(docker, made)
    assert [after[k] for k in ("Memory", "NanoCpus", "PidsLimit")] == [
        before[k] for k in ("Memory", "NanoCpus", "PidsLimit")
    ]


async def test_bad_input_is_400_naming_the_field(client: Any, make_container: MakeContainer) -> None:
    made = await make_container()
    for sent, field in (({}, "body"), ({"memory": "lots"}, "memory"), ({"cpus": 0}, "cpus"),
                        ({"pids_limit": 0}, "pids_limit"), ({"restart_policy": "sometimes"}, "restart_policy"),
                        ({"memory_reservation": -1}, "memory_reservation"), ({"image": "x"}, "image")):  # fmt: skip
        resp = await client.patch(f"/api/v1/containers/{made['Id']}", json=sent)
        body = await resp.json()
        assert resp.status == 400, sent
        assert field in {e["field"] for e in body["errors"]}, (sent, body)


async def test_updating_needs_an_admin_and_an_unknown_container_is_404(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    made = await make_container()
    resp = await client.patch(
        f"/api/v1/containers/{made['Id']}", json={"pids_limit": 10}, headers=key_headers("operator-key")
    )
    assert resp.status == 403 and (await host_config(docker, made))["PidsLimit"] in (None, 0)
    resp = await client.patch(
        "/api/v1/containers/no-such-container-x", json={"pids_limit": 10}, headers=key_headers("admin-key")
    )
    assert resp.status == 404


async def test_a_reservation_above_the_limit_is_400_naming_the_field_and_changes_nothing(
    client: Any, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    made = await make_container(host_config={"Memory": 64 * 1024 * 1024})
    for sent in ({"memory_reservation": "100m"}, {"memory": "80m", "memory_reservation": "90m"}):
        resp = await client.patch(f"/api/v1/containers/{made['Id']}", json=sent)
        body = await resp.json()
        assert resp.status == 400, body
        assert [e["field"] for e in body["errors"]] == ["memory_reservation"]
    host = await host_config(docker, made)
    assert (host["Memory"], host["MemoryReservation"]) == (64 * 1024 * 1024, 0)


async def test_a_limit_the_engine_refuses_is_its_conflict_naming_the_field(
    client: Any, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    """As `docker update --memory` alone: the engine keeps the swap limit it set at create (twice the memory),
    and refuses a memory limit above it."""
    made = await make_container(host_config={"Memory": 64 * 1024 * 1024})
    resp = await client.patch(f"/api/v1/containers/{made['Id']}", json={"memory": "512m"})
    body = await resp.json()
    assert resp.status == 409, body
    assert [e["field"] for e in body["errors"]] == ["memory"]
    assert (await host_config(docker, made))["Memory"] == 64 * 1024 * 1024
