"""SIGTERM: open streams end at once, the process exits 0 without waiting out the shutdown timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from .conftest import Daemon, MakeContainer


async def test_sigterm_ends_an_open_follow_stream_and_exits_0(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon], make_container: MakeContainer
) -> None:
    daemon = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\nshutdown_timeout = 30\n')
    [key] = [word for word in daemon.output().split() if word.startswith("mrg_")]
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
