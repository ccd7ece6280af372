"""A create body is bounded in what it makes moorage do: every list and map field has a cap, checked before its
items are loaded, and a request the policy already refuses costs no engine call and no walk of the engine's binds.
Without that, one body under the 1 MiB limit (16,000 binds of one path) held the event loop for 21 s."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from moorage.access.keys import hash_key
from moorage.app import create_app
from moorage.config.loader import key_toml
from moorage.settings import ApiKey, Role

from ..fake_engine import FakeEngine, serving
from ..helpers import SERVER_KWARGS, TEST_IMAGE, Daemon, assert_error, make_settings, plain_key

# Generous for a shared two-core machine: measured well under 0.1 s for the refused 10,000-volume create.
FAST = 3.0
HEALTHZ_MAX = 1.0


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, allowed_root: Path) -> TestClient:
    settings = make_settings(tmp_path, {"test-admin": "admin"}, policy={"allowed_host_paths": [str(allowed_root)]})
    return await aiohttp_client(
        create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")}
    )


async def test_ten_thousand_volumes_are_a_fast_400_and_healthz_keeps_answering(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon]
) -> None:
    """Against a `moorage serve` process: a test client in the daemon's own event loop would stall with it and
    not see the stall."""
    key = ApiKey("limits-admin", Role.ADMIN, hash_key(plain_key("limits-admin")))
    daemon = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\n\n{key_toml(key)}')
    bind = {"host_path": "/srv/x", "container_path": "/data"}
    body = json.dumps({"image": TEST_IMAGE, "volumes": [bind] * 10_000}).encode()
    assert len(body) < 1024 * 1024  # within the default max_body_size
    headers = {"X-API-Key": plain_key("limits-admin"), "Content-Type": "application/json"}
    async with aiohttp.ClientSession(daemon.url) as session:
        start = time.monotonic()
        create = asyncio.ensure_future(session.post("/api/v1/containers", data=io.BytesIO(body), headers=headers))
        slowest = 0.0
        while not create.done() and time.monotonic() - start < 60:
            asked = time.monotonic()
            async with session.get("/healthz", timeout=aiohttp.ClientTimeout(total=60)) as health:
                assert health.status == 200
            slowest = max(slowest, time.monotonic() - asked)
            await asyncio.sleep(0.01)
        async with await asyncio.wait_for(create, 60) as resp:
            took = time.monotonic() - start
            answer = await resp.json()
    print(f"the refused 10,000-volume create took {took * 1000:.0f} ms; the slowest /healthz {slowest * 1000:.0f} ms")
    assert_error(answer, 400)
    assert [e["field"] for e in answer["errors"]] == ["volumes"], answer
    assert "at most 128" in answer["errors"][0]["message"]
    assert took < FAST, f"the refused create took {took:.2f} s"
    assert slowest < HEALTHZ_MAX, f"/healthz took {slowest:.2f} s while the create was handled"


def _over(count: int, item: Any) -> list[Any]:
    return [item] * count


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"volumes": _over(129, {"volume": "data", "container_path": "/d"})}, "volumes"),
        ({"ports": {str(port): None for port in range(1, 258)}}, "ports"),
        ({"ports": {"80": _over(17, 8080)}}, "ports.80"),
        ({"environment": {f"V{i}": "x" for i in range(1025)}}, "environment"),
        ({"labels": {f"l{i}": "x" for i in range(1025)}}, "labels"),
        ({"sysctls": {f"net.s{i}": "1" for i in range(65)}}, "sysctls"),
        ({"cap_add": _over(65, "NET_ADMIN")}, "cap_add"),
        ({"devices": _over(65, "/dev/fuse")}, "devices"),
        ({"security_opt": _over(17, "no-new-privileges")}, "security_opt"),
        ({"command": _over(4097, "x")}, "command"),
        ({"command": "x " * 40_000}, "command"),
        ({"entrypoint": _over(4097, "x")}, "entrypoint"),
        ({"healthcheck": {"test": ["CMD", *_over(4096, "x")]}}, "healthcheck.test"),
        ({"healthcheck": {"test": "x" * 70_000}}, "healthcheck.test"),
        ({"healthcheck": {"test": ["CMD-SHELL", "x" * 70_000]}}, "healthcheck.test"),
    ],
)
async def test_each_list_and_map_field_has_a_cap(client: TestClient, extra: dict[str, Any], field: str) -> None:
    resp = await client.post("/api/v1/containers", json={"image": TEST_IMAGE, **extra})
    answer = await resp.json()
    assert_error(answer, 400)
    assert [e["field"] for e in answer["errors"]] == [field], answer
    assert "at most" in answer["errors"][0]["message"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngine]:
    async with serving(FakeEngine()) as engine:
        yield engine


async def test_a_request_the_policy_refuses_asks_the_engine_nothing(
    aiohttp_client: Any, tmp_path: Path, allowed_root: Path, fake: FakeEngine
) -> None:
    """The 403 names what the policy's own check found; the nesting rule and the engine look-ups (which a wedged
    engine would hold up to the timeout) are not reached."""
    settings = make_settings(
        tmp_path,
        {"test-admin": "admin"},
        docker={"url": fake.url, "timeout": 30.0},
        policy={"allowed_host_paths": [str(allowed_root)]},
    )
    client = await aiohttp_client(
        create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")}
    )
    fake.stalled = {"list"}
    volumes = [
        {"host_path": str(allowed_root / "x"), "container_path": "/a"},
        {"host_path": str(allowed_root / "x" / "sub"), "container_path": "/b"},  # nested: not reached
    ]
    body = {"image": TEST_IMAGE, "privileged": True, "volumes": volumes}
    resp = await asyncio.wait_for(client.post("/api/v1/containers", json=body), 10)
    answer = await resp.json()
    assert_error(answer, 403)
    assert [e["field"] for e in answer["errors"]] == ["privileged"], answer
    assert fake.hanging["list"] == 0 and fake.cut["list"] == 0
