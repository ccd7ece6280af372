"""NDJSON streams behind a proxy: heartbeats keep a quiet stream under a proxy's read timeout, and every stream
ends with a line that says why, so that a script can tell a stopped container from a cut connection.

The proxy is Debian's nginx (scripts/setup.sh installs it), run by the test with a config of its own and a
2 s proxy_read_timeout, in front of a real `moorage serve`."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from moorage.access.keys import hash_key
from moorage.app import create_app
from moorage.config.loader import key_toml
from moorage.settings import ApiKey, Role

from ..fake_engine import FakeEngine, serving
from ..helpers import Daemon, MakeContainer, free_port, make_settings, plain_key

READ_TIMEOUT = 2  # nginx's proxy_read_timeout, seconds
QUIET = 6  # how long a quiet follow must survive it, seconds
KEY = ApiKey("proxy-viewer", Role.VIEWER, hash_key(plain_key("proxy-viewer")))
HEADERS = {"X-API-Key": plain_key("proxy-viewer")}

NGINX_CONF = """\
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client-body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout {timeout}s;
        }}
    }}
}}
"""


def listening(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {seconds} s")


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[int], tuple[str, Path]]]:
    """Start nginx in front of a port: its URL and its error log."""
    started: list[subprocess.Popen[bytes]] = []

    def start(upstream: int) -> tuple[str, Path]:
        tmp = tmp_path / f"nginx-{len(started)}"
        tmp.mkdir()
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=upstream, timeout=READ_TIMEOUT))
        errors = tmp / "error.log"
        proc = subprocess.Popen(
            ["nginx", "-e", str(errors), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        listening(port)
        return f"http://127.0.0.1:{port}", errors

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def serve_config(tmp_path: Path, heartbeat: float) -> str:
    return f'[server]\nstate_dir = "{tmp_path}/state"\nheartbeat_seconds = {heartbeat}\n\n{key_toml(KEY)}'


async def lines_for(content: aiohttp.StreamReader, seconds: float) -> AsyncIterator[dict[str, Any]]:
    """The stream's lines for `seconds` at most; stops at its end."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(content.readline(), left)
        except TimeoutError:
            return
        if not line:
            return
        yield json.loads(line)


async def test_a_quiet_follow_outlives_nginx_read_timeout_and_ends_with_the_exit_code(
    tmp_path: Path,
    spawn_daemon: Callable[..., Daemon],
    nginx: Callable[[int], tuple[str, Path]],
    make_container: MakeContainer,
    docker: aiodocker.Docker,
) -> None:
    daemon = spawn_daemon(serve_config(tmp_path, heartbeat=0.5))
    proxy, _ = nginx(daemon.port)
    quiet = await make_container(cmd=["sh", "-c", "echo up; sleep 600"], start=True)
    url = f"{proxy}/api/v1/containers/{quiet['Id']}/logs?follow=true&format=ndjson"
    async with aiohttp.ClientSession(headers=HEADERS) as session, session.get(url) as resp:
        assert resp.status == 200
        started = time.monotonic()
        seen = [line async for line in lines_for(resp.content, QUIET)]
        assert time.monotonic() - started >= QUIET - 0.5  # still open: nginx did not cut it
        assert seen[0]["line"] == "up"
        beats = [line for line in seen if "heartbeat" in line]
        assert len(beats) >= QUIET // READ_TIMEOUT and all(beat["heartbeat"].endswith("Z") for beat in beats)
        assert not any("end" in line for line in seen)
        await docker.containers.container(quiet["Id"]).kill()
        rest = [line async for line in lines_for(resp.content, 20)]
    assert rest and rest[-1] == {"end": "container_stopped", "exit_code": 137}
    assert all("heartbeat" in line for line in rest[:-1])


