"""The container list's health and exit code against the real engine, as `docker ps` tells them, and its
`health` filter, as `docker ps --filter health=` applies it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from ..helpers import FAILING, HEALTHY, TEST_LABEL, MakeContainer, app_client, docker_cli, key_headers, until_health


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path)


async def test_the_list_tells_health_and_exit_code_as_docker_ps_does(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    healthy = await make_container(start=True, Healthcheck=HEALTHY)
    failing = await make_container(start=True, Healthcheck=FAILING)
    plain = await make_container(start=True)
    exited = await make_container(cmd=["sh", "-c", "exit 7"], start=True)
    await docker.containers.container(exited["Id"]).wait()
    await until_health(docker, healthy["Id"], "healthy")
    await until_health(docker, failing["Id"], "unhealthy")
    resp = await client.get(f"/api/v1/containers?label={TEST_LABEL}={case_label}", headers=key_headers("viewer-key"))
    listed = {c["id"]: c for c in (await resp.json())["data"]["items"]}
    assert {cid: (c["health"], c["exit_code"]) for cid, c in listed.items()} == {
        healthy["Id"]: ("healthy", None),
        failing["Id"]: ("unhealthy", None),
        plain["Id"]: (None, None),
        exited["Id"]: (None, 7),
    }
    for health in ("healthy", "unhealthy", "none"):
        resp = await client.get(
            f"/api/v1/containers?label={TEST_LABEL}={case_label}&health={health}", headers=key_headers("viewer-key")
        )
        ours = {c["id"] for c in (await resp.json())["data"]["items"]}
        filters = ["--filter", f"label={TEST_LABEL}={case_label}", "--filter", f"health={health}"]
        theirs = docker_cli("ps", "-a", "--no-trunc", "-q", *filters)
        assert ours == set(theirs.split()), health


async def test_a_bad_health_filter_is_a_400_naming_it(client: TestClient) -> None:
    resp = await client.get("/api/v1/containers?health=ill", headers=key_headers("viewer-key"))
    assert resp.status == 400 and [e["field"] for e in (await resp.json())["errors"]] == ["health"]
