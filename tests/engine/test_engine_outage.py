"""The engine stops under a running moorage and comes back: 503s meanwhile, recovery without a restart.

The test runs its own dockerd (own socket, data root and exec root, in a network namespace of its own), so
stopping it disturbs neither the shared engine nor the other tests.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from moorage.access.keys import hash_key

from ..helpers import TEST_IMAGE, TEST_LABEL, Daemon, get_json, plain_key


class PrivateEngine:
    """A dockerd of the test's own, which it can stop and start again at will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = [
            # Its own network namespace: a dockerd without a bridge deletes the host's docker0 at start.
            "unshare",
            "--net",
            "dockerd",
            f"--host=unix://{self.socket}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'docker.pid'}",
            "--bridge=none",
            "--iptables=false",
        ]
        with (self.root / "dockerd.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True
            )
        async with self.client() as session:
            for _ in range(300):
                try:
                    async with session.get("http://engine/_ping") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"private dockerd did not answer: {(self.root / 'dockerd.log').read_text()[-2000:]}")

    async def stop(self) -> None:
        """SIGTERM, as systemctl stop docker sends it; returns once the process is gone."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 60)

    def client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(self.socket)))

    async def call(self, method: str, path: str, **kwargs: Any) -> bytes:
        async with self.client() as session, session.request(method, f"http://engine{path}", **kwargs) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.read()


@pytest.fixture
async def engine2() -> AsyncIterator[PrivateEngine]:
    # Short: unix socket paths (containerd's under the exec root) are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="mrg-engine-"))
    engine = PrivateEngine(root)
    await engine.start()
    try:
        # From the shared engine: the registry on 127.0.0.1 is out of reach from the engine's namespace.
        shared = aiohttp.ClientSession(connector=aiohttp.UnixConnector("/var/run/docker.sock"))
        async with shared, shared.get(f"http://engine/images/{TEST_IMAGE}/get") as resp:
            assert resp.status == 200
            image = await resp.read()
        await engine.call("POST", "/images/load", data=io.BytesIO(image), headers={"Content-Type": "application/x-tar"})
        yield engine
    finally:
        if engine.proc is not None and engine.proc.returncode is None:
            await engine.stop()
        shutil.rmtree(root, ignore_errors=True)


def config_for(tmp_path: Path, engine: PrivateEngine) -> str:
    return (
        f'[server]\nstate_dir = "{tmp_path}/state"\n'
        f'[docker]\nurl = "unix://{engine.socket}"\ntimeout = 5\n'
        f'[[auth.api_keys]]\nname = "outage"\nrole = "admin"\nsha256 = "{hash_key(plain_key("outage"))}"\n'
    )


async def ticking_container(engine: PrivateEngine) -> str:
    created = json.loads(
        await engine.call(
            "POST",
            "/containers/create",
            json={
                "Image": TEST_IMAGE,
                "Cmd": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
                "Labels": {TEST_LABEL: "outage"},
                "StopTimeout": 1,
                "HostConfig": {"NetworkMode": "none"},
            },
        )
    )
    await engine.call("POST", f"/containers/{created['Id']}/start")
    return str(created["Id"])


async def timed(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    status, body = await get_json(session, url)
    return status, body, time.monotonic() - started


async def test_engine_stop_answers_503_and_its_return_needs_no_restart(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon], engine2: PrivateEngine
) -> None:
    daemon = spawn_daemon(config_for(tmp_path, engine2))
    api = f"{daemon.url}/api/v1"
    container_id = await ticking_container(engine2)
    async with aiohttp.ClientSession(headers={"X-API-Key": plain_key("outage")}) as session:
        status, body = await get_json(session, f"{api}/containers")
        assert status == 200 and body["data"]["total"] == 1
        async with (
            session.get(f"{api}/containers/{container_id}/logs?follow=true&tail=0") as stream,
            session.get(f"{api}/events?type=container") as events,
        ):
            assert await asyncio.wait_for(stream.content.readline(), 10) == b"tick\n"
            await engine2.stop()
            # The open streams end, properly: their bodies are complete, not cut connections.
            rest = await asyncio.wait_for(stream.content.read(), 10)
            assert rest.endswith(b"tick\n") or rest == b""
            *seen, end = [json.loads(line) for line in (await asyncio.wait_for(events.content.read(), 10)).splitlines()]
            # The engine stopped the container on its way down, and the event stream said so before it ended.
            assert {"id": container_id, "action": "die"} in [{"id": e["id"], "action": e["action"]} for e in seen]
            assert end["end"] == "engine_gone" and end["message"], end  # the last line says why the stream ended

        for path in ("/containers", f"/containers/{container_id}", "/images", f"/metrics/containers/{container_id}"):
            status, body, took = await timed(session, f"{api}{path}")
            assert status == 503, (path, body)
            assert body["code"] == 503 and body["message"] and "errors" in body
            assert took < 2, (path, took)
        status, _, took = await timed(session, f"{daemon.url}/readyz")
        assert status == 503 and took < 2
        status, body, _ = await timed(session, f"{daemon.url}/healthz")
        assert status == 200
        status, body, _ = await timed(session, f"{api}/metrics/resources")
        assert status == 200 and body["data"]["stale"] is False  # the host sampler does not need the engine

        await engine2.start()
        # No restart of moorage: the next calls succeed.
        status, _ = await get_json(session, f"{daemon.url}/readyz")
        assert status == 200
        status, body = await get_json(session, f"{api}/containers/{container_id}")
        assert status == 200 and body["data"]["status"] == "exited"  # the engine stopped it on the way down
        async with session.post(f"{api}/containers/{container_id}/start") as resp:
            assert resp.status == 200 and (await resp.json())["data"]["status"] == "running"
        # The container stats watcher came back by itself: it follows the restarted container.
        reading = await until_reported(session, f"{api}/metrics/containers/{container_id}")
        assert reading["memory"]["limit"] > 0
        async with session.get(f"{api}/containers/{container_id}/logs?follow=true&tail=0") as stream:
            assert await asyncio.wait_for(stream.content.readline(), 10) == b"tick\n"
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.output()
    await engine2.call("DELETE", f"/containers/{container_id}", params={"force": "1"})


async def until_reported(session: aiohttp.ClientSession, url: str, within: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        status, body = await get_json(session, url)
        if status == 200 and body["data"]["status"] == "running" and body["data"]["memory"]["usage"] > 0:
            return dict(body["data"])
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)
