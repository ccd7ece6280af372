"""An NDJSON stream ends with a line saying why even when making that line fails: its headers are out, and a
failure escaping then would cut the connection mid-body (a client reads a broken stream, not an end)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from moorage.engine.streams import EngineStreams
from moorage.settings import DockerSettings
from moorage.web.compression import gzipped_if_accepted
from moorage.web.responses import NDJSON, SHUTDOWN, UNTOLD, Framed, ndjson_line, serve_stream


async def one_line() -> AsyncIterator[bytes]:
    yield ndjson_line({"line": 1})


async def unexplained(failure: Exception | None) -> dict[str, Any]:
    raise RuntimeError("Session is closed")  # what aiohttp raises for an engine call once moorage's session closed


@pytest.fixture
async def gate() -> AsyncIterator[EngineStreams]:
    streams = EngineStreams(DockerSettings(), 4)
    yield streams
    await streams.close()


async def read_stream(aiohttp_client: Any, gate: EngineStreams) -> list[dict[str, Any]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve_stream(request, gate, NDJSON, one_line(), Framed(unexplained))

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    app = web.Application()
    app.router.add_get("/stream", handler)
    app.router.add_get("/ping", ping)
    # One connection: the second request goes on the one the stream was answered on, so it must be whole.
    client = await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=1))
    async with client.get("/stream") as resp:
        assert resp.status == 200
        lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    async with client.get("/ping") as resp:
        assert (resp.status, await resp.text()) == (200, "pong")
    return lines


async def test_an_end_line_that_cannot_be_made_is_logged_and_the_stream_still_ends_with_one(
    aiohttp_client: Any, gate: EngineStreams, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "moorage.web.responses"):
        assert await read_stream(aiohttp_client, gate) == [{"line": 1}, UNTOLD]
    [record] = [r for r in caplog.records if r.name == "moorage.web.responses"]
    assert "why it ended could not be told" in record.getMessage() and record.exc_info is not None


async def test_at_shutdown_such_a_stream_ends_with_the_shutdown_line(aiohttp_client: Any, gate: EngineStreams) -> None:
    await gate.end_all()  # moorage is stopping (no stream is open to be ended)
    assert await read_stream(aiohttp_client, gate) == [{"line": 1}, SHUTDOWN]


async def test_a_download_that_fails_short_of_its_length_is_cut(aiohttp_client: Any, gate: EngineStreams) -> None:
    """A client must not take the first half of a file for the file: the connection is closed mid-body."""

    async def half() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise ValueError("the engine's tar ended in the middle of the file")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve_stream(request, gate, "application/octet-stream", half(), headers={"Content-Length": "200"})

    app = web.Application()
    app.router.add_get("/file", handler)
    client = await aiohttp_client(app)
    async with client.get("/file") as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == "200"
        # Not cut, the client would wait for the rest until its timeout: this bound only keeps the test from hanging.
        async with asyncio.timeout(10):
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
async def test_a_chunked_download_that_fails_is_cut_not_ended(
    aiohttp_client: Any, gate: EngineStreams, gzip: bool
) -> None:
    """A log download has no length to fall short of: ending its chunked body cleanly would pass half a log off
    as the whole, gzipped or not."""

    async def half() -> AsyncIterator[bytes]:
        yield b"line\n" * 1000
        raise ValueError("the engine closed the log stream")

    async def handler(request: web.Request) -> web.StreamResponse:
        body, headers = gzipped_if_accepted(request, half(), {"Content-Disposition": "attachment"})
        return await serve_stream(request, gate, "text/plain", body, headers=headers, whole=True)

    app = web.Application()
    app.router.add_get("/file", handler)
    client = await aiohttp_client(app)
    async with client.get("/file", headers={"Accept-Encoding": "gzip" if gzip else "identity"}) as resp:
        assert resp.status == 200 and "Content-Length" not in resp.headers
        assert resp.headers.get("Content-Encoding") == ("gzip" if gzip else None)
        async with asyncio.timeout(10):
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
