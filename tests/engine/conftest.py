"""Fixtures of the engine tests: the real Docker engine and registries (set up by scripts/setup.sh, once per
session), the test's own engine client, labelled containers, a pushed image, a live daemon to fuzz."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiodocker
import pytest

from ..helpers import ROOT, SCRATCH_REPO, TEST_IMAGE, TEST_LABEL, Daemon, MakeContainer, docker_cli, free_port


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


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    """The test's own engine client, for setting up and checking what the daemon did."""
    async with aiodocker.Docker() as client:
        yield client


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


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    """A `moorage serve` for a whole module of fuzzing, and the admin key it generated."""
    tmp = tmp_path_factory.mktemp("fuzz")
    config = tmp / "moorage.toml"
    # An alert whose test notification can be sent (it is queued for a webhook nobody listens at, and never sent).
    alert = (
        f'[[webhooks]]\nname = "fuzz"\nurl = "http://127.0.0.1:{free_port()}/hook"\n'
        '[[alerts]]\nname = "fuzz"\nevent = "die"\nwebhooks = ["fuzz"]\nselector = "moorage.test=none"\n'
    )
    config.write_text(f'[server]\nstate_dir = "{tmp}/state"\n{alert}')
    daemon = Daemon(config, free_port())
    daemon.wait_healthy()
    yield daemon, daemon.generated_key()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.output()
