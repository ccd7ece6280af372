"""Prunes against the real engine, cross-checked with the docker CLI: for each kind a dry run whose list is what
the real prune then removes, with bytes within 1% of the engine's; each filter touching only what it names;
objects in use kept; bad input a 400 naming the field; the roles.

The engine is shared: every prune here, dry or real, carries `label=moorage.test=<this test's label>`, which only
what the test made carries."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from ..helpers import TEST_IMAGE, TEST_LABEL, MakeContainer, app_client, assert_error, docker_cli, finished, key_headers

ADMIN = key_headers("admin-key")
MakeImage = Callable[..., str]
MakeVolume = Callable[..., str]
MakeNetwork = Callable[..., str]


@pytest.fixture
async def admin(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path)


def mine(case_label: str) -> str:
    return f"{TEST_LABEL}={case_label}"


@pytest.fixture
def make_image(case_label: str, tmp_path: Path) -> Iterator[MakeImage]:
    """`docker import` of a file of `size` random bytes (an image of its own layer), labelled for this test;
    every image with the label is removed after it."""

    def make(tag: str, *labels: str, size: int = 200_000) -> str:
        archive = tmp_path / f"{uuid.uuid4().hex}.tar"
        with tarfile.open(archive, "w") as tar:
            info = tarfile.TarInfo("data")
            info.size = size
            tar.addfile(info, io.BytesIO(os.urandom(size)))
        changes = [arg for label in (mine(case_label), *labels) for arg in ("--change", f"LABEL {label}")]
        return docker_cli("import", *changes, str(archive), tag).removeprefix("sha256:")

    yield make
    for image in docker_cli("images", "-aq", "--no-trunc", "--filter", f"label={mine(case_label)}").split():
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)


@pytest.fixture
def make_volume(case_label: str) -> Iterator[MakeVolume]:
    def make(*labels: str) -> str:
        flags = [arg for label in labels for arg in ("--label", label)]
        return docker_cli("volume", "create", "--label", mine(case_label), *flags, f"mp-{uuid.uuid4().hex[:10]}")

    yield make
    for name in docker_cli("volume", "ls", "-q", "--filter", f"label={mine(case_label)}").split():
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture
def make_network(case_label: str) -> Iterator[MakeNetwork]:
    def make(*labels: str) -> str:
        flags = [arg for label in labels for arg in ("--label", label)]
        name = f"mp-{uuid.uuid4().hex[:10]}"
        docker_cli("network", "create", "--label", mine(case_label), *flags, name)
        return name

    yield make
    for name in docker_cli("network", "ls", "-q", "--filter", f"label={mine(case_label)}").split():
        subprocess.run(["docker", "network", "rm", name], capture_output=True, check=False)


async def pruned(client: TestClient, kind: str, case_label: str, *params: tuple[str, str]) -> dict[str, Any]:
    """A prune of `kind` limited to this test's objects; its `data`."""
    query = [("label", mine(case_label)), *params]
    resp = await client.post(f"/api/v1/{kind}/prune", params=query, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["data"])


