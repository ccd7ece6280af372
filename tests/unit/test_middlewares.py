"""The error and auth middlewares on a bare app: only they and a few toy handlers, no routes of moorage's and no
engine, so that what the envelope and default-deny promise is seen to come from the middlewares alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from marshmallow import Schema, fields

from moorage.access.lastuse import FILE, KeyUse
from moorage.access.ratelimit import FailedAuthLimiter
from moorage.errors import Conflict
from moorage.settings import LiveSettings, Permission
from moorage.web.middlewares import auth_middleware, error_middleware
from moorage.web.roles import public, requires
from moorage.web.state import KEY_USE, LIMITER, LIVE

from ..helpers import ROLES, assert_error, key_headers, make_settings

COUNT = Schema.from_dict({"count": fields.Integer(required=True)})


@public
async def probe(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def undeclared(request: web.Request) -> web.Response:
    return web.json_response({"reached": True})


@requires(Permission.CONTAINERS_READ)
async def taken(request: web.Request) -> web.Response:
    raise Conflict("the name is taken", errors=[{"field": "name", "message": "in use"}])


@requires(Permission.CONTAINERS_READ)
async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals at /opt/x")


@requires(Permission.CONTAINERS_READ)
async def counted(request: web.Request) -> web.Response:
    return web.json_response(COUNT().load(dict(request.query)))


@requires(Permission.CONTAINERS_LIFECYCLE)
async def operate(request: web.Request) -> web.Response:
    return web.json_response({"done": True})


@pytest.fixture
async def bare(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    """An app with only the error and auth middlewares, in moorage's order, and what they read on the app."""
    settings = make_settings(tmp_path, ROLES)
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[LIVE] = LiveSettings(settings)
    app[LIMITER] = FailedAuthLimiter(settings.auth.failed_limit, settings.auth.failed_window)
    app[KEY_USE] = KeyUse(tmp_path / FILE)
    for path, handler in [
        ("/probe", probe),
        ("/undeclared", undeclared),
        ("/taken", taken),
        ("/boom", boom),
        ("/counted", counted),
        ("/operate", operate),
    ]:
        app.router.add_get(path, handler)
    client: TestClient = await aiohttp_client(app)
    return client


async def test_a_public_handler_answers_without_a_key(bare: TestClient) -> None:
    resp = await bare.get("/probe")
    assert (resp.status, await resp.json()) == (200, {"ok": True})


async def test_a_handler_that_declares_no_permission_is_refused_even_to_an_admin(bare: TestClient) -> None:
    resp = await bare.get("/undeclared", headers=key_headers("admin-key"))
    assert resp.status == 403
    body = await resp.json()
    assert_error(body, 403)
    assert "declares no permission" in body["message"]


async def test_no_key_is_a_401_with_its_challenge_before_the_permission_is_looked_at(bare: TestClient) -> None:
    for path in ("/undeclared", "/taken", "/operate"):
        resp = await bare.get(path)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="moorage"'
        assert (await resp.json())["errors"] == [{"field": "X-API-Key", "message": "missing"}]


async def test_a_key_without_the_declared_permission_is_a_403_naming_it(bare: TestClient) -> None:
    resp = await bare.get("/operate", headers=key_headers("viewer-key"))
    assert resp.status == 403
    body = await resp.json()
    assert_error(body, 403)
    assert body["errors"] == [{"field": "permission", "message": "needs containers:lifecycle"}]
    resp = await bare.get("/operate", headers=key_headers("operator-key"))
    assert (resp.status, await resp.json()) == (200, {"done": True})


async def test_an_api_error_is_the_envelope_with_its_status_and_fields(bare: TestClient) -> None:
    resp = await bare.get("/taken", headers=key_headers("viewer-key"))
    assert resp.status == 409
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "code": 409,
        "message": "the name is taken",
        "errors": [{"field": "name", "message": "in use"}],
    }


async def test_an_unknown_exception_is_a_bare_500_that_names_no_internals(bare: TestClient) -> None:
    resp = await bare.get("/boom", headers=key_headers("viewer-key"))
    assert resp.status == 500
    text = await resp.text()
    assert "secret internals" not in text and "RuntimeError" not in text and "Traceback" not in text
    assert await resp.json() == {"code": 500, "message": "internal server error", "errors": []}


@pytest.mark.parametrize("query", ["", "?count=many"])
async def test_a_validation_error_is_a_400_naming_the_field(bare: TestClient, query: str) -> None:
    resp = await bare.get(f"/counted{query}", headers=key_headers("viewer-key"))
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, 400)
    assert [problem["field"] for problem in body["errors"]] == ["count"]
    assert "count" in body["message"]


async def test_an_unknown_path_is_the_routers_404_in_the_envelope_once_authenticated(bare: TestClient) -> None:
    resp = await bare.get("/no-such-thing", headers=key_headers("viewer-key"))
    assert resp.status == 404
    assert_error(await resp.json(), 404)
    assert (await bare.get("/no-such-thing")).status == 401
