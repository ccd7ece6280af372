"""Signals and systemd's notifications: on SIGTERM open streams end at once and the process exits 0 without
waiting out the shutdown timeout; SIGHUP reloads; READY, WATCHDOG and STOPPING reach the notify socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from moorage.access.keys import hash_key

from ..helpers import Daemon, MakeContainer, get_json, plain_key


@pytest.fixture
def patient(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> Daemon:
    """A daemon that would give in-flight requests 30 s after SIGTERM."""
    return spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\nshutdown_timeout = 30\n')


async def test_sigterm_ends_an_open_follow_stream_and_exits_0(patient: Daemon, make_container: MakeContainer) -> None:
    daemon, key = patient, patient.generated_key()
    running = await make_container(cmd=["sh", "-c", "echo up; sleep 600"], start=True)
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as session:
        url = f"{daemon.url}/api/v1/containers/{running['Id']}/logs?follow=true"
        async with session.get(url) as resp:
            assert await asyncio.wait_for(resp.content.readline(), 5) == b"up\n"
            started = time.monotonic()
            daemon.proc.terminate()
            assert await asyncio.wait_for(resp.content.read(), 10) == b""  # the stream ends, cleanly
    code = await asyncio.to_thread(daemon.proc.wait, 10)
    assert code == 0
    assert time.monotonic() - started < 5  # not the 30 s shutdown timeout
    assert "Traceback" not in daemon.output()


@contextlib.asynccontextmanager
async def stop_in_flight(
    daemon: Daemon, make_container: MakeContainer, seconds: int
) -> AsyncIterator[asyncio.Task[aiohttp.ClientResponse]]:
    """A `POST .../stop?timeout=seconds` that the engine is waiting out: its SIGTERM is sent, and ignored."""
    # A container's PID 1 without a handler ignores SIGTERM: the engine waits out the stop timeout, then kills.
    stubborn = await make_container(cmd=["sleep", "600"], start=True)
    kills = {"container": [stubborn["Id"]], "event": ["kill"]}
    engine = aiohttp.ClientSession(connector=aiohttp.UnixConnector("/var/run/docker.sock"))
    async with (
        engine,
        engine.get("http://docker/events", params={"filters": json.dumps(kills)}) as events,
        aiohttp.ClientSession(headers={"X-API-Key": daemon.generated_key()}) as session,
    ):
        url = f"{daemon.url}/api/v1/containers/{stubborn['Id']}/stop?timeout={seconds}"
        stopping = asyncio.create_task(session.post(url))
        sent = json.loads(await asyncio.wait_for(events.content.readline(), 10))
        assert sent["Actor"]["Attributes"]["signal"] == "15"
        assert not stopping.done()
        yield stopping


async def test_sigterm_lets_an_in_flight_request_finish_and_exits_0(
    patient: Daemon, make_container: MakeContainer
) -> None:
    async with stop_in_flight(patient, make_container, 3) as stopping:
        patient.proc.terminate()
        async with await stopping as resp:
            assert resp.status == 200
            assert (await resp.json())["data"]["status"] == "exited"
    assert await asyncio.to_thread(patient.proc.wait, 10) == 0


async def test_a_change_that_outlives_the_shutdown_timeout_is_cancelled_and_audited_before_exit(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon], make_container: MakeContainer
) -> None:
    """It is cancelled while the engine client and the audit are still open: its line is in the audit file."""
    daemon = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\nshutdown_timeout = 1\n')
    async with stop_in_flight(daemon, make_container, 60) as stopping:
        started = time.monotonic()
        daemon.proc.terminate()
        with contextlib.suppress(aiohttp.ClientError):
            (await stopping).close()
        assert await asyncio.to_thread(daemon.proc.wait, 15) == 0
    assert time.monotonic() - started < 8  # the grace and the rollback, not the stop's 60 s
    lines = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert [(line["method"], line["result"]) for line in lines if line["path"].endswith("/stop")] == [("POST", 499)]
    assert "Traceback" not in daemon.output()


async def test_systemd_hears_ready_watchdog_and_stopping(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(address))
        listener.settimeout(10)
        daemon = spawn_daemon(
            f'[server]\nstate_dir = "{tmp_path}/state"\n',
            env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "200000"},
        )
        heard = [listener.recv(256).decode() for _ in range(3)]
        assert heard[0] == "READY=1"  # sent once listening: spawn_daemon saw the port open
        assert heard[1:] == ["WATCHDOG=1", "WATCHDOG=1"]  # every 0.1 s, half the watchdog period
        daemon.proc.terminate()
        while (message := listener.recv(256).decode()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
    assert await asyncio.to_thread(daemon.proc.wait, 10) == 0


async def test_sighup_reloads_keys_and_a_broken_config_keeps_the_old_one(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon]
) -> None:
    def config(*names: str) -> str:
        blocks = "".join(
            f'[[auth.api_keys]]\nname = "{n}"\nrole = "viewer"\nsha256 = "{hash_key(plain_key(n))}"\n' for n in names
        )
        return f'[server]\nstate_dir = "{tmp_path}/state"\n{blocks}'

    daemon = spawn_daemon(config("first"))
    config_file = daemon.log.with_suffix(".toml")

    async def status(name: str) -> int:
        async with aiohttp.ClientSession(headers={"X-API-Key": plain_key(name)}) as session:
            return (await get_json(session, f"{daemon.url}/api/v1/auth/whoami"))[0]

    async def hup() -> None:
        daemon.proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)

    assert (await status("first"), await status("second")) == (200, 401)
    config_file.write_text(config("first", "second"))
    await hup()
    assert (await status("first"), await status("second")) == (200, 200)
    config_file.write_text("[server]\nport = 'eighty'\n")
    await hup()
    assert (await status("first"), await status("second")) == (200, 200)
    assert "reload refused" in daemon.output() and "server.port" in daemon.output()
    assert daemon.stop() == 0
