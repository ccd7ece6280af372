"""HEAD on every GET route, over a raw keep-alive connection: the answer has no body, so the connection's next
answer is its own. A streamed route that wrote its body after a HEAD answer's headers would let a container
that prints an HTTP response forge what the client reads next."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from moorage.app import create_app
from moorage.web.responses import stream_response
from moorage.web.state import STREAMS

from ..helpers import TEST_LABEL, MakeContainer, docker_cli, make_settings, plain_key

FORGED = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge"
# The forms of a route beside its bare one, and the media type each answers: HEAD of each must have no body.
TEXT, NDJSON, JSON = "text/plain", "application/x-ndjson", "application/json"
QUERIES = {
    "/api/v1/containers/{container_id}/logs": {
        "": JSON,
        "?format=text": TEXT,
        "?format=ndjson": NDJSON,
        "?follow=true": TEXT,
        "?follow=true&format=ndjson": NDJSON,
        "?format=text&timestamps=true": TEXT,
    },
    "/api/v1/logs": {
        f"?label={TEST_LABEL}=head": NDJSON,
        f"?label={TEST_LABEL}=head&format=text": TEXT,
        f"?label={TEST_LABEL}=head&follow=true&format=sse": "text/event-stream",
        f"?label={TEST_LABEL}=head&download=zip": "application/zip",
    },
    "/api/v1/events": {"": NDJSON, "?since=10m&until={now}": NDJSON, "?type=container": NDJSON},
    "/api/v1/containers/{container_id}/files": {
        "?path=/etc/hostname": "application/octet-stream",
        "?path=/etc": "application/x-tar",
    },
    "/api/v1/system/df": {"": JSON, "?verbose=true": JSON},
    "/api/v1/policy": {"": JSON},
    "/api/v1/audit": {"": JSON, "?status=4xx&since=10m": JSON},
    # A WebSocket: HEAD checks the query and the container, and opens no session.
    "/api/v1/containers/{container_id}/exec/ws": {"?command=sh": None},
}
READ = 10  # seconds allowed for an answer's head: generous on a busy machine


@pytest.fixture
async def server(aiohttp_server: Any, tmp_path: Path) -> TestServer:
    settings = make_settings(tmp_path, {"head-admin": "admin"}, server={"max_streams": 2})
    return await aiohttp_server(create_app(settings))  # TestServer cancels handlers of clients that left


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    assert re.fullmatch(r"HTTP/1\.1 \d{3} .*", status_line), status_line
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer with a Content-Length body, as /healthz gives."""
    status, headers = await read_head(reader)
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), READ)
    return status, headers, body


def request(method: str, target: str) -> bytes:
    key = plain_key("head-admin")
    return f"{method} {target} HTTP/1.1\r\nHost: moorage\r\nX-API-Key: {key}\r\n\r\n".encode()


async def head_then_healthz(port: int, target: str) -> tuple[int, dict[str, str], tuple[int, dict[str, str], bytes]]:
    """HEAD of `target`, then GET /healthz, on one keep-alive connection: both answers as read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request("HEAD", target))
        status, headers = await read_head(reader)
        # Whatever the server writes after the HEAD answer would be read as the next answer: give it time to.
        await asyncio.sleep(0.3)
        writer.write(request("GET", "/healthz"))
        return status, headers, await read_answer(reader)
    finally:
        writer.close()


def targets(app: web.Application, values: dict[str, str]) -> dict[str, str | None]:
    """Every GET route of the app, its path variables filled in, in its bare and its streamed forms; the
    media type of each stream."""
    found: dict[str, str | None] = {}
    for route in app.router.routes():
        if route.method != "GET" or route.resource is None:
            continue
        pattern = route.resource.canonical
        names = re.findall(r"\{([^}:]+)", pattern)
        missing = set(names) - set(values)
        assert not missing, f"{pattern}: give the test a value for {missing}"
        path = route.resource.url_for(**{name: values[name] for name in names}).path if names else pattern
        now = f"{time.time():.3f}"
        for query, media_type in QUERIES.get(pattern, {"": None}).items():
            found[path + query.format(now=now)] = media_type
    return found


async def test_head_of_every_get_route_leaves_the_connection_to_its_next_answer(
    server: TestServer, make_container: MakeContainer
) -> None:
    printer = await make_container(cmd=["sh", "-c", f"printf '{FORGED}\\n'; sleep 600"], start=True)
    await asyncio.sleep(0.5)  # the engine has the log line
    volume = docker_cli(
        "volume", "create", "--label", f"{TEST_LABEL}=head", f"moorage-test-head-{uuid.uuid4().hex[:8]}"
    )
    try:
        walked = targets(server.app, {"container_id": printer["Id"], "name": volume, "network_id": "bridge"})
        await walk(server, walked)
    finally:
        docker_cli("volume", "rm", volume)


async def walk(server: TestServer, walked: dict[str, str | None]) -> None:
    """A HEAD of each, then a GET of /healthz on the same connection: the HEAD left nothing in it."""
    assert any("follow=true" in target for target in walked) and any("/events" in target for target in walked)
    for target, media_type in walked.items():
        status, headers, (next_status, _, body) = await head_then_healthz(server.port, target)
        assert status == 200, target
        assert "transfer-encoding" not in headers, target
        assert next_status == 200 and b'"data":{"status":"up"}' in body, (target, body)
        if media_type:
            assert headers["content-type"].startswith(media_type), target
    assert server.app[STREAMS].in_use == 0


async def test_head_holds_no_slot_and_is_still_validated(server: TestServer, make_container: MakeContainer) -> None:
    running = await make_container(cmd=["sh", "-c", "echo up; sleep 600"], start=True)
    follow = f"/api/v1/containers/{running['Id']}/logs?follow=true"
    # Both stream slots held by open GETs: a HEAD still answers, as it opens nothing.
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
    try:
        for reader, writer in held:
            writer.write(request("GET", follow))
            assert (await read_head(reader))[0] == 200
        assert (await head_then_healthz(server.port, follow))[0] == 200
        assert (await head_then_healthz(server.port, "/api/v1/events"))[0] == 200
        assert server.app[STREAMS].in_use == 2
    finally:
        for _, writer in held:
            writer.close()
    missing = await head_then_healthz(server.port, "/api/v1/containers/no-such-container-x/logs?follow=true")
    assert missing[0] == 404 and missing[2][0] == 200
    bad = await head_then_healthz(server.port, f"/api/v1/containers/{running['Id']}/logs?tail=some")
    assert bad[0] == 400 and bad[2][0] == 200
    assert (await head_then_healthz(server.port, "/api/v1/events?since=soon"))[0] == 400


async def test_a_stream_response_writes_no_body_to_head_whatever_its_handler_writes(aiohttp_server: Any) -> None:
    """The net behind the gate: a handler that streams without asking the gate still sends HEAD no body."""

    async def careless(request: web.Request) -> web.StreamResponse:
        response = stream_response("text/plain")
        await response.prepare(request)
        await response.write(FORGED.encode())
        await response.write_eof(b"\r\n")
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"data":{"status":"up"}}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/careless", careless)
    app.router.add_get("/healthz", healthz)
    server = await aiohttp_server(app)
    status, _, (next_status, _, body) = await head_then_healthz(server.port, "/careless")
    assert (status, next_status, body) == (200, 200, b'{"data":{"status":"up"}}')
