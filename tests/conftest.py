"""Fixtures that unit and engine tests share: settings, keys, clients of a fresh app, `moorage serve` children.
None of them asks the engine (an app starts without one); the engine's are in engine/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.settings import Settings

from .helpers import SERVER_KWARGS, Daemon, free_port, make_settings, plain_key


@pytest.fixture
def api_key() -> str:
    return plain_key("test-admin")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, {"test-admin": "admin"})


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, api_key: str) -> TestClient:
    """A client of a fresh app, sending the admin key."""
    return await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": api_key})


@pytest.fixture
async def anon(aiohttp_client: Any, settings: Settings) -> TestClient:
    """A client of a fresh app, sending no credentials."""
    return await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS)


@pytest.fixture
def allowed_root(tmp_path: Path) -> Path:
    """A directory to list in [policy] allowed_host_paths, holding empty directories to bind: `data`, and the
    nested `a/b` and `x/sub`."""
    root = tmp_path / "allowed"
    for inside in ("data", "a/b", "x/sub"):
        (root / inside).mkdir(parents=True)
    return root


@pytest.fixture
def case_label() -> str:
    """A label value unique to this test, to list only its own containers."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def spawn_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def spawn(config_text: str, env: dict[str, str] | None = None) -> Daemon:
        config = tmp_path / f"moorage-{len(started)}.toml"
        config.write_text(config_text)
        daemon = Daemon(config, free_port(), env)
        started.append(daemon)
        daemon.wait_healthy()
        return daemon

    yield spawn
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.stop()
