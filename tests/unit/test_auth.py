"""Every route but the probes needs a valid key; the test walks the router, so a route added later is covered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.settings import Permission, Settings
from moorage.web.roles import is_public, needs_credential, requires

from ..helpers import PUBLIC_PATHS, Daemon, assert_error, concrete_routes, get_json, make_settings, plain_key


def test_every_route_declares_a_permission_or_is_public(settings: Settings) -> None:
    routes = concrete_routes(create_app(settings))
    assert routes, "the router has no routes"
    for method, path, handler in routes:
        if path in PUBLIC_PATHS:
            assert is_public(handler, settings), path
        else:
            assert needs_credential(handler), f"{method} {path} declares no permission"


async def test_every_api_route_refuses_a_missing_key(anon: TestClient) -> None:
    routes = [r for r in concrete_routes(anon.app) if r[1] not in PUBLIC_PATHS]
    assert any(path.startswith("/api/v1/") for _, path, _ in routes)
    for method, path, _ in routes:
        resp = await anon.request(method, path)
        assert resp.status == 401, f"{method} {path}"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(await resp.json(), 401)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "mrg_not-a-key"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer mrg_not-a-key"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
    ],
    ids=["wrong-key", "empty-key", "wrong-bearer", "basic-auth"],
)
async def test_every_api_route_refuses_a_wrong_key(anon: TestClient, headers: dict[str, str]) -> None:
    for method, path, _ in concrete_routes(anon.app):
        if path in PUBLIC_PATHS:
            continue
        resp = await anon.request(method, path, headers=headers)
        assert resp.status == 401, f"{method} {path}"
        assert_error(await resp.json(), 401)


async def test_probes_need_no_key(anon: TestClient) -> None:
    resp = await anon.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"code": 200, "message": "success", "data": {"status": "up"}}


async def test_unknown_routes_need_a_key_before_they_say_404(anon: TestClient) -> None:
    resp = await anon.get("/api/v1/no-such-thing")
    assert resp.status == 401


async def test_a_key_without_the_routes_permission_gets_403_naming_it(aiohttp_client: Any, tmp_path: Any) -> None:
    settings = make_settings(tmp_path, {"watcher": "viewer"})
    app = create_app(settings)

    @requires(Permission.CONTAINERS_EXEC)
    async def admin_only(request: web.Request) -> web.Response:
        raise AssertionError("must not be reached")

    app.router.add_post("/api/v1/admin-only", admin_only)
    client = await aiohttp_client(app)
    resp = await client.post("/api/v1/admin-only", headers={"X-API-Key": plain_key("watcher")})
    assert resp.status == 403
    body = await resp.json()
    assert_error(body, 403)
    assert "containers:exec" in body["message"]
    assert body["errors"] == [{"field": "permission", "message": "needs containers:exec"}]


@pytest.mark.parametrize("param", ["api_key", "token", "access_token", "X-API-Key"])
async def test_a_credential_in_the_query_string_is_a_400(client: TestClient, api_key: str, param: str) -> None:
    resp = await client.get(f"/api/v1/containers?{param}={api_key}")
    assert resp.status == 400
    body = await resp.json()
    assert [e["field"] for e in body["errors"]] == [param]
    assert api_key not in await resp.text()


async def test_both_credential_headers_are_a_400(anon: TestClient, api_key: str) -> None:
    resp = await anon.get("/api/v1/containers", headers={"X-API-Key": api_key, "Authorization": f"Bearer {api_key}"})
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == ["Authorization"]


async def test_the_access_log_never_holds_a_query_string(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> None:
    daemon = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\naccess_log = true\n')
    secret = "mrg_this-must-not-be-logged"
    async with aiohttp.ClientSession() as session:
        status, _ = await get_json(session, f"{daemon.url}/api/v1/containers?api_key={secret}")
    assert status == 400
    assert daemon.stop() == 0
    output = daemon.output()
    assert '"GET /api/v1/containers" 400' in output
    assert secret not in output