async def test_without_heartbeats_nginx_cuts_a_quiet_follow(
    tmp_path: Path,
    spawn_daemon: Callable[..., Daemon],
    nginx: Callable[[int], tuple[str, Path]],
    make_container: MakeContainer,
) -> None:
    """The same stream with heartbeats far apart: the proxy cuts it, without an end line; the test above is real."""
    daemon = spawn_daemon(serve_config(tmp_path, heartbeat=3600))
    proxy, errors = nginx(daemon.port)
    quiet = await make_container(cmd=["sh", "-c", "echo up; sleep 600"], start=True)
    url = f"{proxy}/api/v1/containers/{quiet['Id']}/logs?follow=true&format=ndjson"
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers=HEADERS) as session, session.get(url) as resp:
        assert resp.status == 200
        started = time.monotonic()
        with pytest.raises(aiohttp.ClientPayloadError):  # nginx closes without the body's last chunk
            async for line in lines_for(resp.content, QUIET + 10):
                seen.append(line)
        assert time.monotonic() - started < QUIET + 5
    assert [line["line"] for line in seen] == ["up"]  # no heartbeat, and no end line: a cut
    assert "upstream timed out" in errors.read_text()


@pytest.fixture
async def quick(aiohttp_server: Any, tmp_path: Path) -> TestServer:
    settings = make_settings(tmp_path, {"proxy-viewer": "viewer"}, server={"heartbeat_seconds": 0.2})
    return await aiohttp_server(create_app(settings))


async def test_a_followed_log_ends_with_its_container_exit_code(
    quick: TestServer, make_container: MakeContainer
) -> None:
    exits = await make_container(cmd=["sh", "-c", "echo one; sleep 1; exit 3"], start=True)
    url = quick.make_url(f"/api/v1/containers/{exits['Id']}/logs?follow=true&format=ndjson")
    async with aiohttp.ClientSession(headers=HEADERS) as session, session.get(url) as resp:
        seen = [line async for line in lines_for(resp.content, 20)]
    assert seen[0]["line"] == "one" and any("heartbeat" in line for line in seen)
    assert seen[-1] == {"end": "container_stopped", "exit_code": 3}


async def test_sigterm_ends_an_ndjson_follow_with_a_shutdown_line(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon], make_container: MakeContainer
) -> None:
    daemon = spawn_daemon(serve_config(tmp_path, heartbeat=60))
    running = await make_container(cmd=["sh", "-c", "echo up; sleep 600"], start=True)
    url = f"{daemon.url}/api/v1/containers/{running['Id']}/logs?follow=true&format=ndjson"
    async with aiohttp.ClientSession(headers=HEADERS) as session, session.get(url) as resp:
        assert json.loads(await asyncio.wait_for(resp.content.readline(), 10))["line"] == "up"
        daemon.proc.terminate()
        assert [line async for line in lines_for(resp.content, 10)] == [{"end": "shutdown"}]
    assert await asyncio.to_thread(daemon.proc.wait, 10) == 0


async def test_a_quiet_pull_sends_heartbeats_and_keeps_its_last_line(aiohttp_client: Any, tmp_path: Path) -> None:
    """A pull the (fake) engine holds up: heartbeats while it is quiet, then its progress and outcome as before."""
    async with serving(FakeEngine()) as fake:
        settings = make_settings(
            tmp_path, {"proxy-admin": "admin"}, docker={"url": fake.url}, server={"heartbeat_seconds": 0.2}
        )
        client = await aiohttp_client(create_app(settings), headers={"X-API-Key": plain_key("proxy-admin")})
        resp = await client.post("/api/v1/images/pull?stream=true", json={"name": "127.0.0.1:5000/fake/app"})
        first = [line async for line in lines_for(resp.content, 1.5)]
        assert first[0]["status"] == "Pulling fs layer"
        assert len(first) > 2 and all("heartbeat" in line for line in first[1:])
        fake.release.set()
        rest = [line async for line in lines_for(resp.content, 10)]
    assert [line.get("status") for line in rest if "heartbeat" not in line] == ["Pull complete", "done"]
