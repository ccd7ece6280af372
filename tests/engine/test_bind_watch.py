"""The engine's own restarts: a container created through moorage with restart policy always, whose bind
source is swapped for a symlink, is restarted by the engine (which mounts the symlink's target); moorage
sees the start, kills it, keeps it down and says why. A clean restart-policy restart is left alone."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.containers.bindwatch import AUDIT_KEY, PolicyStops
from moorage.containers.ownership import POLICY_LABEL, policy_mark

from ..helpers import (
    SCRATCH_REPO,
    SERVER_KWARGS,
    TEST_IMAGE,
    TEST_LABEL,
    MakeContainer,
    docker_cli,
    make_settings,
    plain_key,
)

# Waits for the flag file in the bind, then exits: the engine's restart policy starts it again.
WAIT_FOR_GO = ["sh", "-c", "while [ ! -e /data/go ]; do sleep 0.1; done; rm -f /data/go"]
PATIENCE = 30.0  # seconds; what the engine and moorage do here takes well under one


async def app_client(aiohttp_client: Any, tmp_path: Path, allowed_root: Path) -> TestClient:
    """An admin client of a fresh app (state in tmp_path/state) that allows binds under `allowed_root`."""
    settings = make_settings(tmp_path, {"test-admin": "admin"}, policy={"allowed_host_paths": [str(allowed_root)]})
    app = create_app(settings)
    return await aiohttp_client(app, server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")})


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, allowed_root: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, allowed_root)


@pytest.fixture
async def sweep(docker: aiodocker.Docker, case_label: str) -> AsyncIterator[None]:
    """What this test's requests created is removed after it, pass or fail."""
    yield
    filters = json.dumps({"label": [f"{TEST_LABEL}={case_label}"]})
    for container in await docker.containers.list(all=True, filters=filters):
        await container.delete(force=True, v=True)


async def create_always(client: TestClient, case_label: str, source: Path) -> str:
    body = {
        "image": TEST_IMAGE,
        "labels": {TEST_LABEL: case_label},
        "command": WAIT_FOR_GO,
        "restart_policy": "always",
        "volumes": [{"host_path": str(source), "container_path": "/data"}],
        "start": True,
    }
    resp = await client.post("/api/v1/containers", json=body)
    assert resp.status == 201, await resp.json()
    container_id: str = (await resp.json())["data"]["id"]
    return container_id


async def policy_stop(client: TestClient, container_id: str) -> dict[str, Any]:
    """The detail's `policy_stop`, once moorage has stopped the container (and recorded why)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        resp = await client.get(f"/api/v1/containers/{container_id}")
        if stop := (await resp.json())["data"]["policy_stop"]:
            return dict(stop)
        await asyncio.sleep(0.05)
    raise AssertionError(f"moorage did not stop {container_id} within {PATIENCE} s")


async def inspect(docker: aiodocker.Docker, container_id: str) -> dict[str, Any]:
    return await docker.containers.container(container_id).show()


async def restarted(docker: aiodocker.Docker, container_id: str) -> dict[str, Any]:
    """The container's state once the engine has restarted it at least once."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        state = await inspect(docker, container_id)
        if state["RestartCount"] >= 1:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"the engine did not restart {container_id} within {PATIENCE} s")


async def counted(client: TestClient, metric: str) -> float:
    text = await (await client.get("/metrics")).text()
    [value] = [line.split()[1] for line in text.splitlines() if line.startswith(f"moorage_{metric}_total ")]
    return float(value)


async def checked(caplog: pytest.LogCaptureFixture, container_id: str, runs: int) -> None:
    """Wait until moorage has found the binds of `runs` starts of the container clean (its debug line)."""
    deadline = time.monotonic() + PATIENCE
    line = f"binds of container {container_id[:12]} pass"
    while sum(record.getMessage() == line for record in caplog.records) < runs:
        assert time.monotonic() < deadline, f"moorage did not check {runs} starts within {PATIENCE} s"
        await asyncio.sleep(0.05)


def engine_time(value: str) -> float:
    """Docker's nanosecond RFC 3339 as Unix seconds (to microseconds)."""
    head, _, tail = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{tail[:6].ljust(6, '0')}+00:00").timestamp()


