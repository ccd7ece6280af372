"""Plain helpers and constants that several test modules use, unit and engine alike (fixtures are in
conftest.py, the engine's in engine/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
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
# The query a walk of every route sends to a prune: a dry run limited to a label nothing carries. The engine is
# shared, and a prune without a filter of the test's own would remove what other tests (and the host) have.
HARMLESS_PRUNE = {"label": "moorage.test.prune=nothing-carries-this", "dry_run": "true"}

# A command that ends at the stop's SIGTERM (a shell or a sleep as process 1 ignores it: the stop would wait its
# 10 s before it kills).
STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
MakeContainer = Callable[..., Awaitable[dict[str, Any]]]
# Routes no API key is asked for: the probes, and a deploy hook, whose calls are signed with its secret instead.
PUBLIC_PATHS = {"/healthz", "/readyz", "/api/v1/hooks/x1"}
# The keys (name: role) of an app with one key per role.
ROLES = {"viewer-key": "viewer", "operator-key": "operator", "admin-key": "admin"}
# A key's role, or the rest of its config entry: {"permissions": [...], "expires_at": ...}.
KeySpecs = Mapping[str, str | dict[str, Any]]


def docker_cli(*args: str) -> str:
    """The docker command's output, for what tests set up and sweep beside the API under test."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def make_settings(tmp_path: Path, keys: KeySpecs, **sections: dict[str, Any]) -> Settings:
    """Settings as a config file would give them; `keys` maps a key name to its role, or to the rest of its
    `[[auth.api_keys]]` entry (role, permissions, expires_at)."""
    raw_keys = [
        {"name": name, **({"role": spec} if isinstance(spec, str) else spec), "sha256": hash_key(plain_key(name))}
        for name, spec in keys.items()
    ]
    server = {"state_dir": str(tmp_path / "state"), **sections.pop("server", {})}
    # Tests walk every route without a key from one address: the failure limit is tested on its own.
    auth = {"api_keys": raw_keys, "failed_limit": 100_000, **sections.pop("auth", {})}
    return settings_from_mapping({"server": server, "auth": auth, **sections})


_PLAIN_KEYS: dict[str, str] = {}


def plain_key(name: str) -> str:
    """One random key per name for the whole run: tests never hard-code a key."""
    return _PLAIN_KEYS.setdefault(name, new_key())


async def app_client(aiohttp_client: Any, tmp_path: Path, keys: KeySpecs = ROLES, **sections: Any) -> TestClient:
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
                time.sleep(0.02)  # a start takes about 0.4 s: a look every 0.1 s came 50 ms after it, on average
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


def untag(tag: str) -> None:
    """Remove the tag, if it is still here (a test may have removed it), and every digest reference a push left
    in its repository: the test image must keep no other name, or the engine's answers about it change (a
    delete is "referenced in multiple repositories" before it is "in use")."""
    repository = tag.rsplit(":", 1)[0]
    pushed = docker_cli("images", "--digests", "--format", "{{.Repository}}@{{.Digest}}", repository).split()
    for name in [tag, *(ref for ref in pushed if not ref.endswith("@<none>"))]:
        subprocess.run(["docker", "rmi", name], capture_output=True, check=False)


async def remove_labelled(docker: aiodocker.Docker, case_label: str) -> None:
    """Remove every container labelled for a test, whatever made it: a recreate gives the container a new id."""
    found = await docker.containers.list(all=True, filters=json.dumps({"label": [f"{TEST_LABEL}={case_label}"]}))
    for container in found:
        try:
            await container.delete(force=True, v=True)
        except aiodocker.DockerError as err:
            if err.status != 404:
                raise


def inspected(container: str) -> dict[str, Any]:
    """The engine's inspect, or {} for a container that is not there."""
    done = subprocess.run(["docker", "container", "inspect", container], capture_output=True, text=True, check=False)
    return json.loads(done.stdout)[0] if done.returncode == 0 else {}


def labelled(case_label: str) -> list[dict[str, Any]]:
    """Inspects of every container of this test, whatever its name."""
    ids = docker_cli("ps", "-aq", "--no-trunc", "--filter", f"label={TEST_LABEL}={case_label}").split()
    return [inspected(container_id) for container_id in ids]


def daemon_config(tmp_path: Path, failed_limit: int = 100_000, more: str = "", server: str = "") -> str:
    """A `moorage serve` config with the test admin key, a state dir of the test's own, `server` (TOML lines of
    [server]) and `more` (TOML tables)."""
    return (
        f'[server]\nstate_dir = "{tmp_path}/daemon-state"\n{server}'
        f"[auth]\nfailed_limit = {failed_limit}\n"
        f'[[auth.api_keys]]\nname = "test-admin"\nrole = "admin"\nsha256 = "{hash_key(plain_key("test-admin"))}"\n'
        f"{more}"
    )


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


# Healthchecks that pass, or fail, at once and run every 200 ms: their exec events come within a test.
HEALTHY = {"Test": ["CMD", "true"], "Interval": 200_000_000, "StartPeriod": 0, "Retries": 1}
FAILING = {"Test": ["CMD", "false"], "Interval": 200_000_000, "StartPeriod": 0, "Retries": 1}


async def until_health(docker: aiodocker.Docker, container_id: str, wanted: str) -> None:
    for _ in range(100):
        if (await docker.containers.container(container_id).show())["State"]["Health"]["Status"] == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{container_id[:12]} never became {wanted}")
