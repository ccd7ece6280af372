"""Fixtures: a real Docker engine and registry (set up by scripts/setup.sh), the app, labelled containers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
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


def docker_cli(*args: str) -> str:
    """The docker command's output, for what tests set up and sweep beside the API under test."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="session", autouse=True)
def engine() -> Iterator[None]:
    """Install and start the engine, the registry and the test image if needed; sweep test containers after."""
    subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "engine"], check=True)
    # What an interrupted fuzz run left; older runs tagged the test image itself, which changes the engine's
    # answers about it (a delete is "referenced in multiple repositories" before it is "in use").
    scratch = docker_cli("images", "--format", "{{.Repository}}:{{.Tag}}", f"{SCRATCH_REPO}/*").split()
    if scratch:
        subprocess.run(["docker", "rmi", *scratch], capture_output=True, check=False)
    yield
    if os.environ.get("MOORAGE_TEST_NO_SWEEP"):
        return  # another test session shares this engine (parallel work): leave its containers alone
    leftovers = docker_cli("ps", "-aq", "--filter", f"label={TEST_LABEL}").split()
    if leftovers:
        subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True, check=False)


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
async def docker() -> AsyncIterator[aiodocker.Docker]:
    """The test's own engine client, for setting up and checking what the daemon did."""
    async with aiodocker.Docker() as client:
        yield client


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
async def make_container(docker: aiodocker.Docker, case_label: str) -> AsyncIterator[MakeContainer]:
    """Create (and optionally start) a labelled container; all of them are removed after the test, pass or fail."""
    made: list[str] = []

    async def make(
        *,
        name: str | None = None,
        cmd: list[str] | None = None,
        start: bool = False,
        labels: dict[str, str] | None = None,
        host_config: dict[str, Any] | None = None,
        **config: Any,
    ) -> dict[str, Any]:
        body = {
            "Image": TEST_IMAGE,
            "Cmd": cmd or ["sleep", "600"],
            "Labels": {TEST_LABEL: case_label, **(labels or {})},
            "HostConfig": host_config or {},
            **config,
        }
        container = await docker.containers.create(body, name=name or f"mt-{uuid.uuid4().hex[:10]}")
        made.append(container.id)
        if start:
            await container.start()
        return await container.show()

    yield make
    for container_id in made:
        try:
            await docker.containers.container(container_id).delete(force=True, v=True)
        except aiodocker.DockerError as err:
            if err.status != 404:
                raise


@pytest.fixture
async def pushed_only(docker: aiodocker.Docker, case_label: str) -> AsyncIterator[str]:
    """A repository (tag latest) that the local registry holds and this host does not; untagged after."""
    repo = f"127.0.0.1:5000/moorage-test/pull-{case_label}"
    await docker.images.tag(TEST_IMAGE, repo, tag="latest")
    await docker.images.push(repo, tag="latest")
    await docker.images.delete(f"{repo}:latest")
    yield repo
    try:
        await docker.images.delete(f"{repo}:latest")
    except aiodocker.DockerError as err:
        if err.status != 404:
            raise


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


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    """A `moorage serve` for a whole module of fuzzing, and the admin key it generated."""
    tmp = tmp_path_factory.mktemp("fuzz")
    config = tmp / "moorage.toml"
    config.write_text(f'[server]\nstate_dir = "{tmp}/state"\n')
    daemon = Daemon(config, free_port())
    daemon.wait_healthy()
    yield daemon, daemon.generated_key()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.output()


async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with session.get(url, **kwargs) as resp:
        return resp.status, await resp.json()