@pytest.mark.usefixtures("sweep")
async def test_a_restart_with_a_swapped_bind_is_killed_and_stays_down(
    client: TestClient, docker: aiodocker.Docker, tmp_path: Path, allowed_root: Path, case_label: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    source = allowed_root / "a" / "b"
    caplog.set_level(logging.DEBUG, logger="moorage.containers.bindwatch")
    container_id = await create_always(client, case_label, source)
    await checked(caplog, container_id, 1)  # its first start, before the swap (a check after it would stop this run)
    # Swap the bind source for a symlink out of the allowed root, then make the process exit: the flag goes
    # into the directory still mounted (moved away), and the engine's restart mounts the symlink's target.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source.rename(allowed_root / "a" / "moved")
    source.symlink_to(elsewhere)
    (allowed_root / "a" / "moved" / "go").touch()

    stop = await policy_stop(client, container_id)
    state = await inspect(docker, container_id)
    assert state["State"]["Running"] is False and state["RestartCount"] >= 1
    assert state["HostConfig"]["RestartPolicy"]["Name"] == "no"
    ran = engine_time(state["State"]["FinishedAt"]) - engine_time(state["State"]["StartedAt"])
    [killed] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    print(f"the restarted container ran {ran * 1000:.0f} ms with the swapped bind; {killed.partition(': ')[0]}")

    # It stays down: nothing (restart policy included) starts it again.
    await asyncio.sleep(3)
    later = await inspect(docker, container_id)
    assert later["State"]["Running"] is False
    assert later["RestartCount"] == state["RestartCount"]

    assert str(source) in stop["reason"]
    assert stop["restart_policy"] == "always"
    assert (await counted(client, "policy_stops")) == 1
    resp = await client.get("/api/v1/audit", params={"key_name": AUDIT_KEY})
    [line] = (await resp.json())["data"]["items"]
    assert (line["target"], line["result"], line["method"], line["action"]) == (
        container_id,
        200,
        "KILL",
        "policy_stop",
    )
    # Kept in the state dir, for the detail after a restart of the daemon.
    assert json.loads((tmp_path / "state" / "policy-stops.json").read_text())[container_id] == stop


@pytest.mark.usefixtures("sweep")
async def test_a_clean_restart_policy_restart_keeps_running(
    client: TestClient, docker: aiodocker.Docker, allowed_root: Path, case_label: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    source = allowed_root / "a" / "b"
    caplog.set_level(logging.DEBUG, logger="moorage.containers.bindwatch")
    container_id = await create_always(client, case_label, source)
    await checked(caplog, container_id, 1)
    (source / "go").touch()
    await restarted(docker, container_id)
    await checked(caplog, container_id, 2)  # the restart checked, and passed
    state = await inspect(docker, container_id)
    assert state["State"]["Running"] is True
    assert state["HostConfig"]["RestartPolicy"]["Name"] == "always"
    resp = await client.get(f"/api/v1/containers/{container_id}")
    assert (await resp.json())["data"]["policy_stop"] is None
    assert (await counted(client, "policy_stops")) == 0


async def test_one_started_while_moorage_was_away_is_killed_when_it_connects(
    aiohttp_client: Any, docker: aiodocker.Docker, make_container: MakeContainer, tmp_path: Path,
    allowed_root: Path,
) -> None:  # fmt: skip
    """Started by the engine before moorage runs (as at dockerd's restart, or while moorage is down); the
    record of why survives a restart of moorage."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (allowed_root / "link").symlink_to(elsewhere)
    mount = {"Type": "bind", "Source": str(allowed_root / "link"), "Target": "/data"}
    made = await make_container(
        labels={POLICY_LABEL: policy_mark(tmp_path / "state")},
        host_config={"Mounts": [mount], "RestartPolicy": {"Name": "always"}},
        start=True,
    )
    client = await app_client(aiohttp_client, tmp_path, allowed_root)
    first = await policy_stop(client, made["Id"])
    assert first["restart_policy"] == "always"
    state = await inspect(docker, made["Id"])
    assert state["State"]["Running"] is False and state["HostConfig"]["RestartPolicy"]["Name"] == "no"
    again = await app_client(aiohttp_client, tmp_path, allowed_root)
    assert (await (await again.get(f"/api/v1/containers/{made['Id']}")).json())["data"]["policy_stop"] == first


@pytest.fixture
def labelled_image(case_label: str) -> Iterator[str]:
    """An image whose own labels include moorage's POLICY_LABEL, as anyone may build one; removed after."""
    image = f"{SCRATCH_REPO}/policy-labelled:{case_label}"
    base = docker_cli("create", "--label", f"{TEST_LABEL}={case_label}", TEST_IMAGE, "true")
    try:
        docker_cli("commit", "--change", f"LABEL {POLICY_LABEL}=1", base, image)
    finally:
        docker_cli("rm", "-f", base)
    yield image
    # The containers made of it first: an image in use would be left behind, untagged, as a child of the test image.
    if made := docker_cli("ps", "-aq", "--filter", f"ancestor={image}").split():
        docker_cli("rm", "-f", *made)
    docker_cli("rmi", image)


@pytest.mark.usefixtures("sweep")
async def test_a_container_made_outside_moorage_from_an_image_with_its_label_is_left_alone(
    client: TestClient, tmp_path: Path, allowed_root: Path, case_label: str, labelled_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Labels are inherited from the image, so the label alone does not make a container moorage's: one made with
    the docker CLI, with a bind the policy would refuse, is neither killed by the watch nor refused at start."""
    caplog.set_level(logging.DEBUG, logger="moorage.containers.bindwatch")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    foreign = docker_cli(
        "create", "--label", f"{TEST_LABEL}={case_label}", "-v", f"{elsewhere}:/data", labelled_image, "sleep", "300"
    )
    assert json.loads(docker_cli("inspect", foreign))[0]["Config"]["Labels"][POLICY_LABEL] == "1"
    docker_cli("start", foreign)
    # The watch takes the engine's events in order: once it has checked a start of its own sent after the
    # foreign one, it has seen (or was not sent) the foreign start.
    own = await create_always(client, case_label, allowed_root / "a" / "b")
    await checked(caplog, own, 1)
    # Not whether it still runs: on an engine shared with other daemons, one of an older moorage may kill it.
    assert not [r for r in caplog.records if r.levelno == logging.WARNING and foreign[:12] in r.getMessage()]
    resp = await client.get(f"/api/v1/containers/{foreign}")
    assert (await resp.json())["data"]["policy_stop"] is None
    docker_cli("stop", "-t", "0", foreign)
    resp = await client.post(f"/api/v1/containers/{foreign}/start")
    assert resp.status == 200, await resp.json()


async def test_policy_stops_are_written_off_the_event_loop_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write and its fsync run in a thread (the loop goes on meanwhile); writes begun at once end with the
    last change on disk."""
    slow_fsync = os.fsync

    def fsync(fd: int) -> None:
        time.sleep(0.3)  # a slow disk
        slow_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    stops = PolicyStops(tmp_path / "state" / "policy-stops.json")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    try:
        await asyncio.gather(
            stops.record("a", {"reason": "first"}), stops.record("b", {"reason": "second"}), stops.forget("a")
        )
    finally:
        ticker.cancel()
    assert ticks >= 10, "the event loop stood still during the writes"
    assert json.loads(stops.path.read_text()) == {"b": {"reason": "second"}}


@pytest.mark.usefixtures("sweep")
async def test_a_container_moorage_made_before_it_had_a_mark_is_still_rechecked(
    client: TestClient, tmp_path: Path, case_label: str
) -> None:
    """moorage.policy=1 on the container but not on its image: made by an earlier moorage, still judged."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    labels = ["--label", f"{TEST_LABEL}={case_label}", "--label", f"{POLICY_LABEL}=1"]
    earlier = docker_cli("create", *labels, "-v", f"{elsewhere}:/data", TEST_IMAGE, "sleep", "300")
    resp = await client.post(f"/api/v1/containers/{earlier}/start")
    assert resp.status == 403, await resp.json()
