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
from moorage.keys import STREAMS

from .conftest import make_settings, plain_key
from .test_auth import assert_error

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
