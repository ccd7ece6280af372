"""A real Prometheus (Debian's) scrapes moorage, and the queries of the common cAdvisor and node_exporter dashboards
return series with sensible values: a dashboard built for them shows moorage's figures unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app

from ..helpers import SERVER_KWARGS, MakeContainer, free_port, make_settings, plain_key

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
APP_LABEL = "com.example.app"
BURN = "while :; do :; done"
HALF_A_CORE = {"NanoCpus": 500_000_000}
HOLD = ["dd", "if=/dev/zero", "of=/dev/null", "bs=16M", "count=1000000000"]  # holds 16 MiB while it copies
WRITE = "while :; do dd if=/dev/zero of=/tmp/f bs=1M count=4 conv=fsync 2>/dev/null; sleep 0.5; done"
RECEIVE = "while :; do nc -l -p 9000 >/dev/null; done"
SEND = "while :; do dd if=/dev/zero bs=64k count=16 2>/dev/null | nc -w 1 {address} 9000; sleep 0.2; done"
Check = Callable[[dict[str, float]], bool]
# What each query returns, by its series' grouping label (or "" for one without), for the containers below:
# a burner held to half a core, a holder of 16 MiB under a 64 MiB limit, a writer to its disk, and a sender and a
# receiver over the bridge. The queries are those of Grafana's cAdvisor dashboards (193, 14282, 893) and of
# "Node Exporter Full" (1860), with their $__rate_interval as Grafana makes it for a scrape every second: 4 s at least
# (rate() over a range longer than the data it has would be diluted).
CONTAINER_QUERIES: list[tuple[str, str, Check]] = [
    (
        'sum by (name) (rate(container_cpu_usage_seconds_total{image!="", name=~"pd-.+"}[5s]))',
        "name",
        lambda v: 0.3 < v["pd-burner"] < 0.6 and len(v) == 5,
    ),
    (
        'sum by (name) (rate(container_cpu_usage_seconds_total{name="pd-burner"}[5s])) / sum by (name) '
        '(container_spec_cpu_quota{name="pd-burner"} / container_spec_cpu_period{name="pd-burner"})',
        "name",
        lambda v: 0.6 < v["pd-burner"] <= 1.1,
    ),
    ('rate(container_cpu_cfs_throttled_seconds_total{name="pd-burner"}[5s])', "name", lambda v: v["pd-burner"] > 0),
    (
        'sum by (name) (container_memory_working_set_bytes{name=~"pd-.+"}) / sum by (name) '
        '(container_spec_memory_limit_bytes{name=~"pd-.+"} > 0)',
        "name",
        lambda v: set(v) == {"pd-holder"} and 0.2 < v["pd-holder"] < 0.5,
    ),
    ('container_memory_rss{name="pd-holder"}', "name", lambda v: 15 * 2**20 < v["pd-holder"] < 64 * 2**20),
    ('container_spec_memory_limit_bytes{name="pd-burner"}', "name", lambda v: v["pd-burner"] == 0),
    (
        'sum by (name) (rate(container_network_receive_bytes_total{name=~"pd-.+"}[5s]))',
        "name",
        lambda v: v["pd-receiver"] > 10_000,
    ),
    (
        'sum by (name) (rate(container_network_transmit_bytes_total{name=~"pd-.+"}[5s]))',
        "name",
        lambda v: v["pd-sender"] > 10_000,
    ),
    ('sum by (image) (container_memory_working_set_bytes{image!="", name=~"pd-.+"})', "image", lambda v: len(v) == 1),
    (
        f'count by (container_label_{APP_LABEL.replace(".", "_")}) (container_last_seen{{name=~"pd-.+"}})',
        f"container_label_{APP_LABEL.replace('.', '_')}",
        lambda v: v == {"shop": 5},
    ),
    ('time() - container_start_time_seconds{name="pd-burner"}', "name", lambda v: 0 < v["pd-burner"] < 300),
]
FS_WRITES = 'sum by (name) (rate(container_fs_writes_bytes_total{name=~"pd-.+"}[5s]))'
HOST_QUERIES: list[tuple[str, str, Check]] = [
    (
        "sum by (mode) (rate(node_cpu_seconds_total[5s]))",
        "mode",
        lambda v: {"idle", "user", "system"} <= set(v) and abs(sum(v.values()) - psutil.cpu_count()) < 0.3,
    ),
    ('100 - (avg(rate(node_cpu_seconds_total{mode="idle"}[5s])) * 100)', "", lambda v: 0 <= v[""] <= 100),
    ("node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "", lambda v: 0 < v[""] < 1),
    ("node_memory_MemTotal_bytes", "", lambda v: v[""] == psutil.virtual_memory().total),
    (
        '1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"}',
        "mountpoint",
        lambda v: 0 < v["/"] < 1,
    ),
    ('sum by (device) (rate(node_network_receive_bytes_total{device="lo"}[5s]))', "device", lambda v: v["lo"] > 0),
    ("node_load1", "", lambda v: v[""] >= 0),
    ("time() - node_boot_time_seconds", "", lambda v: v[""] > 60),
    ("moorage_engine_up", "", lambda v: v[""] == 1),
    ("rate(process_cpu_seconds_total[5s])", "", lambda v: 0 < v[""] < 2),
]


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, target: str, key: str) -> AsyncIterator[str]:
    """Prometheus scraping `target` every second with `key`; its URL."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: moorage\n"
        f"    authorization: {{credentials: '{key}'}}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            await process.wait()


