"""Host metrics from the background sampler, its history and staleness, and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

import moorage
from moorage.app import create_app
from moorage.metrics.host import HostSampler
from moorage.settings import MetricsSettings

from ..helpers import SERVER_KWARGS, MakeContainer, make_settings, plain_key


async def app_client(aiohttp_client: Any, tmp_path: Path, key: bool = True, **metrics: Any) -> TestClient:
    settings = make_settings(tmp_path, {"test-admin": "admin"}, metrics=metrics)
    headers = {"X-API-Key": plain_key("test-admin")} if key else {}
    client: TestClient = await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS, headers=headers)
    return client


async def resources(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/api/v1/metrics/resources")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def test_resources_keep_the_references_keys_and_match_the_host(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, interval=0.2)
    await asyncio.sleep(0.5)
    data = await resources(client)
    assert 0 <= data["cpu_usage"] <= 100 and 0 <= data["memory_usage"] <= 100 and 0 <= data["disk_usage"] <= 100
    assert data["memory"]["total"] == psutil.virtual_memory().total
    assert data["memory_usage"] == data["memory"]["percent"]
    root = psutil.disk_usage("/")
    assert data["disks"]["/"]["total"] == root.total and data["disk_usage"] == data["disks"]["/"]["percent"]
    assert len(data["cpu"]["per_core"]) == psutil.cpu_count()
    counters = psutil.net_io_counters()
    assert 0 < data["network"]["rx_bytes"] <= counters.bytes_recv
    assert 0 < data["network"]["tx_bytes"] <= counters.bytes_sent
    assert "lo" in data["network"]["interfaces"]
    assert data["network"]["rx_bytes"] == sum(i["rx_bytes"] for i in data["network"]["interfaces"].values())
    assert len(data["load_average"]) == 3 and data["uptime_seconds"] > 0
    assert abs(datetime.fromisoformat(data["sampled_at"]).timestamp() - time.time()) < 2
    assert data["age_seconds"] < 0.5 and data["stale"] is False


async def test_network_rates_follow_traffic(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, interval=0.2)
    await asyncio.sleep(0.5)
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:  # loopback traffic of our own, over several sampling rounds
        data = await resources(client)
    assert data["network"]["interfaces"]["lo"]["rx_bytes_per_s"] > 0
    assert data["network"]["rx_bytes_per_s"] >= data["network"]["interfaces"]["lo"]["rx_bytes_per_s"]
    assert data["network"]["interfaces"]["lo"]["rx_packets_per_s"] > 0


async def test_a_failing_sampler_keeps_going_and_the_sample_says_it_is_stale(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await app_client(aiohttp_client, tmp_path, interval=0.1)
    await asyncio.sleep(0.3)
    assert (await resources(client))["stale"] is False
    calls = []

    def broken(self: HostSampler) -> None:
        calls.append(1)
        raise OSError("the host is having a bad day")

    monkeypatch.setattr(HostSampler, "sample", broken)
    await asyncio.sleep(0.5)
    data = await resources(client)
    assert data["stale"] is True and data["age_seconds"] >= 0.3
    assert len(calls) >= 3  # it kept trying
    monkeypatch.undo()
    await asyncio.sleep(0.3)
    assert (await resources(client))["stale"] is False


async def test_a_vanished_disk_leaves_the_rest_of_the_sample(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, interval=0.2, disk_paths=["/", str(tmp_path / "gone")])
    await asyncio.sleep(0.5)
    data = await resources(client)
    assert list(data["disks"]) == ["/"]
    assert data["cpu_usage"] is not None


async def test_history_keeps_the_last_seconds(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, interval=0.1, history_seconds=1)
    await asyncio.sleep(1.6)
    resp = await client.get("/api/v1/metrics/resources/history?seconds=0.5")
    items = (await resp.json())["data"]["items"]
    assert 3 <= len(items) <= 7
    stamps = [datetime.fromisoformat(item["sampled_at"]).timestamp() for item in items]
    assert stamps == sorted(stamps) and time.time() - stamps[0] <= 0.7
    everything = (await (await client.get("/api/v1/metrics/resources/history?seconds=3600")).json())["data"]["items"]
    assert len(everything) <= 10  # the ring holds history_seconds / interval samples


@pytest.mark.parametrize("query", ["seconds=0", "seconds=-5", "seconds=soon", "seconds=90000", "window=5"])
async def test_bad_history_parameters_are_a_400(aiohttp_client: Any, tmp_path: Path, query: str) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    resp = await client.get(f"/api/v1/metrics/resources/history?{query}")
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [query.split("=")[0]]


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_prometheus_needs_a_key_and_parses(aiohttp_client: Any, tmp_path: Path) -> None:
    anon = await app_client(aiohttp_client, tmp_path, key=False, interval=0.2)
    assert (await anon.get("/metrics")).status == 401
    client = await app_client(aiohttp_client, tmp_path, interval=0.2)
    await asyncio.sleep(0.5)
    await client.get("/api/v1/metrics/resources")
    await client.get("/api/v1/containers/-bad")
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    found = families(await resp.text())
    idle = [s.value for s in found["node_cpu_seconds"].samples if s.labels["mode"] == "idle"]
    assert len(idle) == psutil.cpu_count() and all(seconds > 0 for seconds in idle)
    assert found["node_memory_MemTotal_bytes"].samples[0].value == psutil.virtual_memory().total
    assert found["moorage_build_info"].samples[0].labels["version"] == moorage.__version__
    assert found["moorage_engine_up"].samples[0].value == 1
    assert found["process_resident_memory_bytes"].samples[0].value > 10 * 2**20
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in found["moorage_http_requests"].samples
        if s.name == "moorage_http_requests_total"
    }
    assert requests[("/api/v1/metrics/resources", "200")] == 1
    assert requests[("/api/v1/containers/{container_id}", "400")] == 1
    assert "moorage_http_request_duration_seconds" in found


async def test_prometheus_can_be_made_public(aiohttp_client: Any, tmp_path: Path) -> None:
    anon = await app_client(aiohttp_client, tmp_path, key=False, public_prometheus=True)
    assert (await anon.get("/metrics")).status == 200
    assert (await anon.get("/api/v1/metrics/resources")).status == 401


async def container_metrics(client: TestClient, ref: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/metrics/containers/{ref}")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def settled(client: TestClient, ref: str, ready: Any, seconds: float = 6) -> dict[str, Any]:
    """The container's metrics once `ready(data)` holds (the engine's readings come a second apart)."""
    data: dict[str, Any] = {}
    for _ in range(int(seconds * 10)):
        data = await container_metrics(client, ref)
        if ready(data):
            return data
        await asyncio.sleep(0.1)
    return data


async def test_a_cpu_burner_shows_its_cpu_within_3_seconds_of_its_start(
    client: TestClient, make_container: MakeContainer
) -> None:
    started = time.monotonic()
    burner = await make_container(cmd=["sh", "-c", "while :; do :; done"], start=True)
    data = await settled(client, burner["Id"], lambda d: d["cpu_percent"] > 50, seconds=3)
    assert data["cpu_percent"] > 50, data
    assert time.monotonic() - started < 4
    assert data["status"] == "running" and data["name"] == burner["Name"].lstrip("/")
    assert data["age_seconds"] < 2 and data["pids"] >= 1


async def test_memory_is_what_the_container_holds(client: TestClient, make_container: MakeContainer) -> None:
    # dd holds one 64 MiB buffer for as long as it copies.
    holder = await make_container(cmd=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=100000000"], start=True)
    data = await settled(client, holder["Name"].lstrip("/"), lambda d: d["memory"]["usage"] > 32 * 2**20)
    assert abs(data["memory"]["usage"] - 64 * 2**20) < 0.1 * 64 * 2**20, data["memory"]
    assert data["memory"]["limit"] > 0 and 0 < data["memory"]["percent"] < 100
    assert "eth0" in data["network"]["interfaces"]


async def test_all_running_containers_in_one_call(client: TestClient, make_container: MakeContainer) -> None:
    made = [await make_container(start=True) for _ in range(3)]
    ids = {m["Id"] for m in made}
    for _ in range(40):
        resp = await client.get("/api/v1/metrics/containers")
        items = (await resp.json())["data"]["items"]
        if ids <= {item["id"] for item in items}:
            break
        await asyncio.sleep(0.1)
    assert ids <= {item["id"] for item in items}
    assert all(item["status"] == "running" and item["age_seconds"] < 2 for item in items)


async def test_a_stopped_container_answers_zeros_and_an_unknown_one_404(
    client: TestClient, make_container: MakeContainer
) -> None:
    created = await make_container()
    data = await container_metrics(client, created["Id"])
    assert data["status"] == "created" and data["cpu_percent"] == 0 and data["memory"]["usage"] == 0
    resp = await client.get("/api/v1/metrics/containers/no-such-container-x")
    assert resp.status == 404
    bad = await client.get("/api/v1/metrics/containers/-x")
    assert bad.status == 400


async def test_prometheus_has_per_container_gauges(client: TestClient, make_container: MakeContainer) -> None:
    running = await make_container(start=True)
    await settled(client, running["Id"], lambda d: d["age_seconds"] < 2)
    found = families(await (await client.get("/metrics")).text())
    names = {s.labels["name"] for s in found["container_memory_working_set_bytes"].samples}
    assert running["Name"].lstrip("/") in names


def test_a_view_of_the_latest_sample_is_made_once_a_sample() -> None:
    sampler = HostSampler(MetricsSettings(interval=1.0, history_seconds=10.0))
    made: list[float] = []

    def view(sample: dict[str, Any]) -> dict[str, Any]:
        made.append(sample["sampled_at"])
        return {"at": sample["sampled_at"]}

    assert sampler.latest_as(view) is None
    sampler.record({"sampled_at": 1.0})
    first = sampler.latest_as(view)
    assert sampler.latest_as(view) is first == {"at": 1.0}
    sampler.record({"sampled_at": 2.0})
    assert sampler.latest_as(view) == {"at": 2.0}
    assert made == [1.0, 2.0]
