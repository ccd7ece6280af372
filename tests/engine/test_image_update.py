"""The image-update check against the real engine and the local registries: a new build pushed to the tag a
container runs is seen without a pull (issue 15)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import (
    AUTH_PASSWORD_FILE,
    AUTH_USER,
    PRIVATE_REPO,
    TEST_IMAGE,
    MakeContainer,
    app_client,
    assert_error,
    docker_cli,
    key_headers,
    untag,
)


def build_of(tag: str, content: bytes) -> None:
    """A tiny image of its own (one file), `docker import`ed as `tag`: a build with a digest of its own."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("build")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    subprocess.run(["docker", "import", "-", tag], input=archive.getvalue(), capture_output=True, check=True)


@pytest.fixture
def repository(case_label: str) -> Iterator[str]:
    """A repository of the local registry whose `latest` is the test image (v1) as this test starts."""
    repo = f"127.0.0.1:5000/moorage-test/update-{case_label}"
    docker_cli("tag", TEST_IMAGE, f"{repo}:latest")
    docker_cli("push", "-q", f"{repo}:latest")
    yield repo
    untag(f"{repo}:latest")


async def check(client: Any, container: dict[str, Any], key: str = "viewer-key") -> tuple[int, dict[str, Any]]:
    resp = await client.get(f"/api/v1/containers/{container['Id']}/image-update", headers=key_headers(key))
    return resp.status, await resp.json()


async def test_a_new_build_pushed_to_the_tag_is_an_update_and_nothing_is_pulled(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, repository: str
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    running = await make_container(Image=f"{repository}:latest")
    status, body = await check(client, running)
    assert status == 200, body
    first = body["data"]
    assert first["image"] == f"{repository}:latest" and first["update_available"] is False
    assert first["local_digest"] == first["remote_digest"] and first["local_digest"].startswith("sha256:")
    assert first["checked_at"].endswith("Z")

    build_of(f"{repository}:latest", b"v2")  # the tag now names v2 here, and is pushed: the container runs v1
    docker_cli("push", "-q", f"{repository}:latest")
    v2 = docker_cli("inspect", "-f", "{{.Id}}", f"{repository}:latest")
    docker_cli("rmi", f"{repository}:latest")  # not here any more: only the registry can tell of v2
    status, body = await check(client, running)
    assert status == 200, body
    second = body["data"]
    assert second["update_available"] is True
    assert second["local_digest"] == first["local_digest"] and second["remote_digest"] != first["remote_digest"]
    listed = docker_cli("images", "-q", "--no-trunc", repository).split()
    assert v2 not in listed  # the check pulled nothing


async def test_a_private_registry_is_asked_with_its_configured_credentials(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer
) -> None:
    docker_cli("tag", TEST_IMAGE, f"{PRIVATE_REPO}:latest")
    try:
        made = await make_container(Image=f"{PRIVATE_REPO}:latest")
        without = await app_client(aiohttp_client, tmp_path / "without")
        status, body = await check(without, made)
        assert status >= 400 and status != 500, body
        host = PRIVATE_REPO.split("/")[0]
        credentials = {"host": host, "username": AUTH_USER, "password_file": str(AUTH_PASSWORD_FILE)}
        with_them = await app_client(aiohttp_client, tmp_path / "with", registries=[credentials])
        status, body = await check(with_them, made)
        assert status == 200, body
        assert body["data"]["remote_digest"].startswith("sha256:")
    finally:
        untag(f"{PRIVATE_REPO}:latest")


async def test_a_container_made_from_an_image_id_is_409_and_an_unknown_one_404(
    client: Any, make_container: MakeContainer
) -> None:
    image_id = docker_cli("inspect", "-f", "{{.Id}}", TEST_IMAGE)
    made = await make_container(Image=image_id)
    resp = await client.get(f"/api/v1/containers/{made['Id']}/image-update")
    body = await resp.json()
    assert resp.status == 409
    assert_error(body, 409)
    resp = await client.get("/api/v1/containers/no-such-container-x/image-update")
    assert resp.status == 404
    resp = await client.get("/api/v1/containers/bad%20name/image-update")
    body = await resp.json()
    assert resp.status == 400 and body["errors"][0]["field"] == "container_id"


def listed(body: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    [item] = [item for item in body["data"]["items"] if item["id"] == container["Id"]]
    return item


async def test_the_list_checks_every_container_keeps_a_digest_for_cache_seconds_and_names_each_failure(
    aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer, repository: str
) -> None:
    cached = await app_client(aiohttp_client, tmp_path / "cached", updates={"cache_seconds": 3600})
    fresh = await app_client(aiohttp_client, tmp_path / "fresh", updates={"cache_seconds": 0})
    on_tag = await make_container(Image=f"{repository}:latest")
    by_id = await make_container(Image=docker_cli("inspect", "-f", "{{.Id}}", TEST_IMAGE))

    resp = await cached.get("/api/v1/image-updates", headers=key_headers("viewer-key"))
    body = await resp.json()
    assert resp.status == 200 and body["data"]["total"] == len(body["data"]["items"])
    first = listed(body, on_tag)
    assert first["error"] is None and first["check"]["update_available"] is False
    assert first["name"] == on_tag["Name"].lstrip("/")
    failed = listed(body, by_id)
    assert failed["check"] is None and failed["error"]["code"] == 409 and failed["error"]["message"]

    build_of(f"{repository}:latest", b"v2")
    docker_cli("push", "-q", f"{repository}:latest")
    resp = await cached.get("/api/v1/image-updates", headers=key_headers("viewer-key"))
    again = listed(await resp.json(), on_tag)["check"]
    assert again["update_available"] is False and again["checked_at"] == first["check"]["checked_at"]  # kept
    resp = await fresh.get("/api/v1/image-updates", headers=key_headers("viewer-key"))
    assert listed(await resp.json(), on_tag)["check"]["update_available"] is True
    status, body = await check(cached, on_tag)  # one container's check always asks
    assert status == 200 and body["data"]["update_available"] is True


async def test_the_list_takes_no_parameters(client: Any) -> None:
    resp = await client.get("/api/v1/image-updates?all=1")
    body = await resp.json()
    assert resp.status == 400 and body["errors"][0]["field"] == "all"
