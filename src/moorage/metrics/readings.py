"""One stats record of the engine in moorage's shape: what the JSON API shows, and the cumulative counters that
Prometheus and the history need.

The API's part is computed as the Docker CLI computes `docker stats` (percent of the cores, memory without the
page cache). The counters are cAdvisor's: CPU time in seconds, the CFS throttling, memory usage, working set,
RSS and cache as cAdvisor reads them for cgroup v1 and v2, and each interface's and each block device's totals.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from typing import Any

Reading = dict[str, Any]
_NANO = 1e9
_INTERFACE_COUNTERS = (
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_dropped",
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_dropped",
)


def reading(container_id: str, stats: Mapping[str, Any], name: str) -> Reading:
    """The engine's record `stats` of the container, as the API shows it, with its `counters` beside."""
    cpu, precpu = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    cpu_delta = usage.get("total_usage", 0) - (precpu.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - precpu.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len(usage.get("percpu_usage") or ()) or 1
    cpu_percent = cpu_delta / system_delta * online * 100 if cpu_delta > 0 and system_delta > 0 else 0.0
    memory = _memory(stats.get("memory_stats") or {})
    limit = (stats.get("memory_stats") or {}).get("limit", 0)
    networks = {interface: _interface(n) for interface, n in (stats.get("networks") or {}).items()}
    devices = _devices(stats.get("blkio_stats") or {})
    return {
        "id": container_id,
        "name": name,
        "status": "running",
        "cpu_percent": round(cpu_percent, 2),
        "online_cpus": online,
        "memory": {
            "usage": memory["working_set"],
            "limit": limit,
            "percent": round(memory["working_set"] / limit * 100, 2) if limit else 0.0,
        },
        "network": {
            "rx_bytes": sum(n["rx_bytes"] for n in networks.values()),
            "tx_bytes": sum(n["tx_bytes"] for n in networks.values()),
            "interfaces": {i: {"rx_bytes": n["rx_bytes"], "tx_bytes": n["tx_bytes"]} for i, n in networks.items()},
        },
        "block_io": {
            "read_bytes": sum(d["read_bytes"] for d in devices.values()),
            "write_bytes": sum(d["write_bytes"] for d in devices.values()),
        },
        "pids": (stats.get("pids_stats") or {}).get("current", 0),
        "sampled_at": time.time(),
        "counters": {
            "cpu_seconds": usage.get("total_usage", 0) / _NANO,
            "cpu_user_seconds": usage.get("usage_in_usermode", 0) / _NANO,
            "cpu_system_seconds": usage.get("usage_in_kernelmode", 0) / _NANO,
            **_throttling(cpu.get("throttling_data") or {}),
            "memory": memory,
            "interfaces": networks,
            "devices": devices,
        },
    }


def idle(container_id: str, name: str, status: str) -> Reading:
    """What a container that is not running uses: nothing."""
    return {
        "id": container_id,
        "name": name,
        "status": status,
        "cpu_percent": 0.0,
        "online_cpus": 0,
        "memory": {"usage": 0, "limit": 0, "percent": 0.0},
        "network": {"rx_bytes": 0, "tx_bytes": 0, "interfaces": {}},
        "block_io": {"read_bytes": 0, "write_bytes": 0},
        "pids": 0,
        "sampled_at": time.time(),
    }


def _memory(memory: Mapping[str, Any]) -> dict[str, int]:
    """cAdvisor's figures: cgroup v1 names its totals total_rss, total_cache and total_inactive_file; v2 has anon,
    file and inactive_file. The working set leaves out the inactive page cache, which the kernel takes back first."""
    usage = memory.get("usage", 0)
    detail = memory.get("stats") or {}
    v1 = "total_inactive_file" in detail
    inactive = detail.get("total_inactive_file" if v1 else "inactive_file", 0)
    return {
        "usage": usage,
        "working_set": usage - inactive if inactive < usage else usage,
        "rss": detail.get("total_rss" if v1 else "anon", 0),
        "cache": detail.get("total_cache" if v1 else "file", 0),
    }


def _throttling(throttling: Mapping[str, Any]) -> dict[str, float]:
    return {
        "cfs_periods": throttling.get("periods", 0),
        "cfs_throttled_periods": throttling.get("throttled_periods", 0),
        "cfs_throttled_seconds": throttling.get("throttled_time", 0) / _NANO,
    }


def _interface(counters: Mapping[str, Any]) -> dict[str, int]:
    return {key: counters.get(key, 0) for key in _INTERFACE_COUNTERS}


def _devices(blkio: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Bytes and operations read and written, per block device (named as the kernel names it, as cAdvisor does)."""
    devices: dict[str, dict[str, int]] = {}
    for source, unit in (("io_service_bytes_recursive", "bytes"), ("io_serviced_recursive", "ops")):
        for entry in blkio.get(source) or ():
            op = str(entry.get("op", "")).lower()
            if op in ("read", "write"):
                device = devices.setdefault(
                    device_name(entry.get("major", 0), entry.get("minor", 0)),
                    {"read_bytes": 0, "write_bytes": 0, "read_ops": 0, "write_ops": 0},
                )
                device[f"{op}_{unit}"] += entry.get("value", 0)
    return devices


@functools.lru_cache(maxsize=256)
def device_name(major: int, minor: int) -> str:
    """`/dev/<name>` of a block device by its numbers, read once from sysfs; `major:minor` where sysfs has none."""
    try:
        return "/dev/" + os.path.basename(os.readlink(f"/sys/dev/block/{major}:{minor}"))
    except OSError:
        return f"{major}:{minor}"
