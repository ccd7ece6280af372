"""Stream slots are shared fairly: a key that is not admin holds at most [server] max_streams_per_key of them
(its tokens count as the key), and the last [server] admin_reserved_streams of max_streams are for admin keys,
so one viewer's script can neither starve the other viewers nor lock out the admin."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from moorage.app import create_app
from moorage.engine.streams import EngineStreams
from moorage.errors import TooManyRequests
from moorage.settings import ApiKey, DockerSettings, Permission, Role
from moorage.web.state import STREAMS

from ..helpers import assert_error, make_settings, plain_key

KEYS = {"quota-viewer": "viewer", "quota-other": "viewer", "quota-third": "viewer", "quota-admin": "admin"}
EVENTS = "/api/v1/events?type=container"  # an endless stream that needs no container


@pytest.fixture
async def server(aiohttp_server: Any, tmp_path: Path) -> TestServer:
    """Six slots: two per key that is not admin, the last two for admins (so four for the others)."""
    server = {"max_streams": 6, "max_streams_per_key": 2, "admin_reserved_streams": 2}
    return await aiohttp_server(create_app(make_settings(tmp_path, KEYS, server=server)))


@pytest.fixture
async def session() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as client:
        yield client


async def open_stream(
    session: aiohttp.ClientSession, server: TestServer, name: str, token: str | None = None
) -> aiohttp.ClientResponse:
    credential = {"Authorization": f"Bearer {token}"} if token else {"X-API-Key": plain_key(name)}
    return await session.get(server.make_url(EVENTS), headers=credential)


async def refused(resp: aiohttp.ClientResponse, limit: str) -> None:
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0
    body = await resp.json()
    assert_error(body, 429)
    assert limit in body["message"], body["message"]


async def test_one_viewer_at_its_quota_leaves_room_for_other_viewers_and_the_admin(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    opened: list[aiohttp.ClientResponse] = []
    try:
        for _ in range(2):
            opened.append(await open_stream(session, server, "quota-viewer"))
        assert [resp.status for resp in opened] == [200, 200]
        await refused(await open_stream(session, server, "quota-viewer"), "max_streams_per_key")
        # The key's token is the key: it gets no more streams than the key.
        async with session.post(
            server.make_url("/api/v1/auth/tokens"), json={}, headers={"X-API-Key": plain_key("quota-viewer")}
        ) as issued:
            token = (await issued.json())["data"]["token"]
        await refused(await open_stream(session, server, "quota-viewer", token), "max_streams_per_key")
        # Another viewer still streams, up to what is left outside the admins' reserve.
        for _ in range(2):
            opened.append(await open_stream(session, server, "quota-other"))
        assert [resp.status for resp in opened] == [200] * 4
        await refused(await open_stream(session, server, "quota-third"), "admin_reserved_streams")
        # The admin still gets the reserved slots, and then the cap is everyone's.
        for _ in range(2):
            opened.append(await open_stream(session, server, "quota-admin"))
        assert [resp.status for resp in opened] == [200] * 6
        await refused(await open_stream(session, server, "quota-admin"), "max_streams")
        # A slot is the key's again once its stream ends (and the admins' streams are out of the way).
        for resp in (opened.pop(0), opened.pop(), opened.pop()):
            resp.close()
        for _ in range(100):
            if server.app[STREAMS].in_use == 3:
                break
            await asyncio.sleep(0.1)
        again = await open_stream(session, server, "quota-viewer")
        opened.append(again)
        assert again.status == 200
    finally:
        for resp in opened:
            resp.close()


async def test_a_caller_without_a_key_is_held_to_the_reserve_and_the_quota_like_a_viewer() -> None:
    """No stream route is open to callers without a key; should one be, they get none of the admins' room."""
    # Five slots, the last two for admins: three for the others, two of them for one key where there is a quota.
    for per_key, open_, limit in ((None, 3, "admin_reserved_streams"), (2, 2, "max_streams_per_key")):
        gate = EngineStreams(DockerSettings(), 5, per_key=per_key, admin_reserved=2)
        done = asyncio.Event()

        async def stream() -> None:
            with gate.slot(None):  # noqa: B023 (each round's gate and event, awaited in the round)
                await done.wait()  # noqa: B023

        held = [asyncio.create_task(stream()) for _ in range(open_)]
        try:
            await asyncio.sleep(0)
            assert gate.in_use == open_
            with pytest.raises(TooManyRequests, match=limit):
                await stream()
        finally:
            done.set()
            await asyncio.gather(*held)
            await gate.close()


async def test_an_admin_key_narrowed_is_held_to_the_reserve_like_any_other() -> None:
    """The reserve is for whoever may do everything: an admin key narrowed to a script's permissions (or an admin's
    token narrowed so) streams as its permissions, not its role, say."""
    gate = EngineStreams(DockerSettings(), 3, admin_reserved=2)
    admin = ApiKey("root", Role.ADMIN, "0" * 64)
    narrowed = ApiKey("root-events", Role.ADMIN, "1" * 64, permissions=frozenset({Permission.EVENTS_READ}))
    done = asyncio.Event()

    async def stream(key: ApiKey) -> None:
        with gate.slot(key):
            await done.wait()

    held = [asyncio.create_task(stream(narrowed))]
    try:
        await asyncio.sleep(0)
        with pytest.raises(TooManyRequests, match="admin_reserved_streams"):
            await asyncio.wait_for(stream(narrowed), 5)  # given a slot, it would wait for `done`: fail, not hang
        held += [asyncio.create_task(stream(admin)) for _ in range(2)]
        await asyncio.sleep(0)
        assert gate.in_use == 3 and not any(task.done() for task in held)
    finally:
        done.set()
        await asyncio.gather(*held)
        await gate.close()


async def test_a_gate_without_a_cap_refuses_no_stream() -> None:
    """moorage's own followers (a stats stream per running container) take a pool without a cap: none of its
    streams is refused, however many (as a cap of 0 meant an unbounded pool, it used to refuse every one)."""
    gate = EngineStreams(DockerSettings())
    done = asyncio.Event()

    async def stream() -> None:
        with gate.slot(None):
            await done.wait()

    held = [asyncio.create_task(stream()) for _ in range(300)]
    try:
        await asyncio.sleep(0)
        assert gate.in_use == 300 and not any(task.done() for task in held)
    finally:
        done.set()
        await asyncio.gather(*held)
        await gate.close()
