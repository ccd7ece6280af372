"""`GET /system/df` against the real engine, cross-checked with `docker system df` (and `-v`): the four lines'
counts exactly and their sizes as the CLI prints them, this test's own objects to the byte against the engine's
own figures, a container's and a volume's written data, the viewer's access and a bad `verbose`."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.engine.client import engine_json

from ..helpers import TEST_IMAGE, TEST_LABEL, MakeContainer, app_client, assert_error, docker_cli, key_headers

VIEWER = key_headers("viewer-key")
FIVE_MB = 5_000_000
# Another test on the shared engine may make or remove something between two looks: look again this many times.
ATTEMPTS = 10
LINES = {"Images": "images", "Containers": "containers", "Local Volumes": "volumes", "Build Cache": "build_cache"}
MakeVolume = Callable[[], str]


@pytest.fixture
async def viewer(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path)


@pytest.fixture
def make_volume(case_label: str) -> Iterator[MakeVolume]:
    """A volume labelled for this test; every one of them is removed after it."""

    def make() -> str:
        return docker_cli("volume", "create", "--label", f"{TEST_LABEL}={case_label}", f"df-{uuid.uuid4().hex[:10]}")

    yield make
    for name in docker_cli("volume", "ls", "-q", "--filter", f"label={TEST_LABEL}={case_label}").split():
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)


def human(size: float, precision: int = 4) -> str:
    """go-units' HumanSizeWithPrecision, as the CLI prints a size: decimal units, `precision` significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    unit = 0
    while size >= 1000 and unit < len(units) - 1:
        size /= 1000
        unit += 1
    return f"{size:.{precision}g}{units[unit]}"


def printed(line: dict[str, Any], with_percent: bool = True) -> dict[str, str]:
    """A line of moorage's answer as `docker system df --format '{{json .}}'` prints it."""
    reclaimable = human(line["reclaimable"])
    if with_percent and line["size"] > 0:
        reclaimable += f" ({line['reclaimable_percent']}%)"
    return {
        "TotalCount": str(line["count"]),
        "Active": str(line["active"]),
        "Size": human(line["size"]),
        "Reclaimable": reclaimable,
    }


def cli_lines() -> dict[str, dict[str, str]]:
    out = docker_cli("system", "df", "--format", "{{json .}}")
    lines = [json.loads(line) for line in out.splitlines()]
    return {LINES[line.pop("Type")]: line for line in lines}


async def disk_usage(client: TestClient, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/api/v1/system/df{query}", headers=VIEWER)
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["data"])


async def test_totals_are_those_docker_system_df_prints(viewer: TestClient, make_container: MakeContainer) -> None:
    await make_container(cmd=["sh", "-c", f"head -c {FIVE_MB} /dev/zero > /f; sleep 600"], start=True)
    for _ in range(ATTEMPTS):
        before = cli_lines()
        ours = await disk_usage(viewer)
        if before == cli_lines():  # nothing changed on the engine meanwhile
            break
    else:
        pytest.fail(f"the engine's disk usage changed in each of {ATTEMPTS} looks")
    for kind, line in ours.items():
        assert printed(line, with_percent=kind != "build_cache") == before[kind], kind
        assert line["items"] is None
        assert 0 <= line["active"] <= line["count"] and 0 <= line["reclaimable"] <= line["size"], kind


