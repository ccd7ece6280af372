"""Plain helpers and constants that several test modules use, unit and engine alike (fixtures are in
conftest.py, the engine's in engine/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from moorage.access.keys import hash_key, new_key
from moorage.app import create_app
from moorage.config.loader import settings_from_mapping
from moorage.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TEST_IMAGE = "127.0.0.1:5000/moorage-test/busybox:latest"
TEST_REPO = TEST_IMAGE.rsplit(":", 1)[0]
# Names that only tests make (the fuzz run's own images); never pushed, swept at start.
SCRATCH_REPO = "127.0.0.1:5000/moorage-st"
# The registry with basic auth that scripts/setup.sh runs, and the image only it holds.
AUTH_REGISTRY = "127.0.0.1:5001"
PRIVATE_REPO = f"{AUTH_REGISTRY}/moorage-test/private"
AUTH_USER = "moorage-test"
AUTH_PASSWORD_FILE = Path(os.environ.get("MOORAGE_TEST_STATE", "/var/lib/moorage-test")) / "auth-registry" / "password"
# As the daemon runs: a request whose client has gone is cancelled.
SERVER_KWARGS = {"handler_cancellation": True}
# Every container a test makes carries this label, so that nothing a test leaves can be mistaken for the host's.
TEST_LABEL = "moorage.test"

MakeContainer = Callable[..., Awaitable[dict[str, Any]]]
PUBLIC_PATHS = {"/healthz", "/readyz"}
# The keys (name: role) of an app with one key per role.
ROLES = {"viewer-key": "viewer", "operator-key": "operator", "admin-key": "admin"}


def docker_cli(*args: str) -> str:
    """The docker command's output, for what tests set up and sweep beside the API under test."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def make_settings(tmp_path: Path, keys: dict[str, str], **sections: dict[str, Any]) -> Settings:
    """Settings as a config file would give them; `keys` maps a key name to its role."""
    raw_keys = [{"name": name, "role": role, "sha256": hash_key(plain_key(name))} for name, role in keys.items()]
    server = {"state_dir": str(tmp_path / "state"), **sections.pop("server", {})}
    # Tests walk every route without a key from one address: the failure limit is tested on its own.
    auth = {"api_keys": raw_keys, "failed_limit": 100_000, **sections.pop("auth", {})}
    return settings_from_mapping({"server": server, "auth": auth, **sections})


_PLAIN_KEYS: dict[str, str] = {}


def plain_key(name: str) -> str:
    """One random key per name for the whole run: tests never hard-code a key."""
    return _PLAIN_KEYS.setdefault(name, new_key())


async def app_client(aiohttp_client: Any, tmp_path: Path, keys: dict[str, str] = ROLES, **sections: Any) -> TestClient:
    settings = make_settings(tmp_path, keys, **sections)
    client: TestClient = await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS)
    return client


def key_headers(name: str) -> dict[str, str]:
    return {"X-API-Key": plain_key(name)}


async def finished(make_container: MakeContainer, docker: aiodocker.Docker, script: str, **config: Any) -> str:
    """A container that ran `script` to its end; its id."""
    made = await make_container(cmd=["sh", "-c", script], start=True, **config)
    await docker.containers.container(made["Id"]).wait()
    return str(made["Id"])


async def items(client: TestClient, container: str, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/api/v1/containers/{container}/logs{query}")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """A `moorage serve` child process, as systemd or an operator would run it."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = config.with_suffix(".log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moorage", "serve", "--config", str(config), "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def wait_healthy(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"moorage exited with {self.proc.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"moorage did not listen within {timeout}s: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def generated_key(self) -> str:
        """The admin key a daemon without configured keys printed on its first start."""
        [key] = [word for word in self.output().split() if word.startswith("mrg_")]
        return key

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=30)


async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with session.get(url, **kwargs) as resp:
        return resp.status, await resp.json()


def concrete_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, a path that matches the route, handler) for every route, variables filled in."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or re.sub(r"\{([^}:]+)(:[^}]*)?\}", "x1", info.get("formatter", ""))
        out.append((route.method, path, route.handler))
    return out


def assert_error(body: dict[str, Any], code: int) -> None:
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], list)
    assert "data" not in body


async def until(check: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)
