"""Pull faults the real engine cannot show on demand, against a fake engine: a stalled pull, a garbled one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from moorage.app import create_app
from moorage.engine.streams import EngineStreams
from moorage.images.pulls import PullHub
from moorage.settings import DockerSettings
from moorage.web.state import PULLS

from ..fake_engine import FakeEngine
from ..helpers import SERVER_KWARGS, make_settings, plain_key

BODY = {"name": "127.0.0.1:5000/fake/app"}


@pytest.fixture
async def fake() -> Any:
    engine = FakeEngine()
    server = TestServer(engine.app(), port=0, handler_cancellation=True)
    await server.start_server()
    engine.url = f"tcp://127.0.0.1:{server.port}"
    yield engine
    engine.release.set()
    await server.close()


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake: FakeEngine) -> TestClient:
    settings = make_settings(tmp_path, {"test-admin": "admin"}, docker={"url": fake.url})
    return await aiohttp_client(
        create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")}
    )


async def cut(fake: FakeEngine, count: int) -> None:
    """Wait (5 s at most) until the fake engine has seen `count` pulls cut off by moorage."""
    for _ in range(50):
        if fake.pulls_cut >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the engine saw {fake.pulls_cut} pulls cut, not {count}")


async def test_progress_lines_arrive_before_the_pull_ends(client: TestClient, fake: FakeEngine) -> None:
    resp = await client.post("/api/v1/images/pull?stream=true", json=BODY)
    first = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
    assert first == {"status": "Pulling fs layer", "id": "layer1", "current": None, "total": None}
    assert fake.pulls_finished == 0  # the engine is still pulling: the line was not held back
    fake.release.set()
    rest = [json.loads(line) async for line in resp.content]
    assert rest[-1]["status"] == "done"


async def test_concurrent_pulls_share_one_engine_pull_and_a_leaver_does_not_cut_it(
    client: TestClient, fake: FakeEngine
) -> None:
    leaving = await client.post("/api/v1/images/pull?stream=true", json=BODY)
    staying = await client.post("/api/v1/images/pull?stream=true", json=BODY)
    await asyncio.wait_for(leaving.content.readline(), 5)
    await asyncio.wait_for(staying.content.readline(), 5)
    assert fake.pulls_started == 1
    leaving.close()
    await asyncio.sleep(0.2)
    assert fake.pulls_cut == 0
    fake.release.set()
    assert [json.loads(line) async for line in staying.content][-1]["status"] == "done"
    assert (fake.pulls_started, fake.pulls_finished) == (1, 1)


async def test_the_last_client_to_leave_cancels_the_pull_and_leaves_no_task(
    client: TestClient, fake: FakeEngine
) -> None:
    resp = await client.post("/api/v1/images/pull?stream=true", json=BODY)
    await asyncio.wait_for(resp.content.readline(), 5)
    resp.close()
    await cut(fake, 1)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("pull ")]


async def test_a_caller_arriving_while_a_pull_is_cancelled_gets_a_pull_of_its_own(fake: FakeEngine) -> None:
    engine = EngineStreams(DockerSettings(url=fake.url), cap=4)
    hub = PullHub(engine)
    leaving = hub.subscribe(BODY["name"], None)
    events = await leaving.__aenter__()
    await anext(events)
    # The newcomer subscribes while the leaver's exit is cancelling the shared pull.
    newcomer = asyncio.create_task(hub.pull(BODY["name"], None))
    await leaving.__aexit__(None, None, None)
    try:
        await cut(fake, 1)
        fake.release.set()
        await asyncio.wait_for(newcomer, 5)
    finally:
        await hub.close()
        await engine.close()
    assert (fake.pulls_started, fake.pulls_cut, fake.pulls_finished) == (2, 1, 1)


async def test_a_garbled_pull_stream_is_an_error_not_a_hang(client: TestClient, fake: FakeEngine) -> None:
    fake.garbage = True
    resp = await asyncio.wait_for(client.post("/api/v1/images/pull", json=BODY), 5)
    assert resp.status == 502
    body = await resp.json()
    assert body["code"] == 502 and "broke" in body["message"]
    streamed = await client.post("/api/v1/images/pull?stream=true", json=BODY)
    lines = [json.loads(line) for line in (await asyncio.wait_for(streamed.text(), 5)).splitlines()]
    assert lines[-1]["status"] == "error" and lines[-1]["code"] == 502
    assert client.app[PULLS].in_flight == 0
