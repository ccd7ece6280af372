"""Secrets stay with the keys that may read them: a viewer's or operator's answer about a container has its
environment values and the values of `[auth] secret_labels` null, says so in `redacted`, and keeps the rest;
an admin's is whole. Checked against what `docker inspect` holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from moorage.schemas.containers import ContainerDetailSchema, ContainerSummarySchema

from ..helpers import ROLES, TEST_LABEL, MakeContainer, app_client, docker_cli, key_headers

SECRET_LABELS = ["traefik.http.middlewares.*.basicauth.users", "db.password"]
LABELS = {
    "traefik.http.middlewares.auth.basicauth.users": "admin:$apr1$hash",
    "db.password": "hunter2",
    "app": "web",
}


# A deploy script's key: it may recreate (containers:update), not read secrets.
KEYS = {
    **ROLES,
    "deployer": {"permissions": ["containers:read", "containers:update"]},
    "deployer-with-secrets": {"permissions": ["containers:read", "containers:update", "containers:secrets"]},
}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, KEYS, auth={"secret_labels": SECRET_LABELS})


@pytest.fixture
async def secretive(make_container: MakeContainer) -> dict[str, Any]:
    return await make_container(
        start=True, cmd=["sleep", "600"], labels=LABELS, Env=["DB_PASSWORD=hunter2", "MODE=prod"]
    )


async def detail_as(client: TestClient, key: str, container_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/containers/{container_id}", headers=key_headers(key))
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    assert ContainerDetailSchema().validate(data) == {}
    return data


@pytest.mark.parametrize("key", ["viewer-key", "operator-key"])
async def test_a_key_that_may_not_read_secrets_sees_their_names_only(
    client: TestClient, secretive: dict[str, Any], key: str
) -> None:
    data = await detail_as(client, key, secretive["Id"])
    # The engine holds the values; the answer does not.
    env = json.loads(docker_cli("inspect", "--format", "{{json .Config.Env}}", secretive["Id"]))
    assert "DB_PASSWORD=hunter2" in env
    assert {name: data["environment"][name] for name in ("DB_PASSWORD", "MODE")} == {
        "DB_PASSWORD": None,
        "MODE": None,
    }
    assert data["labels"]["db.password"] is None
    assert data["labels"]["traefik.http.middlewares.auth.basicauth.users"] is None
    assert data["labels"]["app"] == "web" and TEST_LABEL in data["labels"]
    assert data["redacted"] == ["environment", "labels"]
    assert "hunter2" not in json.dumps(data) and "apr1" not in json.dumps(data)


async def test_an_admin_sees_the_values(client: TestClient, secretive: dict[str, Any]) -> None:
    data = await detail_as(client, "admin-key", secretive["Id"])
    assert data["environment"]["DB_PASSWORD"] == "hunter2"
    assert data["labels"]["db.password"] == "hunter2"
    assert data["redacted"] == []


async def test_the_list_withholds_secret_labels(client: TestClient, secretive: dict[str, Any]) -> None:
    query = f"?label=db.password&name={secretive['Name'].lstrip('/')}"
    for key, shown in (("viewer-key", None), ("admin-key", "hunter2")):
        resp = await client.get(f"/api/v1/containers{query}", headers=key_headers(key))
        [item] = (await resp.json())["data"]["items"]
        assert ContainerSummarySchema().validate(item) == {}
        assert item["labels"]["db.password"] == shown
        assert item["labels"]["app"] == "web"
        assert item["redacted"] == ([] if shown else ["labels"])


async def test_an_operators_lifecycle_answer_is_redacted_too(client: TestClient, secretive: dict[str, Any]) -> None:
    resp = await client.post(
        f"/api/v1/containers/{secretive['Id']}/restart?timeout=0", headers=key_headers("operator-key")
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body["data"]["environment"]["DB_PASSWORD"] is None
    assert "hunter2" not in json.dumps(body)


async def test_without_secret_labels_only_the_environment_is_withheld(
    aiohttp_client: Any, tmp_path: Path, secretive: dict[str, Any]
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    data = await detail_as(client, "viewer-key", secretive["Id"])
    assert data["labels"]["db.password"] == "hunter2"
    assert data["redacted"] == ["environment"]


@pytest.mark.parametrize(("key", "sees"), [("deployer", False), ("deployer-with-secrets", True)])
async def test_a_recreate_dry_run_shows_the_old_containers_secrets_only_to_who_may_read_them(
    client: TestClient, secretive: dict[str, Any], key: str, sees: bool
) -> None:
    """The dry run's engine body is rebuilt from the old container, environment and labels included."""
    resp = await client.post(
        f"/api/v1/containers/{secretive['Id']}/recreate?dry_run=true", json={"pull": "never"}, headers=key_headers(key)
    )
    body = await resp.json()
    assert resp.status == 200, body
    sent = body["data"]["engine_request"]
    assert ("DB_PASSWORD=hunter2" in sent["body"]["Env"]) is sees
    assert ("DB_PASSWORD" in sent["body"]["Env"]) is not sees
    assert sent["body"]["Labels"]["db.password"] == ("hunter2" if sees else None)
    assert sent["body"]["Labels"]["app"] == "web"
    assert sent["redacted"] == ([] if sees else ["environment", "labels"])
    assert ("hunter2" in json.dumps(body)) is sees
