"""Images against the real engine and the local registries: list, pull (plain, streamed, shared, private), delete."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.web.state import PULLS

from ..helpers import (
    AUTH_PASSWORD_FILE,
    AUTH_USER,
    PRIVATE_REPO,
    SCRATCH_REPO,
    SERVER_KWARGS,
    TEST_IMAGE,
    TEST_REPO,
    MakeContainer,
    assert_error,
    docker_cli,
    free_port,
    make_settings,
    plain_key,
)


async def list_images(client: TestClient, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/api/v1/images{query}")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def test_list_items_describe_the_image(
    client: TestClient, docker: aiodocker.Docker, make_container: MakeContainer
) -> None:
    await make_container()
    data = await list_images(client, f"?reference={TEST_REPO}")
    assert data["total"] == 1
    [item] = data["items"]
    engine = await docker.images.inspect(TEST_IMAGE)
    assert item["id"] == engine["Id"]
    assert TEST_IMAGE in item["tags"]
    assert item["digests"] and all(d.startswith(f"{TEST_REPO}@sha256:") for d in item["digests"])
    assert item["size"] == engine["Size"]
    assert item["created_at"].endswith("Z") and datetime.fromisoformat(item["created_at"])
    assert item["containers"] >= 1


async def test_reference_is_a_glob(client: TestClient) -> None:
    found = await list_images(client, "?reference=127.0.0.1:5000/moorage-test/*")
    assert any(TEST_IMAGE in item["tags"] for item in found["items"])
    assert (await list_images(client, "?reference=no-such-repo-*"))["total"] == 0


async def test_dangling_images_have_no_tags_and_paging_keeps_the_total(client: TestClient) -> None:
    dangling = await list_images(client, "?dangling=true")
    assert all(item["tags"] == [] for item in dangling["items"])
    everything = await list_images(client)
    page = await list_images(client, "?limit=1&offset=0")
    assert page["total"] == everything["total"] and len(page["items"]) == min(1, everything["total"])
    assert await list_images(client, f"?offset={everything['total']}") == {"total": everything["total"], "items": []}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("offset=-2", "offset"),
        ("dangling=maybe", "dangling"),
        ("reference=a b", "reference"),
        ("all=1", "all"),
    ],
)
async def test_bad_list_parameters_are_a_400(client: TestClient, query: str, field: str) -> None:
    resp = await client.get(f"/api/v1/images?{query}")
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]


async def test_plain_pull_waits_and_answers_the_image(
    client: TestClient, docker: aiodocker.Docker, pushed_only: str
) -> None:
    resp = await client.post("/api/v1/images/pull", json={"name": pushed_only})
    assert resp.status == 200, await resp.text()
    item = (await resp.json())["data"]
    assert f"{pushed_only}:latest" in item["tags"]
    assert item["id"] == (await docker.images.inspect(f"{pushed_only}:latest"))["Id"]


@pytest.mark.parametrize("ask", ["query", "accept"])
async def test_streamed_pull_writes_progress_lines_as_they_come(client: TestClient, pushed_only: str, ask: str) -> None:
    kwargs: dict[str, Any] = (
        {"params": {"stream": "true"}} if ask == "query" else {"headers": {"Accept": "application/x-ndjson"}}
    )
    resp = await client.post("/api/v1/images/pull", json={"name": pushed_only, "tag": "latest"}, **kwargs)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert "Content-Length" not in resp.headers
    lines = []
    while line := await resp.content.readline():  # one chunk at a time, as the engine sends them
        lines.append(json.loads(line))
    *progress, final = lines
    assert progress and all("status" in event for event in progress)
    assert any(event.get("id") for event in progress)
    assert final["status"] == "done"
    assert f"{pushed_only}:latest" in final["image"]["tags"]


async def test_a_missing_tag_is_a_404(client: TestClient) -> None:
    resp = await client.post("/api/v1/images/pull", json={"name": TEST_REPO, "tag": "no-such-tag"})
    assert resp.status == 404
    body = await resp.json()
    assert_error(body, 404)
    assert "no-such-tag" in body["message"]
    streamed = await client.post("/api/v1/images/pull?stream=true", json={"name": TEST_REPO, "tag": "no-such-tag"})
    assert streamed.status == 404


async def test_a_stopped_registry_is_a_502(client: TestClient) -> None:
    resp = await client.post("/api/v1/images/pull", json={"name": f"127.0.0.1:{free_port()}/moorage-test/x"})
    assert resp.status == 502
    body = await resp.json()
    assert_error(body, 502)
    assert "connection refused" in body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "UPPER/case"}, "name"),
        ({"name": "busybox:latest"}, "name"),
        ({"name": TEST_REPO, "tag": "bad tag"}, "tag"),
        ({"name": TEST_REPO, "tag": ".dot"}, "tag"),
        ({"name": TEST_REPO, "auth": "x"}, "auth"),
    ],
)
async def test_a_malformed_pull_is_a_400_naming_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    resp = await client.post("/api/v1/images/pull", json=body)
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]


async def test_two_concurrent_pulls_share_one_engine_pull(client: TestClient, pushed_only: str) -> None:
    hub = client.app[PULLS]
    before = hub.engine_pulls

    async def pull() -> list[dict[str, Any]]:
        resp = await client.post("/api/v1/images/pull?stream=true", json={"name": pushed_only})
        return [json.loads(line) async for line in resp.content]

    first, second = await asyncio.gather(pull(), pull())
    assert first[-1]["status"] == second[-1]["status"] == "done"
    assert hub.engine_pulls == before + 1


async def test_a_client_that_leaves_does_not_abort_another_and_leaves_no_task(
    client: TestClient, pushed_only: str
) -> None:
    leaving = await client.post("/api/v1/images/pull?stream=true", json={"name": pushed_only})
    staying = await client.post("/api/v1/images/pull?stream=true", json={"name": pushed_only})
    assert await leaving.content.readline()
    leaving.close()
    lines = [json.loads(line) async for line in staying.content]
    assert lines[-1]["status"] == "done"
    await asyncio.sleep(0.1)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("pull ")]


@pytest.fixture
async def private_client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    """A client of an app whose config holds the auth registry's credentials, as a password_file."""
    settings = make_settings(
        tmp_path,
        {"test-admin": "admin"},
        registries=[
            {"host": PRIVATE_REPO.split("/")[0], "username": AUTH_USER, "password_file": str(AUTH_PASSWORD_FILE)}
        ],
    )
    return await aiohttp_client(
        create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("test-admin")}
    )


