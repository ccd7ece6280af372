"""The figures behind cAdvisor's names, from the engine's stats and inspect records of cgroup v1 and v2 hosts: what
a dashboard computes from them must mean what it means for cAdvisor."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.metrics.cadvisor import label_name
from moorage.metrics.readings import reading
from moorage.metrics.specs import Cgroups, container_spec

MiB = 2**20


def stats(memory_stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "c" * 64,
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_500_000_000, "usage_in_usermode": 3_000_000_000,
                          "usage_in_kernelmode": 500_000_000},
            "system_cpu_usage": 10**12, "online_cpus": 2,
            "throttling_data": {"periods": 40, "throttled_periods": 10, "throttled_time": 250_000_000},
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 10**12 - 2 * 10**9},
        "memory_stats": memory_stats,
        "networks": {"eth0": {"rx_bytes": 1000, "rx_packets": 10, "tx_bytes": 500, "tx_packets": 5, "rx_errors": 1}},
        "blkio_stats": {
            "io_service_bytes_recursive": [{"major": 254, "minor": 0, "op": "Read", "value": 4096},
                                           {"major": 254, "minor": 0, "op": "Write", "value": 8192},
                                           {"major": 254, "minor": 0, "op": "Total", "value": 12288}],
            "io_serviced_recursive": [{"major": 254, "minor": 0, "op": "Write", "value": 2}],
        },
    }  # fmt: skip


V1 = {"usage": 100 * MiB, "limit": 512 * MiB,
      "stats": {"total_rss": 60 * MiB, "total_cache": 40 * MiB, "total_inactive_file": 30 * MiB,
                "rss": 1, "cache": 1, "inactive_file": 1}}  # fmt: skip
V2 = {"usage": 100 * MiB, "limit": 512 * MiB, "stats": {"anon": 60 * MiB, "file": 40 * MiB, "inactive_file": 30 * MiB}}


@pytest.mark.parametrize("memory", [V1, V2], ids=["cgroup v1", "cgroup v2"])
def test_memory_is_read_as_cadvisor_reads_each_cgroup_version(memory: dict[str, Any]) -> None:
    read = reading("c" * 64, stats(memory), "web")
    assert read["counters"]["memory"] == {
        "usage": 100 * MiB,
        "working_set": 70 * MiB,  # usage without the inactive page cache
        "rss": 60 * MiB,
        "cache": 40 * MiB,
    }
    assert read["memory"]["usage"] == 70 * MiB  # the JSON API shows what docker stats shows: the working set


def test_cpu_and_io_are_cumulative_seconds_and_bytes() -> None:
    read = reading("c" * 64, stats(V2), "web")
    counters = read["counters"]
    assert (counters["cpu_seconds"], counters["cpu_user_seconds"], counters["cpu_system_seconds"]) == (3.5, 3.0, 0.5)
    assert (counters["cfs_periods"], counters["cfs_throttled_periods"], counters["cfs_throttled_seconds"]) == (
        40, 10, 0.25,
    )  # fmt: skip
    assert read["cpu_percent"] == 50.0  # half a second of one core over a second of two: docker stats' 50 %
    assert counters["interfaces"]["eth0"]["rx_errors"] == 1 and counters["interfaces"]["eth0"]["tx_dropped"] == 0
    [device] = counters["devices"].values()
    assert device == {"read_bytes": 4096, "write_bytes": 8192, "read_ops": 0, "write_ops": 2}
    assert read["block_io"] == {"read_bytes": 4096, "write_bytes": 8192}


def inspected(host: dict[str, Any]) -> dict[str, Any]:
    return {
        "Id": "a" * 64, "Name": "/web", "Created": "2026-12-04T10:00:00.5Z",
        "Config": {"Image": "nginx:1.27", "Labels": {"app": "shop"}},
        "HostConfig": host, "State": {"StartedAt": "2026-12-04T10:00:01.25Z"},
    }  # fmt: skip


def test_limits_are_the_specs_not_the_hosts() -> None:
    unlimited = container_spec(inspected({"Memory": 0, "NanoCpus": 0}), Cgroups())
    assert (unlimited.memory_limit, unlimited.cpu_quota, unlimited.cpu_period, unlimited.cpu_shares) == (
        0, 0, 100_000, 1024,
    )  # fmt: skip
    # --cpus 1.5 is a quota of 1.5 periods, as the engine writes it to the cgroup.
    cpus = container_spec(inspected({"Memory": 64 * MiB, "NanoCpus": 1_500_000_000, "CpuShares": 512}), Cgroups())
    assert (cpus.memory_limit, cpus.cpu_quota, cpus.cpu_period, cpus.cpu_shares) == (64 * MiB, 150_000, 100_000, 512)
    quota = container_spec(inspected({"CpuQuota": 20_000, "CpuPeriod": 50_000}), Cgroups())
    assert (quota.cpu_quota, quota.cpu_period) == (20_000, 50_000)
    assert (cpus.name, cpus.image, dict(cpus.labels)) == ("web", "nginx:1.27", {"app": "shop"})
    assert (cpus.created_at, cpus.started_at) == pytest.approx((1796378400.5, 1796378401.25), abs=1e-6)


@pytest.mark.parametrize(
    ("driver", "parent", "cgroup"),
    [
        ("cgroupfs", "", "/docker/" + "a" * 64),
        ("cgroupfs", "/ci/jobs", "/ci/jobs/" + "a" * 64),
        ("systemd", "", "/system.slice/docker-" + "a" * 64 + ".scope"),
        ("systemd", "ci-jobs.slice", "/ci.slice/ci-jobs.slice/docker-" + "a" * 64 + ".scope"),
    ],
)
def test_the_id_label_is_the_cgroup_cadvisor_names(driver: str, parent: str, cgroup: str) -> None:
    assert container_spec(inspected({"CgroupParent": parent}), Cgroups(driver)).cgroup == cgroup


def test_label_names_are_made_valid_as_cadvisor_makes_them() -> None:
    assert label_name("com.docker.compose.project") == "container_label_com_docker_compose_project"
    assert label_name("app-tier/1") == "container_label_app_tier_1"