async def test_verbose_items_are_the_engines_figures_and_the_clis(
    viewer: TestClient, make_container: MakeContainer, make_volume: MakeVolume, docker: aiodocker.Docker
) -> None:
    writer = await make_container(cmd=["sh", "-c", f"head -c {FIVE_MB} /dev/zero > /f"], start=True)
    await docker.containers.container(writer["Id"]).wait()
    filled, empty = make_volume(), make_volume()
    volume_writer = await make_container(
        cmd=["sh", "-c", "head -c 1048576 /dev/zero > /data/blob"], host_config={"Binds": [f"{filled}:/data"]}
    )
    await docker.containers.container(volume_writer["Id"]).start()
    await docker.containers.container(volume_writer["Id"]).wait()

    ours = await disk_usage(viewer, "?verbose=true")
    engine = await engine_json(docker, "system/df")
    cli = json.loads(docker_cli("system", "df", "-v", "--format", "{{json .}}"))

    containers = {c["id"]: c for c in ours["containers"]["items"]}
    written = containers[writer["Id"]]
    assert FIVE_MB <= written["size"] < FIVE_MB + 65536  # the file, and a directory entry or two
    assert written["names"] == [writer["Name"].lstrip("/")] and written["image"] == TEST_IMAGE
    assert written["state"] == "exited" and written["status"].startswith("Exited (0)")
    [engine_writer] = [c for c in engine["Containers"] if c["Id"] == writer["Id"]]
    [cli_writer] = [c for c in cli["Containers"] if c["ID"] == writer["Id"]]
    assert written["size"] == engine_writer["SizeRw"] and human(written["size"], 3) == cli_writer["Size"]
    assert written["name"] == cli_writer["Names"] and written["status"] == cli_writer["Status"]
    # The line adds up its own items: the written layer is in its size, and reclaimable as the container is exited.
    line = ours["containers"]
    assert line["count"] == len(line["items"]) and line["size"] == sum(c["size"] for c in line["items"])
    idle = [c for c in line["items"] if c["state"] not in ("running", "paused", "restarting")]
    assert line["reclaimable"] == sum(c["size"] for c in idle) >= FIVE_MB

    volumes = {v["name"]: v for v in ours["volumes"]["items"]}
    assert 1048576 <= volumes[filled]["size"] < 1048576 + 65536 and volumes[filled]["links"] == 1
    assert volumes[empty] == {"name": empty, "driver": "local", "links": 0, "size": 0}
    for name in (filled, empty):
        [engine_volume] = [v for v in engine["Volumes"] if v["Name"] == name]
        [cli_volume] = [v for v in cli["Volumes"] if v["Name"] == name]
        assert volumes[name]["size"] == engine_volume["UsageData"]["Size"]
        assert human(volumes[name]["size"]) == cli_volume["Size"] and str(volumes[name]["links"]) == cli_volume["Links"]
    assert ours["volumes"]["size"] >= volumes[filled]["size"] and ours["volumes"]["active"] >= 1

    test_image_id = writer["Image"]
    [image] = [i for i in ours["images"]["items"] if i["id"] == test_image_id]
    [cli_image] = [i for i in cli["Images"] if i["ID"] == test_image_id]
    [engine_image] = [i for i in engine["Images"] if i["Id"] == test_image_id]
    assert (image["repository"], image["tag"]) == (cli_image["Repository"], cli_image["Tag"])
    assert image["size"] == engine_image["Size"] and human(image["size"], 3) == cli_image["Size"]
    assert human(image["shared_size"]) == cli_image["SharedSize"] and image["shared_size"] == engine_image["SharedSize"]
    assert (
        image["unique_size"] == image["size"] - image["shared_size"]
        and human(image["unique_size"]) == cli_image["UniqueSize"]
    )
    assert image["containers"] >= 2 and image["created_at"].endswith("Z")
    assert ours["build_cache"]["count"] == len(ours["build_cache"]["items"])


async def test_verbose_false_has_no_items(viewer: TestClient) -> None:
    data = await disk_usage(viewer, "?verbose=false")
    assert set(data) == set(LINES.values()) and all(line["items"] is None for line in data.values())


@pytest.mark.parametrize("query", ["verbose=maybe", "verbose=", "verbose=true&verbose=false", "size=true"])
async def test_bad_query_is_a_400_naming_it(viewer: TestClient, query: str) -> None:
    resp = await viewer.get(f"/api/v1/system/df?{query}", headers=VIEWER)
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, 400)
    assert body["errors"][0]["field"] == query.split("=")[0]


async def test_needs_a_key(viewer: TestClient) -> None:
    resp = await viewer.get("/api/v1/system/df")
    assert resp.status == 401