async def dry_then_real(
    client: TestClient, kind: str, case_label: str, *params: tuple[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    dry = await pruned(client, kind, case_label, ("dry_run", "true"), *params)
    assert dry["dry_run"] is True
    real = await pruned(client, kind, case_label, *params)
    assert real["dry_run"] is False
    return dry, real


def within_a_percent(foretold: int, reclaimed: int) -> None:
    assert reclaimed > 0
    assert abs(foretold - reclaimed) <= reclaimed / 100, (foretold, reclaimed)


def container_ids(case_label: str) -> set[str]:
    return set(docker_cli("ps", "-aq", "--no-trunc", "--filter", f"label={mine(case_label)}").split())


async def test_container_prune_dry_run_is_what_goes(
    admin: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    written = await finished(make_container, docker, "head -c 300000 /dev/urandom > /blob")
    created = (await make_container())["Id"]
    running = (await make_container(start=True))["Id"]
    paused = (await make_container(start=True))["Id"]
    await docker.containers.container(paused).pause()
    red = await finished(make_container, docker, "true", labels={"colour": "red"})
    try:
        sizes = dict(
            line.split(" ", 1)
            for line in docker_cli("ps", "-a", "--size", "--no-trunc", "--format", "{{.ID}} {{.Size}}").splitlines()
        )
        assert sizes[written].startswith("300kB")
        # label_not: the red one is spared; then label: only the red one.
        dry, real = await dry_then_real(admin, "containers", case_label, ("label_not", "colour=red"))
        assert {c["id"] for c in dry["containers"]} == {written, created}
        assert dry["containers"] == real["containers"]
        within_a_percent(dry["reclaimed_bytes"], real["reclaimed_bytes"])
        assert real["reclaimed_bytes"] >= 300_000
        assert container_ids(case_label) == {running, paused, red}
        dry, real = await dry_then_real(admin, "containers", case_label, ("label", "colour=red"))
        assert [c["id"] for c in dry["containers"]] == [red] and dry["containers"] == real["containers"]
        assert container_ids(case_label) == {running, paused}
    finally:
        await docker.containers.container(paused).unpause()


async def test_container_prune_until(admin: TestClient, make_container: MakeContainer, case_label: str) -> None:
    old = (await make_container())["Id"]
    old_second = int(time.time())
    await asyncio.sleep(old_second + 2 - time.time())  # the next container is made two seconds on at least
    new = (await make_container())["Id"]
    for until in (str(old_second + 1), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(old_second + 1))):
        dry = await pruned(admin, "containers", case_label, ("dry_run", "true"), ("until", until))
        assert [c["id"] for c in dry["containers"]] == [old], until
    assert (await pruned(admin, "containers", case_label, ("dry_run", "true"), ("until", "1h")))["containers"] == []
    real = await pruned(admin, "containers", case_label, ("until", str(old_second + 1)))
    assert [c["id"] for c in real["containers"]] == [old]
    assert container_ids(case_label) == {new}


def image_ids(case_label: str) -> set[str]:
    found = docker_cli("images", "-aq", "--no-trunc", "--filter", f"label={mine(case_label)}").split()
    return {image.removeprefix("sha256:") for image in found}


def full(image_id: str) -> str:
    return f"sha256:{image_id}"


async def test_image_prune_dangling_then_all(
    admin: TestClient, make_image: MakeImage, make_container: MakeContainer, case_label: str
) -> None:
    repo = f"moorage-prune-{case_label}"
    old = make_image(f"{repo}:a", size=400_000)
    new = make_image(f"{repo}:a")  # the old one is now dangling
    used_old = make_image(f"{repo}:b")
    await make_container(Image=full(used_old))
    used_new = make_image(f"{repo}:b")  # dangling, but a stopped container uses it
    twice = make_image(f"{repo}:c")
    docker_cli("tag", f"{repo}:c", f"{repo}:d")
    await make_container(Image=f"{repo}:c")
    red = make_image(f"{repo}:e", "colour=red")
    red_cover = make_image(f"{repo}:e")  # red is dangling

    dry, real = await dry_then_real(admin, "images", case_label, ("label_not", "colour=red"))
    assert [(i["id"], i["deleted"], i["untagged"]) for i in dry["images"]] == [(full(old), True, [])]
    assert dry["images"] == real["images"]
    assert dry["images_deleted"] == [{"deleted": full(old)}]
    assert {"deleted": full(old)} in real["images_deleted"]  # and its layer
    within_a_percent(dry["reclaimed_bytes"], real["reclaimed_bytes"])
    assert real["reclaimed_bytes"] >= 400_000
    assert image_ids(case_label) == {new, used_old, used_new, twice, red, red_cover}

    # Every unused image: the tagged ones go; one of two tags goes from the image a container uses (the
    # engine's rmi of each reference), and the dangling one a container uses stays.
    dry, real = await dry_then_real(admin, "images", case_label, ("dangling", "false"), ("label_not", "colour=red"))
    outcomes = {i["id"]: (i["deleted"], i["untagged"]) for i in dry["images"]}
    assert outcomes == {
        full(new): (True, [f"{repo}:a"]),
        full(used_new): (True, [f"{repo}:b"]),
        full(twice): (False, [f"{repo}:c"]),
        full(red_cover): (True, [f"{repo}:e"]),
    }
    assert dry["images"] == real["images"]
    within_a_percent(dry["reclaimed_bytes"], real["reclaimed_bytes"])
    assert image_ids(case_label) == {used_old, twice, red}
    assert docker_cli("images", "--format", "{{.Tag}}", repo).split() == ["d"]


async def test_volume_prune_dry_run_is_what_goes(
    admin: TestClient, make_volume: MakeVolume, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str
) -> None:
    filled = make_volume()
    empty = make_volume()
    red = make_volume("colour=red")
    used = make_volume()
    await make_container(host_config={"Binds": [f"{used}:/v"]})
    filler = await finished(
        make_container, docker, "head -c 500000 /dev/urandom > /v/blob", HostConfig={"Binds": [f"{filled}:/v"]}
    )
    await docker.containers.container(filler).delete()  # the volume is filled, and unused

    dry, real = await dry_then_real(admin, "volumes", case_label, ("label_not", "colour=red"))
    assert {v["name"] for v in dry["volumes"]} == {filled, empty}
    assert dry["volumes"] == real["volumes"]
    within_a_percent(dry["reclaimed_bytes"], real["reclaimed_bytes"])
    left = set(docker_cli("volume", "ls", "-q", "--filter", f"label={mine(case_label)}").split())
    assert left == {red, used}

    resp = await admin.post("/api/v1/volumes/prune", params={"label": mine(case_label), "until": "1h"}, headers=ADMIN)
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, 400)
    assert [e["field"] for e in body["errors"]] == ["until"]


async def test_network_prune_dry_run_is_what_goes(
    admin: TestClient, make_network: MakeNetwork, make_container: MakeContainer, case_label: str
) -> None:
    unused = make_network()
    red = make_network("colour=red")
    attached = make_network()
    await make_container(start=True, host_config={"NetworkMode": attached})
    stopped_only = make_network()
    await make_container(host_config={"NetworkMode": stopped_only})

    dry, real = await dry_then_real(admin, "networks", case_label, ("label_not", "colour=red"))
    # A network only a stopped container uses has no endpoint: the engine prunes it.
    assert {n["name"] for n in dry["networks"]} == {unused, stopped_only}
    assert dry["networks"] == real["networks"]
    left = set(docker_cli("network", "ls", "--format", "{{.Name}}", "--filter", f"label={mine(case_label)}").split())
    assert left == {red, attached}


async def test_system_prune_touches_only_what_the_filter_names(
    admin: TestClient,
    make_container: MakeContainer,
    make_volume: MakeVolume,
    make_network: MakeNetwork,
    make_image: MakeImage,
    docker: aiodocker.Docker,
    case_label: str,
) -> None:
    repo = f"moorage-prune-{case_label}"
    volume = make_volume()
    network = make_network()
    stopped = (await make_container(host_config={"Binds": [f"{volume}:/v"], "NetworkMode": network}))["Id"]
    dangling = make_image(f"{repo}:a")
    image_user = (await make_container(Image=f"{repo}:a"))["Id"]
    kept = make_image(f"{repo}:a")
    # Made from the test image (no label of this test's): a stopped container the prune must leave alone.
    outsider = await docker.containers.create(
        {"Image": TEST_IMAGE, "Cmd": ["true"]}, name=f"mp-{uuid.uuid4().hex[:10]}"
    )
    try:
        dry, real = await dry_then_real(admin, "system", case_label, ("volumes", "true"))
        assert {c["id"] for c in dry["containers"]} == {stopped, image_user}
        assert [n["name"] for n in dry["networks"]] == [network]
        assert [v["name"] for v in dry["volumes"]] == [volume]
        # The image its pruned container used goes too: the containers go first.
        assert [(i["id"], i["deleted"]) for i in dry["images"]] == [(full(dangling), True)]
        assert dry["build_cache"]["skipped"] and dry["build_cache"]["items"] == []
        for kind in ("containers", "networks", "volumes", "images"):
            assert dry[kind] == real[kind], kind
        within_a_percent(dry["reclaimed_bytes"], real["reclaimed_bytes"])
        assert container_ids(case_label) == set()
        assert image_ids(case_label) == {kept}
        assert (await outsider.show())["State"]["Status"] == "created"  # not labelled: not pruned
    finally:
        await outsider.delete(force=True)

    resp = await admin.post(
        "/api/v1/system/prune", params={"label": mine(case_label), "volumes": "true", "until": "1h"}, headers=ADMIN
    )
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == ["until"]


@pytest.mark.parametrize(
    ("route", "params", "field"),
    [
        ("containers", {"until": "yesterday"}, "until"),
        ("containers", {"until": "99999999999999"}, "until"),
        ("networks", {"until": "-1h"}, "until"),
        ("images", {"label": "=x"}, "label.0"),
        ("images", {"dangling": "maybe"}, "dangling"),
        ("system", {"dry_run": "perhaps"}, "dry_run"),
        ("volumes", {"label_not": "a\nb"}, "label_not"),
        ("networks", {"force": "true"}, "force"),
    ],
)
async def test_bad_queries_are_400s_naming_the_field(
    admin: TestClient, route: str, params: dict[str, str], field: str, case_label: str
) -> None:
    resp = await admin.post(f"/api/v1/{route}/prune", params={"label": mine(case_label), **params}, headers=ADMIN)
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert_error(body, 400)
    assert [e["field"] for e in body["errors"]] == [field]


async def test_label_not_is_given_once(admin: TestClient, case_label: str) -> None:
    query = [("label", mine(case_label)), ("label_not", "a"), ("label_not", "b"), ("dry_run", "true")]
    resp = await admin.post("/api/v1/containers/prune", params=query, headers=ADMIN)
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == ["label_not"]


@pytest.mark.parametrize("key", ["viewer-key", "operator-key", None])
async def test_only_admins_prune(admin: TestClient, key: str | None, case_label: str) -> None:
    for route in ("containers", "images", "volumes", "networks", "system"):
        headers = key_headers(key) if key else {}
        resp = await admin.post(f"/api/v1/{route}/prune", params={"label": mine(case_label)}, headers=headers)
        assert resp.status == (403 if key else 401), route


async def test_a_prune_is_audited(
    admin: TestClient, make_container: MakeContainer, docker: aiodocker.Docker, case_label: str, tmp_path: Path
) -> None:
    gone = await finished(make_container, docker, "true")
    await pruned(admin, "containers", case_label, ("until", str(int(time.time()) + 60)))  # made by then
    lines = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    [detail] = [e["detail"] for e in lines if e["path"] == "/api/v1/containers/prune"]
    assert detail["label"] == [mine(case_label)] and detail["dry_run"] is False
    assert isinstance(detail["until"], int)  # the moment the engine was given
    assert detail["containers"] == {"count": 1, "ids": [gone]}
    assert detail["reclaimed_bytes"] == 0
