"""The nesting rule under concurrency: two creates sent at once, one binding a directory writable and the other a
directory inside it, through the real app and engine. One of them must lose, whichever comes first."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.containers.binds import _Bind, _Binds
from moorage.containers.ownership import CREATE_LABEL
from moorage.schemas.create import ContainerCreateSchema
from moorage.web.state import BIND_LEDGER

from ..helpers import SERVER_KWARGS, TEST_IMAGE, TEST_LABEL, assert_error, make_settings, plain_key

TRIES = 8


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, allowed_root: Path) -> TestClient:
    settings = make_settings(tmp_path, {"test-admin": "admin"}, policy={"allowed_host_paths": [str(allowed_root)]})
    app = create_app(settings)
    return await aiohttp_client(app, server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")})


async def labelled(docker: aiodocker.Docker, case_label: str) -> list[dict[str, Any]]:
    filters = json.dumps({"label": [f"{TEST_LABEL}={case_label}"]})
    return [await c.show() for c in await docker.containers.list(all=True, filters=filters)]


async def remove_all(docker: aiodocker.Docker, case_label: str) -> None:
    for container in await labelled(docker, case_label):
        await docker.containers.container(container["Id"]).delete(force=True, v=True)


@pytest.fixture
async def sweep(docker: aiodocker.Docker, case_label: str) -> Any:
    yield
    await remove_all(docker, case_label)


@pytest.mark.usefixtures("sweep")
async def test_concurrent_nested_binds_one_wins(
    client: TestClient, docker: aiodocker.Docker, allowed_root: Path, case_label: str
) -> None:
    async def create(name: str, host_path: Path) -> tuple[int, dict[str, Any]]:
        body = {
            "image": TEST_IMAGE,
            "name": name,
            "labels": {TEST_LABEL: case_label},
            "volumes": [{"host_path": str(host_path), "container_path": "/data"}],
        }
        resp = await client.post("/api/v1/containers", json=body)
        return resp.status, await resp.json()

    for attempt in range(TRIES):
        outer = allowed_root / f"x{attempt}"
        (outer / "sub").mkdir(parents=True)
        names = (f"mt-race-p-{case_label}-{attempt}", f"mt-race-c-{case_label}-{attempt}")
        # The writable bind above (P) and the bind inside it (C), at the same moment.
        answers = await asyncio.gather(create(names[0], outer), create(names[1], outer / "sub"))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201, 403], f"try {attempt}: {answers}"
        winner, loser = (answers[0], answers[1]) if answers[0][0] == 201 else (answers[1], answers[0])
        assert_error(loser[1], 403)
        assert [e["field"] for e in loser[1]["errors"]] == ["volumes.0.host_path"]
        # The loser left nothing behind; the winner is the only container of this try.
        left = await labelled(docker, case_label)
        assert [c["Id"] for c in left] == [winner[1]["data"]["id"]], f"try {attempt}"
        await remove_all(docker, case_label)


@pytest.mark.usefixtures("sweep")
async def test_only_creates_with_binds_wait_for_the_ledger(
    client: TestClient, docker: aiodocker.Docker, allowed_root: Path, case_label: str
) -> None:
    """While one create with binds is between its check and its create, a create without binds goes ahead
    and one with binds waits for it (and then sees it)."""
    held = ContainerCreateSchema().load(
        {"image": TEST_IMAGE, "volumes": [{"host_path": str(allowed_root / "data"), "container_path": "/d"}]}
    )
    plain = {"image": TEST_IMAGE, "labels": {TEST_LABEL: case_label}}
    with_bind = {**plain, "volumes": [{"host_path": str(allowed_root), "container_path": "/d"}]}
    async with client.app[BIND_LEDGER].adding(docker, held, "held-by-the-test", 30.0):
        resp = await asyncio.wait_for(client.post("/api/v1/containers", json=plain), 30)
        assert resp.status == 201, await resp.json()
        waiting = asyncio.ensure_future(client.post("/api/v1/containers", json=with_bind))
        await asyncio.sleep(1)
        assert not waiting.done()
    resp = await asyncio.wait_for(waiting, 30)
    assert resp.status == 201, await resp.json()
    assert len(await labelled(docker, case_label)) == 2


@pytest.mark.usefixtures("sweep")
async def test_a_create_with_binds_carries_its_own_create_label(
    client: TestClient, docker: aiodocker.Docker, allowed_root: Path, case_label: str
) -> None:
    """The label by which a create that timed out is found: set by moorage, one per create, whatever the client
    sends under that name."""
    labels = {TEST_LABEL: case_label, CREATE_LABEL: "mine"}
    bind = {"host_path": str(allowed_root / "data"), "container_path": "/d"}
    ids = []
    for _ in range(2):
        resp = await client.post("/api/v1/containers", json={"image": TEST_IMAGE, "labels": labels, "volumes": [bind]})
        assert resp.status == 201, await resp.json()
        ids.append((await resp.json())["data"]["id"])
    made = [(await docker.containers.container(i).show())["Config"]["Labels"][CREATE_LABEL] for i in ids]
    assert all(re.fullmatch("[0-9a-f]{32}", value) for value in made) and made[0] != made[1], made


@pytest.mark.parametrize("source", ["//srv/x", "srv/x", "/"])
def test_the_nesting_index_walks_up_any_form_of_path_to_its_end(source: str) -> None:
    """The policy refuses such paths first; the index must still end its walk on them (it looped for ever)."""
    index = _Binds([_Bind("/elsewhere", True, "container a")])
    assert index.problem(_Bind(source, False, "this request")) is None
