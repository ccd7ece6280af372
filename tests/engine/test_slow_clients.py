"""Slow and oversized clients against a real `moorage serve`: a slowloris, a slow body, an oversized header
and an idle keep-alive connection are each cut off in time, while other clients go on being served."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from moorage.access.keys import hash_key
from moorage.config.loader import key_toml
from moorage.settings import ApiKey, Role

from ..helpers import Daemon, plain_key

KEEPALIVE = 2.0  # [server] keepalive_timeout: also the time a request head has to arrive
BODY = 2.0  # [server] body_timeout
MARGIN = 3.0  # what a busy two-core machine may add to a deadline
SLOW_CLIENTS = 50
HEAD = b"GET /healthz HTTP/1.1\r\nHost: moorage\r\n"


@pytest.fixture
def daemon(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> Daemon:
    key = ApiKey("slow-admin", Role.ADMIN, hash_key(plain_key("slow-admin")))
    return spawn_daemon(
        f'[server]\nstate_dir = "{tmp_path}/state"\nkeepalive_timeout = {KEEPALIVE}\nbody_timeout = {BODY}\n'
        f"max_field_size = 2048\nmax_headers = 32\n\n{key_toml(key)}"
    )


@pytest.fixture
async def session(daemon: Daemon) -> aiohttp.ClientSession:
    async with aiohttp.ClientSession(daemon.url, headers={"X-API-Key": plain_key("slow-admin")}) as client:
        yield client


async def trickle(port: int, lines: int) -> tuple[float, bytes]:
    """Send a request head a header line a second and never finish it; how long until the server hung up,
    and what it sent. Stops after `lines` lines: not hung up by then is a failure for the caller to see."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    hung_up = asyncio.ensure_future(reader.read())
    try:
        writer.write(HEAD)
        for i in range(lines):
            done, _ = await asyncio.wait({hung_up}, timeout=1)
            if done:
                break
            writer.write(b"X-Slow-%d: still coming\r\n" % i)
        answer = await asyncio.wait_for(hung_up, 1)
        return time.monotonic() - start, answer
    except TimeoutError:
        return float("inf"), b""
    finally:
        hung_up.cancel()
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if line)
    body = await reader.readexactly(int(headers["Content-Length"]))
    return int(head[0].split()[1]), headers, body


async def test_a_slowloris_is_cut_off_while_other_clients_are_served(
    daemon: Daemon, session: aiohttp.ClientSession
) -> None:
    statuses: list[int] = []

    async def legitimate(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for path in ("/healthz", "/api/v1/containers?limit=1"):
                async with session.get(path) as resp:
                    statuses.append(resp.status)
            await asyncio.sleep(0.2)

    stop = asyncio.Event()
    served = asyncio.create_task(legitimate(stop))
    try:
        slow = await asyncio.gather(*(trickle(daemon.port, lines=12) for _ in range(SLOW_CLIENTS)))
    finally:
        stop.set()
        await served
    # Every slow head is closed unanswered once the keep-alive timeout has run, a line a second notwithstanding.
    assert all(answer == b"" for _, answer in slow)
    assert max(elapsed for elapsed, _ in slow) <= KEEPALIVE + MARGIN, sorted(elapsed for elapsed, _ in slow)
    assert min(elapsed for elapsed, _ in slow) >= KEEPALIVE * 0.9
    # Meanwhile, and throughout, everyone else was served.
    assert len(statuses) >= 4 and set(statuses) == {200}, statuses


async def test_a_slow_body_is_a_408_within_the_body_timeout(daemon: Daemon) -> None:
    body = json.dumps({"role": "viewer"}).encode().ljust(100)
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(
        b"POST /api/v1/auth/tokens HTTP/1.1\r\nHost: moorage\r\nContent-Type: application/json\r\n"
        b"X-API-Key: %s\r\nContent-Length: %d\r\n\r\n" % (plain_key("slow-admin").encode(), len(body))
    )
    start = time.monotonic()
    answered = asyncio.ensure_future(read_response(reader))
    try:
        for offset in range(0, len(body), 10):
            done, _ = await asyncio.wait({answered}, timeout=1)
            if done:
                break
            writer.write(body[offset : offset + 10])
        status, headers, raw = await asyncio.wait_for(answered, 1)
        took = time.monotonic() - start
        # And the connection is closed soon after (aiohttp lingers 2 s for the rest), not held while the rest
        # of the body trickles in.
        assert await asyncio.wait_for(reader.read(), 2 + MARGIN) == b""
    finally:
        answered.cancel()
        writer.close()
    assert BODY * 0.9 <= took <= BODY + MARGIN
    assert status == 408 and headers["Content-Type"].startswith("application/json")
    assert json.loads(raw) == {
        "code": 408,
        "message": f"the request body did not arrive within {BODY:g} s",
        "errors": [{"field": "body", "message": "not received in time"}],
    }


@pytest.mark.parametrize(
    "headers",
    [
        # A key with padding: aiohttp's own error quotes the first 100 bytes of an oversized header.
        {"X-API-Key": plain_key("slow-admin") + "x" * 4096},
        {f"X-Many-{i}": "y" for i in range(40)},
    ],
    ids=["oversized", "too-many"],
)
async def test_an_oversized_head_is_a_400_and_its_content_is_not_logged(
    daemon: Daemon, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    async with aiohttp.ClientSession(daemon.url) as bare, bare.get("/healthz", headers=headers) as resp:
        assert resp.status == 400
        assert resp.headers["Server"] == "moorage"  # no versions, even where aiohttp answers by itself
    async with session.get("/healthz", headers={"X-Fine": "y" * 1000}) as resp:
        assert resp.status == 200
    daemon.stop()
    log = daemon.output()
    assert "WARNING aiohttp.server: Error handling request from 127.0.0.1:" in log
    assert plain_key("slow-admin") not in log and "Traceback" not in log


async def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(daemon: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    try:
        writer.write(HEAD + b"\r\n")
        status, headers, _ = await asyncio.wait_for(read_response(reader), 5)
        idle_since = time.monotonic()
        assert status == 200 and headers.get("Connection") != "close"
        assert await asyncio.wait_for(reader.read(), KEEPALIVE + MARGIN) == b""
        assert time.monotonic() - idle_since >= KEEPALIVE * 0.9
    finally:
        writer.close()
