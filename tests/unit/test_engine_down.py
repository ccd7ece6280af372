"""A stopped engine: moorage still starts and says so with 503s, never a hang or a 500."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from moorage.app import create_app

from ..helpers import TEST_IMAGE, Daemon, assert_error, concrete_routes, get_json, make_settings, plain_key

# Routes that never need the engine: the host's metrics, the containers' history (for an unscoped caller), the
# alerts, the tokens, the audit, the policy and the OpenAPI document.
ENGINE_FREE = {
    "/api/v1/alerts",
    "/api/v1/alerts/deliveries",
    "/api/v1/alerts/x1/test",
    "/api/v1/openapi.json",
    "/api/v1/metrics/resources",
    "/api/v1/metrics/resources/history",
    "/api/v1/metrics/containers/history",
    "/api/v1/auth/tokens",
    "/api/v1/auth/tokens/x1",
    "/api/v1/auth/whoami",
    "/api/v1/audit",
    "/api/v1/policy",
}
# A body that passes validation, for each route that takes one, so that the engine is the next step.
VALID_BODIES = {
    ("POST", "/api/v1/containers"): {"image": TEST_IMAGE},
    ("POST", "/api/v1/images/pull"): {"name": TEST_IMAGE.rsplit(":", 1)[0]},
    ("POST", "/api/v1/containers/x1/rename"): {"name": "x2"},
    ("POST", "/api/v1/containers/x1/recreate"): {"pull": "never"},
    ("POST", "/api/v1/containers/x1/exec"): {"command": ["true"]},
    ("PATCH", "/api/v1/containers/x1"): {"pids_limit": 10},
    ("POST", "/api/v1/volumes"): {"name": "x1"},
    ("POST", "/api/v1/networks"): {"name": "x1"},
    ("POST", "/api/v1/networks/x1/connect"): {"container": "x1"},
    ("POST", "/api/v1/networks/x1/disconnect"): {"container": "x1"},
}
# A valid query, and a body that is not JSON, for the routes that take them.
VALID_RAW = {
    ("GET", "/api/v1/containers/x1/files"): {"params": {"path": "/etc/hostname"}},
    ("PUT", "/api/v1/containers/x1/files"): {
        "params": {"path": "/tmp", "name": "f"},
        "data": b"x",
        "headers": {"Content-Type": "application/octet-stream"},
    },
    ("GET", "/api/v1/containers/x1/exec/ws"): {"params": {"command": "sh"}},
    ("GET", "/api/v1/logs"): {"params": {"container": "x1"}},
}


@pytest.fixture(params=["no-socket", "refusing-socket"])
def dead_engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An engine URL where nothing answers: no socket file at all, or a socket nobody accepts on."""
    path = tmp_path / "docker.sock"
    if request.param == "no-socket":
        yield f"unix://{path}"
        return
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening: connect() is refused, as after dockerd died
        yield f"unix://{path}"


async def test_app_answers_503_when_the_engine_is_down(
    aiohttp_client: Any, tmp_path: Path, dead_engine_url: str
) -> None:
    settings = make_settings(tmp_path, {"test-admin": "admin"}, docker={"url": dead_engine_url})
    client = await aiohttp_client(create_app(settings), headers={"X-API-Key": plain_key("test-admin")})
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert_error(await ready.json(), 503)
    for path in ("/api/v1/containers", "/api/v1/containers/abc"):
        started = time.monotonic()
        resp = await client.get(path)
        assert resp.status == 503, path
        assert_error(await resp.json(), 503)
        assert time.monotonic() - started < 2


async def test_serve_starts_against_a_stopped_engine(
    tmp_path: Path, dead_engine_url: str, spawn_daemon: Callable[..., Daemon]
) -> None:
    config = f'[server]\nstate_dir = "{tmp_path}/state"\n[docker]\nurl = "{dead_engine_url}"\n'
    daemon = spawn_daemon(config)
    key = daemon.generated_key()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        status, body = await get_json(session, f"{daemon.url}/healthz")
        assert status == 200 and body["data"]["status"] == "up"
        status, body = await get_json(session, f"{daemon.url}/api/v1/containers", headers={"X-API-Key": key})
        assert status == 503
        assert_error(body, 503)
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.output()


async def test_every_api_route_answers_503_not_500_when_the_engine_is_down(aiohttp_client: Any, tmp_path: Path) -> None:
    secret = tmp_path / "hook.secret"
    secret.write_text("s" * 32)
    hook = {"name": "x1", "container": "web", "secret_file": str(secret)}
    settings = make_settings(
        tmp_path, {"test-admin": "admin"}, docker={"url": f"unix://{tmp_path}/absent.sock"}, hooks=[hook]
    )
    client = await aiohttp_client(create_app(settings), headers={"X-API-Key": plain_key("test-admin")})
    await asyncio.sleep(0.2)  # the host sampler's first round
    # A hook's call is signed, not keyed: signed right, it reaches the engine.
    signature = "sha256=" + hmac.new(b"s" * 32, b"", hashlib.sha256).hexdigest()
    for method, path, _ in concrete_routes(client.app):
        if path in ENGINE_FREE:
            assert (await client.request(method, path)).status < 500, path
        elif path.startswith("/api/v1/"):
            headers = {"X-Hub-Signature-256": signature} if path.startswith("/api/v1/hooks/") else None
            raw = VALID_RAW.get((method, path), {})
            headers = {**(headers or {}), **raw.get("headers", {})}
            resp = await client.request(
                method, path, json=VALID_BODIES.get((method, path)), headers=headers, params=raw.get("params"),
                data=raw.get("data"),
            )  # fmt: skip
            assert resp.status == 503, f"{method} {path}: {await resp.text()}"
            assert_error(await resp.json(), 503)
