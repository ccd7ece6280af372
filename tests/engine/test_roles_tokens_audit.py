"""Access control: the role matrix over every route, bearer tokens, failed-auth limiting, the audit log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.settings import BUNDLES, Permission, Role
from moorage.web.roles import AUTHENTICATED, declared_permission
from moorage.web.state import AUDIT

from ..helpers import (
    HARMLESS_PRUNE,
    PUBLIC_PATHS,
    ROLES,
    STOPPABLE,
    TEST_LABEL,
    MakeContainer,
    app_client,
    concrete_routes,
    docker_cli,
    key_headers,
    make_settings,
    plain_key,
)


async def test_every_route_enforces_its_declared_permission(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    checked = 0
    for method, path, handler in concrete_routes(client.app):
        if path in PUBLIC_PATHS:
            continue
        needed = declared_permission(handler)
        assert isinstance(needed, Permission) or needed == AUTHENTICATED, f"{method} {path}"
        params = HARMLESS_PRUNE if path.endswith("/prune") else None
        for name, role in ROLES.items():
            resp = await client.request(method, path, headers=key_headers(name), params=params)
            if needed == AUTHENTICATED or needed in BUNDLES[Role(role)]:
                assert resp.status not in (401, 403), f"{role} on {method} {path}: {resp.status}"
            else:
                assert resp.status == 403, f"{role} on {method} {path}: {resp.status}"
                body = await resp.json()
                assert body["errors"] == [{"field": "permission", "message": f"needs {needed}"}]
            checked += 1
    assert checked > 30


async def issue(client: TestClient, key: str, **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/v1/auth/tokens", json=body, headers=key_headers(key))
    return resp.status, await resp.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_acts_with_its_role_and_no_higher_than_its_key(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    status, body = await issue(client, "operator-key", role="viewer")
    assert status == 201 and body["data"]["role"] == "viewer" and body["data"]["expires_at"].endswith("Z")
    token = body["data"]["token"]
    assert (await client.get("/api/v1/containers?limit=1", headers=bearer(token))).status == 200
    stop = await client.post("/api/v1/containers/x1/stop", headers=bearer(token))
    assert stop.status == 403  # a viewer token of an operator key is a viewer
    assert (await issue(client, "viewer-key", role="admin"))[0] == 403
    assert (await issue(client, "viewer-key", ttl=10**6))[0] == 400
    # A token does not make tokens.
    again = await client.post("/api/v1/auth/tokens", json={}, headers=bearer(token))
    assert again.status == 403


async def test_an_expired_token_says_expired(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    _, body = await issue(client, "viewer-key", ttl=1)
    await asyncio.sleep(2.1)
    resp = await client.get("/api/v1/containers", headers=bearer(body["data"]["token"]))
    assert resp.status == 401 and (await resp.json())["message"] == "token expired"


def forged(token: str, alg: str) -> str:
    payload = token.split(".")[1]
    raw = json.dumps({"alg": alg, "typ": "JWT"}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + f".{payload}."


@pytest.mark.parametrize("how", ["tampered", "alg-none", "garbage", "other-secret"])
async def test_a_bad_token_is_invalid(aiohttp_client: Any, tmp_path: Path, how: str) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    _, body = await issue(client, "admin-key")
    token = body["data"]["token"]
    bad = {
        "tampered": token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        "alg-none": forged(token, "none"),
        "garbage": "not.a.token",
        "other-secret": "eyJhbGciOiJIUzI1NiJ9." + token.split(".")[1] + ".c2lnbmF0dXJl",
    }[how]
    resp = await client.get("/api/v1/containers", headers=bearer(bad))
    assert resp.status == 401 and (await resp.json())["message"] == "invalid token"


async def test_revocation_holds_and_survives_a_restart(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    _, body = await issue(client, "viewer-key")
    token, jti = body["data"]["token"], body["data"]["jti"]
    assert (await client.delete(f"/api/v1/auth/tokens/{jti}", headers=key_headers("operator-key"))).status == 403
    assert (await client.delete(f"/api/v1/auth/tokens/{jti}", headers=key_headers("admin-key"))).status == 200
    resp = await client.get("/api/v1/containers", headers=bearer(token))
    assert resp.status == 401 and (await resp.json())["message"] == "token revoked"
    restarted = await app_client(aiohttp_client, tmp_path)  # same state directory, new process state
    assert (await restarted.get("/api/v1/containers", headers=bearer(token))).status == 401
    assert (await restarted.delete("/api/v1/auth/tokens/not-hex", headers=key_headers("admin-key"))).status == 400


async def test_removing_a_key_invalidates_its_tokens(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    _, body = await issue(client, "viewer-key")
    token = body["data"]["token"]
    without = await app_client(aiohttp_client, tmp_path, keys={"admin-key": "admin"})
    assert (await without.get("/api/v1/containers", headers=bearer(token))).status == 401


async def test_the_audit_log_has_a_line_per_mutating_or_denied_call_and_no_secret(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    await client.get("/api/v1/containers?limit=1", headers=key_headers("viewer-key"))  # a read: not audited
    await client.post("/api/v1/containers/no-such-x/stop", headers=key_headers("operator-key"))  # 404, mutating
    await client.get("/api/v1/containers", headers={"X-API-Key": "mrg_wrong"})  # 401
    await client.delete("/api/v1/containers/no-such-x", headers=key_headers("viewer-key"))  # 403
    _, body = await issue(client, "admin-key")  # 201, mutating
    token = body["data"]["token"]
    text = (tmp_path / "state" / "audit.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(e["method"], e["result"]) for e in lines] == [("POST", 404), ("GET", 401), ("DELETE", 403), ("POST", 201)]
    assert lines[0] == {
        **lines[0],
        "key": "operator-key",
        "role": "operator",
        "target": "no-such-x",
        "token_id": None,
        "permission": "containers:lifecycle",
    }
    assert lines[1]["key"] is None and lines[1]["client"] == "127.0.0.1"
    for secret in (*(plain_key(name) for name in ROLES), token, "mrg_wrong"):
        assert secret not in text


async def test_a_mutating_call_is_refused_when_the_audit_cannot_be_written(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    client.app[AUDIT].close()
    resp = await client.post("/api/v1/auth/tokens", json={}, headers=key_headers("admin-key"))
    assert resp.status == 503
    assert (await client.get("/api/v1/containers?limit=1", headers=key_headers("viewer-key"))).status == 200


async def test_a_key_replaced_under_the_same_name_does_not_keep_the_old_ones_tokens(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    _, body = await issue(client, "viewer-key")
    rotated = make_settings(tmp_path, {"admin-key": "admin"})
    new_key = replace(rotated.auth.api_keys[0], name="viewer-key", role=Role.VIEWER)
    restarted = await aiohttp_client(create_app(rotated.with_keys((*rotated.auth.api_keys, new_key))))
    assert (await restarted.get("/api/v1/containers", headers=bearer(body["data"]["token"]))).status == 401


async def test_a_call_whose_client_left_runs_to_its_end_and_is_audited_with_its_outcome(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    running = await make_container(start=True)  # sleep ignores SIGTERM: the stop waits its whole timeout
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            client.post(f"/api/v1/containers/{running['Id']}/stop?timeout=3", headers=key_headers("operator-key")), 0.5
        )
    for _ in range(150):
        text = (tmp_path / "state" / "audit.log").read_text()
        if text:
            break
        await asyncio.sleep(0.1)
    [line] = [json.loads(line) for line in text.splitlines()]
    assert (line["method"], line["result"], line["target"]) == ("POST", 200, running["Id"])
    assert (await docker.containers.container(running["Id"]).show())["State"]["Running"] is False


# Keys that are not a role's bundle: one that reads containers and nothing else; the issue's komodo#1640 case, an
# admin's bundle without exec; one that has expired.
SCOPED = {
    **ROLES,
    "reader": {"permissions": ["containers:read"]},
    "no-exec": {"role": "admin", "permissions": sorted(set(Permission) - {Permission.CONTAINERS_EXEC})},
    "lapsed": {"role": "admin", "expires_at": "2020-01-01T00:00:00Z"},
}


def needs(body: dict[str, Any], permission: str) -> bool:
    return body["errors"] == [{"field": "permission", "message": f"needs {permission}"}]


async def test_a_key_with_only_containers_read_lists_and_inspects_and_does_nothing_else(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, case_label: str
) -> None:
    client = await app_client(aiohttp_client, tmp_path, keys=SCOPED)
    made = await make_container()
    listed = await client.get(f"/api/v1/containers?label={TEST_LABEL}={case_label}", headers=key_headers("reader"))
    assert listed.status == 200
    assert [item["id"] for item in (await listed.json())["data"]["items"]] == [made["Id"]]
    assert (await client.get(f"/api/v1/containers/{made['Id']}", headers=key_headers("reader"))).status == 200
    start = await client.post(f"/api/v1/containers/{made['Id']}/start", headers=key_headers("reader"))
    assert start.status == 403 and needs(await start.json(), "containers:lifecycle")
    logs = await client.get(f"/api/v1/containers/{made['Id']}/logs", headers=key_headers("reader"))
    assert logs.status == 403 and needs(await logs.json(), "containers:logs")
    assert docker_cli("inspect", "-f", "{{.State.Status}}", made["Id"]) == "created"


async def test_a_key_with_lifecycle_but_not_exec_restarts_and_cannot_exec(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer
) -> None:
    client = await app_client(aiohttp_client, tmp_path, keys=SCOPED)
    running = await make_container(cmd=STOPPABLE, start=True)
    restart = await client.post(f"/api/v1/containers/{running['Id']}/restart", headers=key_headers("no-exec"))
    assert restart.status == 200, await restart.text()
    started = docker_cli("inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", running["Id"])
    assert started.startswith("true ") and started != f"true {running['State']['StartedAt']}"
    execd = await client.post(
        f"/api/v1/containers/{running['Id']}/exec", json={"command": ["touch", "/ran"]}, headers=key_headers("no-exec")
    )
    assert execd.status == 403 and needs(await execd.json(), "containers:exec")
    session = await client.get(f"/api/v1/containers/{running['Id']}/exec/ws", headers=key_headers("no-exec"))
    assert session.status == 403
    assert "ran" not in docker_cli("exec", running["Id"], "ls", "/").split()


async def test_an_expired_key_is_a_401_saying_so_and_so_are_its_tokens(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, keys=SCOPED)
    resp = await client.get("/api/v1/containers?limit=1", headers=key_headers("lapsed"))
    assert resp.status == 401 and (await resp.json())["message"] == "key expired"
    assert (await issue(client, "lapsed"))[0] == 401


async def test_a_token_narrowed_to_containers_read_cannot_start(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    made = await make_container()
    status, body = await issue(client, "operator-key", permissions=["containers:read"])
    assert status == 201 and body["data"]["permissions"] == ["containers:read"]
    token = bearer(body["data"]["token"])
    assert (await client.get(f"/api/v1/containers/{made['Id']}", headers=token)).status == 200
    start = await client.post(f"/api/v1/containers/{made['Id']}/start", headers=token)
    assert start.status == 403 and needs(await start.json(), "containers:lifecycle")
    assert docker_cli("inspect", "-f", "{{.State.Status}}", made["Id"]) == "created"
    # The key itself still may.
    assert (
        await client.post(f"/api/v1/containers/{made['Id']}/start", headers=key_headers("operator-key"))
    ).status == 200
