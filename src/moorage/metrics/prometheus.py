"""Prometheus collectors of the host and the containers, registered in a registry of the app's own.

The host gauges read the sampler's latest sample when scraped, so a scrape never calls psutil.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage.metrics.containers import ContainerStats
from moorage.metrics.host import HostSampler
from moorage.selectors import UNSCOPED, Scope
from moorage.timestamps import age_seconds


class HostCollector(Collector):
    def __init__(self, sampler: HostSampler) -> None:
        self._sampler = sampler

    def collect(self) -> Iterator[Metric]:
        sample = self._sampler.latest
        if sample is None:
            return
        yield _gauge("moorage_host_sample_age_seconds", "Age of the host sample", age_seconds(sample["sampled_at"]))
        if cpu := sample.get("cpu"):
            yield _gauge("moorage_host_cpu_percent", "CPU use over all cores, 0-100", cpu["percent"])
            per_core = GaugeMetricFamily(
                "moorage_host_cpu_core_percent", "CPU use of each core, 0-100", labels=["core"]
            )
            for core, percent in enumerate(cpu["per_core"]):
                per_core.add_metric([str(core)], percent)
            yield per_core
        for part in ("memory", "swap"):
            if usage := sample.get(part):
                family = GaugeMetricFamily(f"moorage_host_{part}_bytes", f"Host {part} in bytes", labels=["kind"])
                for kind, value in usage.items():
                    if kind != "percent":
                        family.add_metric([kind], value)
                yield family
        if disks := sample.get("disks"):
            family = GaugeMetricFamily("moorage_host_disk_bytes", "Disk use in bytes", labels=["path", "kind"])
            for path, usage in disks.items():
                for kind in ("total", "used", "free"):
                    family.add_metric([path, kind], usage[kind])
            yield family
        if network := sample.get("network"):
            traffic = CounterMetricFamily(
                "moorage_host_network_bytes", "Bytes through each interface", labels=["interface", "direction"]
            )
            for interface, counters in network["interfaces"].items():
                traffic.add_metric([interface, "rx"], counters["rx_bytes"])
                traffic.add_metric([interface, "tx"], counters["tx_bytes"])
            yield traffic
        if load := sample.get("load_average"):
            family = GaugeMetricFamily("moorage_host_load_average", "Load average", labels=["minutes"])
            for minutes, value in zip(("1", "5", "15"), load, strict=True):
                family.add_metric([minutes], value)
            yield family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class ContainerCollector(Collector):
    """Per-container gauges from the watcher's latest readings, labelled with id and name."""

    _GAUGES = (
        ("moorage_container_cpu_percent", "CPU use as docker stats shows it (100 per busy core)", ("cpu_percent",)),
        ("moorage_container_memory_usage_bytes", "Memory use without page cache", ("memory", "usage")),
        ("moorage_container_memory_limit_bytes", "Memory limit", ("memory", "limit")),
        ("moorage_container_network_rx_bytes", "Bytes received", ("network", "rx_bytes")),
        ("moorage_container_network_tx_bytes", "Bytes sent", ("network", "tx_bytes")),
        ("moorage_container_block_read_bytes", "Bytes read from block devices", ("block_io", "read_bytes")),
        ("moorage_container_block_write_bytes", "Bytes written to block devices", ("block_io", "write_bytes")),
        ("moorage_container_pids", "Processes and threads", ("pids",)),
    )

    def __init__(self, stats: ContainerStats, scope: Scope = UNSCOPED) -> None:
        self._stats = stats
        self._scope = scope  # a scoped caller's collector has its containers' series only

    def collect(self) -> Iterator[Metric]:
        readings = self._stats.running(self._scope)
        for name, documentation, path in self._GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["id", "name"])
            for reading in readings:
                value: Any = reading
                for key in path:
                    value = value[key]
                family.add_metric([reading["id"], reading["name"]], value)
            yield family