async def untag(docker: aiodocker.Docker, reference: str) -> None:
    try:
        await docker.images.delete(reference)
    except aiodocker.DockerError as err:
        if err.status != 404:
            raise


@pytest.fixture
async def private_absent(docker: aiodocker.Docker) -> AsyncIterator[None]:
    """The private image is not on this host before or after the test."""
    await untag(docker, f"{PRIVATE_REPO}:latest")
    yield
    await untag(docker, f"{PRIVATE_REPO}:latest")


async def test_a_private_registry_without_credentials_is_a_502(client: TestClient, private_absent: None) -> None:
    resp = await client.post("/api/v1/images/pull", json={"name": PRIVATE_REPO})
    assert resp.status == 502
    assert "basic auth" in (await resp.json())["message"] or "unauthorized" in (await resp.json())["message"]


async def test_a_private_registry_is_reached_with_the_configured_credentials_which_stay_secret(
    private_client: TestClient, private_absent: None, caplog: pytest.LogCaptureFixture
) -> None:
    password = AUTH_PASSWORD_FILE.read_text().strip()
    with caplog.at_level(logging.DEBUG):
        resp = await private_client.post("/api/v1/images/pull?stream=true", json={"name": PRIVATE_REPO})
        text = await resp.text()
    assert resp.status == 200
    assert json.loads(text.splitlines()[-1])["status"] == "done"
    assert password not in text
    assert password not in caplog.text
    assert password not in repr(private_client.app)


async def test_delete_untags_and_answers_the_engines_list(
    client: TestClient, docker: aiodocker.Docker, case_label: str
) -> None:
    extra = f"127.0.0.1:5000/moorage-test/delete-{case_label}"
    await docker.images.tag(TEST_IMAGE, extra, tag="v1")
    resp = await client.delete(f"/api/v1/images/{extra}:v1")
    assert resp.status == 200
    assert (await resp.json())["data"] == {"untagged": [f"{extra}:v1"], "deleted": []}
    with pytest.raises(aiodocker.DockerError):
        await docker.images.inspect(f"{extra}:v1")


async def test_deleting_an_image_in_use_is_a_409_naming_the_container(
    client: TestClient, docker: aiodocker.Docker, make_container: MakeContainer, case_label: str
) -> None:
    # An image of this test's own, so that the container the engine names can only be this one.
    image = f"{SCRATCH_REPO}/in-use:{case_label}"
    base = await make_container()
    docker_cli("commit", "--change", f"LABEL case={case_label}", base["Id"], image)
    container = await make_container(Image=image)
    image_id = (await docker.images.inspect(image))["Id"]
    resp = await client.delete(f"/api/v1/images/{image_id}")
    assert resp.status == 409
    body = await resp.json()
    assert_error(body, 409)
    assert container["Id"][:12] in body["message"]
    assert (await docker.images.inspect(image))["Id"] == image_id


@pytest.mark.parametrize(("ref", "status"), [("sha256:" + "0" * 64, 404), ("no-such-image:v9", 404), ("BAD..ref", 400)])
async def test_delete_unknown_or_malformed(client: TestClient, ref: str, status: int) -> None:
    resp = await client.delete(f"/api/v1/images/{ref}")
    assert resp.status == status
    assert_error(await resp.json(), status)