async def query(session: aiohttp.ClientSession, url: str, expression: str, by: str) -> dict[str, float]:
    async with session.get(f"{url}/api/v1/query", params={"query": expression}) as resp:
        body = await resp.json()
    assert body["status"] == "success", (expression, body)
    return {series["metric"].get(by, ""): float(series["value"][1]) for series in body["data"]["result"]}


async def until_up(session: aiohttp.ClientSession, url: str, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    target: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/api/v1/targets") as resp:
                active = (await resp.json())["data"]["activeTargets"]
                if active and (target := active[0])["health"] == "up":
                    return target
        await asyncio.sleep(0.5)
    raise AssertionError(f"Prometheus never scraped moorage: {target}")


@pytest.fixture
async def scraped(aiohttp_client: Any, tmp_path: Path, make_container: MakeContainer) -> AsyncIterator[str]:
    """moorage, the containers of the queries, and a Prometheus that has scraped them for ten seconds."""
    settings = make_settings(tmp_path, {"scraper": "viewer"}, metrics={"label_allowlist": [APP_LABEL]})
    client: TestClient = await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS)
    shop = {APP_LABEL: "shop"}
    limited = {"Memory": 64 * 2**20, "MemorySwap": 64 * 2**20}
    await make_container(name="pd-burner", cmd=["sh", "-c", BURN], start=True, labels=shop, host_config=HALF_A_CORE)
    await make_container(name="pd-holder", cmd=HOLD, start=True, labels=shop, host_config=limited)
    await make_container(name="pd-writer", cmd=["sh", "-c", WRITE], start=True, labels=shop)
    receiver = await make_container(name="pd-receiver", cmd=["sh", "-c", RECEIVE], start=True, labels=shop)
    send = SEND.format(address=receiver["NetworkSettings"]["IPAddress"])
    await make_container(name="pd-sender", cmd=["sh", "-c", send], start=True, labels=shop)
    async with prometheus(tmp_path, f"127.0.0.1:{client.port}", plain_key("scraper")) as url:
        async with aiohttp.ClientSession() as session:
            await until_up(session, url)
        await asyncio.sleep(10)
        yield url


async def test_dashboard_queries_return_sensible_series(scraped: str, docker: aiodocker.Docker) -> None:
    """Every query at once, against one Prometheus: a failure lists each query that failed, with what it got."""
    wrong = []
    async with aiohttp.ClientSession() as session:
        for expression, by, check in CONTAINER_QUERIES + HOST_QUERIES:
            values = await query(session, scraped, expression, by)
            if not values or not check(values):
                wrong.append((expression, values))
        # Block I/O is what the engine reports: some kernels (this sandbox's among them) give it none, and then
        # there is no series, as in cAdvisor; where it does, the writer's rate shows.
        writes = await query(session, scraped, FS_WRITES, "name")
    stats = await docker.containers.container("pd-writer").stats(stream=False)
    if stats[0]["blkio_stats"]["io_service_bytes_recursive"]:
        assert writes.get("pd-writer", 0) > 10_000, writes
    else:
        assert "pd-writer" not in writes, writes
    assert not wrong, wrong
