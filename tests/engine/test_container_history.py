"""Container history against the real engine: readings of the stats watcher in tiers, min/avg/max per bucket, kept
across a restart of moorage, gone with the container, and only what a scoped caller may see."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiohttp.test_utils import TestClient

from moorage.api import metrics as metrics_api
from moorage.app import create_app

from ..helpers import SERVER_KWARGS, TEST_LABEL, MakeContainer, make_settings, plain_key

BURN = ["sh", "-c", "while :; do :; done"]
SERIES = (
    "cpu_percent",
    "memory_bytes",
    "network_rx_bytes_per_s",
    "network_tx_bytes_per_s",
    "block_read_bytes_per_s",
    "block_write_bytes_per_s",
)


async def started(aiohttp_client: Any, tmp_path: Path, case_label: str) -> TestClient:
    keys = {"admin": "admin", "scoped": {"role": "viewer", "selector": f"{TEST_LABEL}={case_label},team=a"}}
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, keys)), server_kwargs=SERVER_KWARGS)
    return client


async def history(client: TestClient, ref: str, query: str = "", key: str = "admin") -> dict[str, Any]:
    resp = await client.get(f"/api/v1/metrics/containers/{ref}/history{query}", headers={"X-API-Key": plain_key(key)})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def all_history(client: TestClient, key: str = "admin") -> dict[str, Any]:
    resp = await client.get("/api/v1/metrics/containers/history?seconds=60", headers={"X-API-Key": plain_key(key)})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def points_of(client: TestClient, ref: str, count: int, query: str = "?seconds=60") -> list[dict[str, Any]]:
    """The container's points once it has `count` (a reading a second)."""
    for _ in range(count * 4 + 20):
        points = (await history(client, ref, query))["points"]
        if len(points) >= count:
            return points
        await asyncio.sleep(0.5)
    raise AssertionError(f"{ref} had {len(points)} points, not {count}")


async def test_a_burner_has_a_point_a_second_with_min_avg_max(
    aiohttp_client: Any, tmp_path: Path, case_label: str, make_container: MakeContainer
) -> None:
    client = await started(aiohttp_client, tmp_path, case_label)
    burner = await make_container(cmd=BURN, start=True)
    points = await points_of(client, burner["Id"], 4)
    answer = await history(client, burner["Name"].lstrip("/"), "?seconds=60")
    assert (answer["id"], answer["step"], answer["seconds"]) == (burner["Id"], 1, 60)
    stamps = [datetime.fromisoformat(p["at"]).timestamp() for p in points]
    assert stamps == sorted(stamps) and all(b - a >= 1 for a, b in itertools.pairwise(stamps))
    busy = [p for p in points if p["cpu_percent"]["avg"] > 50]
    assert len(busy) >= len(points) - 2, points  # the first reading or two may come before the loop spins up
    for point in points:
        for series in ("cpu_percent", "memory_bytes"):
            stat = point[series]
            assert stat["min"] <= stat["avg"] <= stat["max"], (series, point)
        assert set(point) == {"at", *SERIES}
    assert all(p["memory_bytes"]["avg"] > 0 for p in points)
    # Five seconds a point: each is the aggregate of up to five of the points a second.
    coarse = await history(client, burner["Id"], "?seconds=60&step=5")
    assert coarse["step"] == 5 and 1 <= len(coarse["points"]) <= len(points) // 5 + 2
    assert max(p["cpu_percent"]["max"] for p in coarse["points"]) == max(p["cpu_percent"]["max"] for p in points)
    # An hour is more than the per-second tier keeps: the per-minute tier answers.
    hour = await history(client, burner["Id"], "?seconds=3600")
    assert hour["step"] == 60 and 1 <= len(hour["points"]) <= 2


