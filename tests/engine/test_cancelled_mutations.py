"""A call that changes something runs to its end whatever its client does, and the audit says how it ended;
a stream still ends when its client leaves."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app

from ..fake_engine import FakeEngine, serving
from ..helpers import SERVER_KWARGS, TEST_IMAGE, TEST_LABEL, Daemon, MakeContainer, make_settings, plain_key


@pytest.fixture
def daemon(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> Daemon:
    return spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\n')


@pytest.fixture
async def labelled(docker: aiodocker.Docker, case_label: str) -> AsyncIterator[str]:
    """This test's label value; whatever carries it is removed afterwards."""
    yield case_label
    for container in await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"{TEST_LABEL}={case_label}"]})
    ):
        await container.delete(force=True, v=True)


async def send_and_leave(port: int, key: str, method: str, path: str, body: dict[str, Any], delay: float) -> None:
    """Send a whole request, then close the socket `delay` seconds later without reading the answer."""
    data = json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + data)
    await writer.drain()
    await asyncio.sleep(delay)
    writer.close()
    await writer.wait_closed()


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def audit_line(path: Path, count: int) -> dict[str, Any]:
    """The `count`-th line of the audit file, once it is there (60 s at most: an engine under load is slow)."""
    for _ in range(600):
        lines = lines_of(path)
        if len(lines) >= count:
            return dict(json.loads(lines[count - 1]))
        await asyncio.sleep(0.1)
    raise AssertionError(f"no audit line {count} in {path}")


async def test_a_create_and_start_whose_client_leaves_completes_and_is_audited_201(
    daemon: Daemon, tmp_path: Path, docker: aiodocker.Docker, labelled: str
) -> None:
    key = daemon.generated_key()
    for count, delay in enumerate((0.05, 0.25, 0.5), start=1):
        name = f"mt-left-{uuid.uuid4().hex[:10]}"
        body = {
            "name": name,
            "image": TEST_IMAGE,
            "pull": "never",
            "start": True,
            "command": ["sleep", "600"],
            "labels": {TEST_LABEL: labelled},
        }
        await send_and_leave(daemon.port, key, "POST", "/api/v1/containers", body, delay)
        line = await audit_line(tmp_path / "state" / "audit.log", count)
        assert (line["path"], line["result"]) == ("/api/v1/containers", 201), delay
        state = (await docker.containers.container(name).show())["State"]
        assert state["Running"], (delay, state)


async def test_a_prune_whose_client_leaves_removes_all_it_named_and_is_audited(
    daemon: Daemon, tmp_path: Path, docker: aiodocker.Docker, make_container: MakeContainer, case_label: str
) -> None:
    made = {(await make_container())["Id"] for _ in range(5)}
    label = f"{TEST_LABEL}={case_label}"  # this test's containers only: the engine is shared
    path = f"/api/v1/containers/prune?label={label}"
    await send_and_leave(daemon.port, daemon.generated_key(), "POST", path, {}, 0.01)
    line = await audit_line(tmp_path / "state" / "audit.log", 1)
    assert (line["path"], line["result"]) == ("/api/v1/containers/prune", 200)
    assert line["detail"]["containers"]["count"] == len(made)
    assert set(line["detail"]["containers"]["ids"]) == made
    assert await docker.containers.list(all=True, filters=json.dumps({"label": [label]})) == []


@pytest.fixture
async def fake() -> AsyncIterator[FakeEngine]:
    async with serving(FakeEngine()) as engine:
        yield engine


@pytest.fixture
async def on_fake(aiohttp_client: Any, tmp_path: Path, fake: FakeEngine) -> TestClient:
    settings = make_settings(tmp_path, {"test-admin": "admin"}, docker={"url": fake.url})
    return await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS)


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within 10 s: {what}")


async def test_a_pull_whose_client_leaves_is_pulled_to_the_end(
    on_fake: TestClient, fake: FakeEngine, tmp_path: Path
) -> None:
    assert on_fake.server.port is not None
    leaving = send_and_leave(
        on_fake.server.port, plain_key("test-admin"), "POST", "/api/v1/images/pull", {"name": "127.0.0.1:5000/a"}, 0.3
    )
    await leaving
    await wait_for(lambda: fake.pulls_started == 1, "the engine pull started")
    fake.release.set()
    line = await audit_line(tmp_path / "state" / "audit.log", 1)
    assert (line["path"], line["result"]) == ("/api/v1/images/pull", 200)
    assert (fake.pulls_finished, fake.pulls_cut) == (1, 0)


async def test_a_streamed_pull_still_ends_at_the_engine_when_its_client_leaves(
    on_fake: TestClient, fake: FakeEngine, tmp_path: Path
) -> None:
    fake.stalled.add("pull")  # no first event: the stream's head is not even out when the client leaves
    assert on_fake.server.port is not None
    leaving = asyncio.create_task(
        send_and_leave(
            on_fake.server.port,
            plain_key("test-admin"),
            "POST",
            "/api/v1/images/pull?stream=true",
            {"name": "127.0.0.1:5000/a"},
            1.0,
        )
    )
    await wait_for(lambda: fake.hanging["pull"] == 1, "the engine pull hanging")
    await leaving
    await wait_for(lambda: fake.cut["pull"] == 1, "the engine pull cut")
    line = await audit_line(tmp_path / "state" / "audit.log", 1)
    assert (line["path"], line["result"]) == ("/api/v1/images/pull", 499)
