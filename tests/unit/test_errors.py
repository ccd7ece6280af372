"""One error format for every failure: router 404/405, validation, engine errors, unexpected exceptions."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from moorage.app import create_app
from moorage.errors import Unauthorized
from moorage.settings import Permission, Settings
from moorage.web.roles import requires

from ..helpers import assert_error


async def test_unknown_route_is_a_404_in_the_error_format(client: Any) -> None:
    resp = await client.get("/api/v1/no-such-thing")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert_error(await resp.json(), 404)


async def test_wrong_method_is_a_405_with_allow(client: Any) -> None:
    resp = await client.put("/api/v1/containers")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert_error(await resp.json(), 405)


async def test_an_unexpected_exception_is_a_bare_500_and_the_traceback_is_logged(
    aiohttp_client: Any, settings: Settings, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    @requires(Permission.CONTAINERS_READ)
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals at /opt/x")

    app.router.add_get("/api/v1/boom", boom)
    client = await aiohttp_client(app, headers={"X-API-Key": api_key})
    with caplog.at_level(logging.ERROR):
        resp = await client.get("/api/v1/boom")
    assert resp.status == 500
    text = await resp.text()
    assert "secret internals" not in text and "Traceback" not in text
    assert await resp.json() == {"code": 500, "message": "internal server error", "errors": []}
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


async def test_responses_do_not_name_server_versions(client: Any) -> None:
    resp = await client.get("/healthz")
    assert resp.headers["Server"] == "moorage"


def test_an_unauthorized_keeps_the_headers_it_is_given_beside_its_challenge() -> None:
    err = Unauthorized("slow down", headers={"Retry-After": "3"})
    assert err.headers == {"WWW-Authenticate": 'Bearer realm="moorage"', "Retry-After": "3"}


def test_an_audit_line_after_close_is_refused_under_python_o_too(tmp_path: Path) -> None:
    """With assertions off (`python -O`), a write to a closed audit log still answers False, and raises nothing."""
    script = (
        "import sys; from pathlib import Path; from moorage.access.audit import AuditLog\n"
        "audit = AuditLog(Path(sys.argv[1])); audit.open(); audit.close()\n"
        "print(audit.write(key='k', client='127.0.0.1', method='POST', path='/', result=200))\n"
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", script, str(tmp_path / "audit.log")], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr
