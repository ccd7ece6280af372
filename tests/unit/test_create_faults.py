"""Creates the engine does not answer, against a fake engine (the real one cannot be made to time out a create and
then finish it on demand): a create with binds that times out keeps the bind ledger until the container it made
late is removed, a create waits for the ledger only so long, and a start that fails in any way leaves nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.containers.ownership import CREATE_LABEL

from ..fake_engine import FakeEngine, serving
from ..helpers import SERVER_KWARGS, assert_error, make_settings, plain_key, until

# [docker] timeout, seconds: also how long moorage keeps looking for a create it gave up on, so more than LATE.
# Nothing here is timed against it; each test waits it out two or three times.
TIMEOUT = 0.5
LATE = 0.3  # how long after moorage gave up on it the fake engine makes the container
IMAGE = "127.0.0.1:5000/fake/app"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngine]:
    async with serving(FakeEngine()) as engine:
        yield engine


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, allowed_root: Path, fake: FakeEngine) -> TestClient:
    settings = make_settings(
        tmp_path,
        {"test-admin": "admin"},
        docker={"url": fake.url, "timeout": TIMEOUT},
        policy={"allowed_host_paths": [str(allowed_root)]},
    )
    return await aiohttp_client(
        create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")}
    )


def bind_body(host_path: Path, **extra: Any) -> dict[str, Any]:
    return {"image": IMAGE, "volumes": [{"host_path": str(host_path), "container_path": "/data"}], **extra}


def made_with(fake: FakeEngine, host_path: Path) -> list[str]:
    """Ids of the containers the fake made whose create asked for a bind of `host_path`."""
    return [
        container_id
        for container_id, body in fake.bodies.items()
        if [m["Source"] for m in body["HostConfig"].get("Mounts") or ()] == [str(host_path)]
    ]


def create_id(fake: FakeEngine, container_id: str) -> str:
    return str(fake.bodies[container_id]["Labels"][CREATE_LABEL])


async def test_a_create_that_times_out_keeps_the_ledger_until_its_late_container_is_removed(
    client: TestClient, fake: FakeEngine, allowed_root: Path
) -> None:
    outer, inner = allowed_root / "x", allowed_root / "x" / "sub"
    fake.stalled, fake.create_late = {"create"}, LATE
    first = asyncio.ensure_future(client.post("/api/v1/containers", json=bind_body(outer)))
    await until(lambda: fake.hanging["create"] == 1, "the first create reaches the engine")
    # The nested create waits for the ledger no longer than the engine timeout: 503, try again.
    waited = await client.post("/api/v1/containers", json=bind_body(inner))
    assert_error(await waited.json(), 503)
    assert int(waited.headers["Retry-After"]) > 0
    resp = await asyncio.wait_for(first, TIMEOUT * 10)
    assert_error(await resp.json(), 504)
    # The engine made the first container after moorage gave up on it; moorage removed it before letting go.
    [late] = made_with(fake, outer)
    assert ("deleted", late) in fake.history
    assert create_id(fake, late)
    fake.stalled = set()
    resp = await client.post("/api/v1/containers", json=bind_body(inner))
    assert resp.status == 201, await resp.json()
    [nested] = made_with(fake, inner)
    assert fake.history.index(("deleted", late)) < fake.history.index(("created", nested))
    assert create_id(fake, nested) != create_id(fake, late)


async def test_the_ledger_stays_closed_while_a_timed_out_create_cannot_be_reconciled(
    client: TestClient, fake: FakeEngine, allowed_root: Path
) -> None:
    outer, elsewhere = allowed_root / "x", allowed_root / "elsewhere"
    elsewhere.mkdir()
    fake.stalled, fake.create_late = {"create"}, LATE
    first = asyncio.ensure_future(client.post("/api/v1/containers", json=bind_body(outer)))
    await until(lambda: fake.hanging["create"] == 1, "the first create reaches the engine")
    fake.stalled = {"create", "reconcile"}  # and then moorage cannot look for it: the late container stays
    resp = await asyncio.wait_for(first, TIMEOUT * 10)
    assert_error(await resp.json(), 504)
    await until(lambda: len(made_with(fake, outer)) == 1, "the engine makes the first container late")
    [late] = made_with(fake, outer)
    # Even a create whose binds nest with nothing is not checked while the ledger may be missing a container.
    closed = await client.post("/api/v1/containers", json=bind_body(elsewhere))
    assert_error(await closed.json(), 503)
    assert int(closed.headers["Retry-After"]) > 0
    assert late in fake.made and not made_with(fake, elsewhere)
    # A create without binds does not need the ledger.
    fake.stalled = {"reconcile"}
    resp = await client.post("/api/v1/containers", json={"image": IMAGE})
    assert resp.status == 201, await resp.json()
    # The engine answers again: the next create with binds first removes the late container, then passes.
    fake.stalled = set()
    resp = await client.post("/api/v1/containers", json=bind_body(elsewhere))
    assert resp.status == 201, await resp.json()
    [made] = made_with(fake, elsewhere)
    assert late not in fake.made
    assert fake.history.index(("deleted", late)) < fake.history.index(("created", made))


async def test_a_start_that_times_out_leaves_no_container(
    client: TestClient, fake: FakeEngine, allowed_root: Path
) -> None:
    fake.stalled = {"start"}
    resp = await client.post("/api/v1/containers", json={"image": IMAGE, "start": True})
    assert_error(await resp.json(), 504)
    [(_, made)] = [event for event in fake.history if event[0] == "created"]
    assert ("deleted", made) in fake.history
    assert not fake.made


async def test_a_create_without_binds_that_times_out_leaves_no_container(client: TestClient, fake: FakeEngine) -> None:
    """It needs no ledger, but the container the engine makes after moorage gave up is looked for and removed
    too, so that a retry with the same name is no 409."""
    fake.stalled, fake.create_late = {"create"}, LATE
    resp = await client.post("/api/v1/containers", json={"image": IMAGE, "name": "late-one"})
    assert_error(await resp.json(), 504)
    [(_, late)] = [event for event in fake.history if event[0] == "created"]
    assert ("deleted", late) in fake.history
    assert not fake.made