async def test_history_outlives_a_restart_of_moorage_and_goes_with_the_container(
    aiohttp_client: Any, tmp_path: Path, case_label: str, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    first = await started(aiohttp_client, tmp_path, case_label)
    kept = await make_container(cmd=BURN, start=True)
    removed = await make_container(cmd=BURN, start=True)
    before = await points_of(first, kept["Id"], 3)
    await points_of(first, removed["Id"], 3)
    await first.close()  # moorage stops: its history is written to the state dir
    await docker.containers.container(removed["Id"]).delete(force=True)
    second = await started(aiohttp_client, tmp_path, case_label)
    after = await points_of(second, kept["Id"], len(before) + 1)  # read again: the engine has been followed
    # All but the last, which a reading after `before` was read may have joined.
    assert after[: len(before) - 1] == before[:-1]
    listed = {item["id"] for item in (await all_history(second))["items"]}
    assert kept["Id"] in listed and removed["Id"] not in listed  # removed while moorage was away


async def test_a_container_never_read_has_no_points(
    aiohttp_client: Any, tmp_path: Path, case_label: str, make_container: MakeContainer
) -> None:
    client = await started(aiohttp_client, tmp_path, case_label)
    created = await make_container()
    answer = await history(client, created["Id"])
    assert answer["points"] == [] and answer["name"] == created["Name"].lstrip("/")
    resp = await client.get("/api/v1/metrics/containers/no-such-x/history", headers={"X-API-Key": plain_key("admin")})
    assert resp.status == 404


async def test_a_scoped_caller_has_the_history_of_its_containers_only(
    aiohttp_client: Any, tmp_path: Path, case_label: str, make_container: MakeContainer
) -> None:
    client = await started(aiohttp_client, tmp_path, case_label)
    inside = await make_container(cmd=BURN, start=True, labels={"team": "a"})
    outside = await make_container(cmd=BURN, start=True, labels={"team": "b"})
    await points_of(client, inside["Id"], 2)
    await points_of(client, outside["Id"], 2)
    assert [item["id"] for item in (await all_history(client, "scoped"))["items"]] == [inside["Id"]]
    assert (await history(client, inside["Id"], key="scoped"))["points"]
    resp = await client.get(
        f"/api/v1/metrics/containers/{outside['Id']}/history", headers={"X-API-Key": plain_key("scoped")}
    )
    assert resp.status == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [("seconds=0", "seconds"), ("seconds=abc", "seconds"), ("step=0.5", "step"), ("steps=5", "steps")],
)
async def test_bad_history_queries_are_a_400_naming_the_field(
    aiohttp_client: Any, tmp_path: Path, case_label: str, query: str, field: str
) -> None:
    client = await started(aiohttp_client, tmp_path, case_label)
    for path in ("/api/v1/metrics/containers/history", "/api/v1/metrics/containers/x1/history"):
        resp = await client.get(f"{path}?{query}", headers={"X-API-Key": plain_key("admin")})
        assert resp.status == 400, await resp.text()
        assert [e["field"] for e in (await resp.json())["errors"]] == [field]


async def test_every_containers_history_beyond_the_points_an_answer_holds_is_a_400_naming_step(
    aiohttp_client: Any, tmp_path: Path, case_label: str, make_container: MakeContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_api, "MAX_POINTS", 50)  # 200,000 points would take 140 containers
    client = await started(aiohttp_client, tmp_path, case_label)
    burner = await make_container(cmd=BURN, start=True)
    await points_of(client, burner["Id"], 1)
    headers = {"X-API-Key": plain_key("admin")}
    resp = await client.get("/api/v1/metrics/containers/history?seconds=60", headers=headers)
    assert resp.status == 400
    [error] = (await resp.json())["errors"]
    found = re.search(r"ask for a step of at least (\d+) s", error["message"])
    assert error["field"] == "step" and found, error
    step = int(found[1])  # 2 for this test's container (and more for any other running beside it)
    coarse = await client.get(f"/api/v1/metrics/containers/history?seconds=60&step={step}", headers=headers)
    assert coarse.status == 200 and (await coarse.json())["data"]["step"] == step
