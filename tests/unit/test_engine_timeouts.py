"""A wedged engine, which the real one cannot be made to be on demand: every call ends within [docker] timeout
with a 504, calls do not pile up behind it, a client that leaves cancels the engine call, and a quiet stream
is not cut. A slow one: a prune that outlasts the timeout is waited for, and answers what went."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app

from ..fake_engine import CONTAINER_ID, EVENT, FakeEngine, serving
from ..helpers import SERVER_KWARGS, make_settings, plain_key, until

TIMEOUT = 0.5  # [docker] timeout, seconds
# What a busy two-core machine may add to it (under a tenth of a second, seen): four timeouts, as it was with a
# timeout of 1 s, so that a call that waits the timeout out five times, or calls that wait five deep, still fail.
MARGIN = 4 * TIMEOUT

Connect = Callable[[float], Awaitable[TestClient]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngine]:
    async with serving(FakeEngine()) as engine:
        yield engine


@pytest.fixture
def connect(aiohttp_client: Any, tmp_path: Path, fake: FakeEngine) -> Connect:
    """A client of moorage on the fake engine with the given [docker] timeout, sending an admin key."""

    async def make(engine_timeout: float) -> TestClient:
        settings = make_settings(tmp_path, {"test-admin": "admin"}, docker={"url": fake.url, "timeout": engine_timeout})
        return await aiohttp_client(
            create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")}
        )

    return make


async def timed_504(client: TestClient, method: str, path: str, sent: dict[str, str] | None = None) -> float:
    """Send the call, check it is the error envelope's 504, and return how long it took."""
    start = time.monotonic()
    async with client.request(method, path, json=sent) as resp:
        body = await resp.json()
    elapsed = time.monotonic() - start
    assert resp.status == 504, body
    assert body["code"] == 504 and "did not answer in time" in body["message"]
    return elapsed


@pytest.mark.parametrize(
    ("stalled", "method", "path", "body"),
    [
        ("list", "GET", "/api/v1/containers", None),
        ("inspect", "GET", f"/api/v1/containers/{CONTAINER_ID}", None),
        # aiodocker gives a container delete no time limit of its own: moorage's client must.
        ("delete", "DELETE", f"/api/v1/containers/{CONTAINER_ID}", None),
        # A stream's head is bounded even though its body is not.
        ("events", "GET", "/api/v1/events", None),
        ("pull", "POST", "/api/v1/images/pull", {"name": "127.0.0.1:5000/moorage-test/wedged"}),
    ],
)
async def test_a_wedged_engine_is_a_504_within_the_timeout(
    connect: Connect, fake: FakeEngine, stalled: str, method: str, path: str, body: dict[str, str] | None
) -> None:
    client = await connect(TIMEOUT)
    fake.stalled = {stalled}
    elapsed = await timed_504(client, method, path, body)
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + MARGIN
    # moorage hung up: nothing is left waiting on the engine.
    await until(lambda: fake.hanging[stalled] == 0, "the engine call is dropped")


async def test_calls_to_a_wedged_engine_do_not_pile_up(connect: Connect, fake: FakeEngine) -> None:
    client = await connect(TIMEOUT)
    fake.stalled = {"list"}
    start = time.monotonic()
    took = await asyncio.gather(*(timed_504(client, "GET", "/api/v1/containers") for _ in range(20)))
    # Twenty at once end together, not one timeout after another.
    assert max(took) < TIMEOUT + MARGIN
    assert time.monotonic() - start < TIMEOUT + MARGIN
    await until(lambda: fake.cut["list"] == 20 and fake.hanging["list"] == 0, "every engine call is dropped")


async def test_a_client_that_leaves_cancels_its_engine_call(connect: Connect, fake: FakeEngine) -> None:
    client = await connect(60.0)  # far beyond the test: only the client's leaving can end the call
    fake.stalled = {"list"}
    call = asyncio.create_task(client.get("/api/v1/containers"))
    await until(lambda: fake.hanging["list"] == 1, "the call reaches the engine")
    call.cancel()  # closes the client's connection
    with pytest.raises(asyncio.CancelledError):
        await call
    await until(lambda: fake.cut["list"] == 1, "the engine sees its call cancelled")
    assert fake.hanging["list"] == 0


async def test_a_prune_that_outlasts_the_timeout_answers_what_went(connect: Connect, fake: FakeEngine) -> None:
    client = await connect(TIMEOUT)
    created = await client.post("/api/v1/containers", json={"image": "127.0.0.1:5000/fake/app", "name": "slow"})
    assert created.status == 201, await created.text()
    container_id = (await created.json())["data"]["id"]
    fake.prune_seconds = 3 * TIMEOUT  # the engine removes layer after layer, telling nothing until it is done
    async with client.post("/api/v1/containers/prune") as resp:
        body = await resp.json()
    assert resp.status == 200, body
    assert [(c["id"], c["name"]) for c in body["data"]["containers"]] == [(container_id, "slow")]
    assert fake.made == {}


async def test_a_quiet_stream_is_not_cut_by_the_timeout(connect: Connect, fake: FakeEngine) -> None:
    client = await connect(TIMEOUT)
    fake.quiet = 3 * TIMEOUT
    start = time.monotonic()
    async with client.get("/api/v1/events") as resp:
        assert resp.status == 200
        line = await asyncio.wait_for(resp.content.readline(), fake.quiet + MARGIN)
    assert time.monotonic() - start >= fake.quiet
    event = json.loads(line)
    assert (event["action"], event["id"], event["name"]) == (EVENT["Action"], CONTAINER_ID, "quiet")
