"""The host's series named as node_exporter's, for what moorage samples, so that its dashboards work unchanged:
CPU seconds by core and mode (for `rate()`), the kernel's memory figures one series each (never parts of a whole
under one name, which `sum()` would add up), filesystems by mount, interfaces' counters, load and boot time.

They read the sampler's latest sample when scraped, so a scrape never calls psutil.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage.metrics.host import HostSampler
from moorage.timestamps import age_seconds

# node_exporter's modes, as psutil names the fields of /proc/stat (guest time is inside user, as in the kernel).
_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# node_memory_<field>_bytes, from psutil's fields that are /proc/meminfo's own (its `cached` is not: it adds
# SReclaimable).
_MEMORY = (("MemTotal", "memory", "total"), ("MemAvailable", "memory", "available"), ("MemFree", "memory", "free"),
           ("Buffers", "memory", "buffers"), ("SwapTotal", "swap", "total"), ("SwapFree", "swap", "free"))  # fmt: skip
_FILESYSTEM = (
    ("size_bytes", "Filesystem size in bytes.", "size"),
    ("free_bytes", "Filesystem free space in bytes.", "free"),
    ("avail_bytes", "Filesystem space available to non-root users in bytes.", "avail"),
    ("files", "Filesystem total file nodes.", "files"),
    ("files_free", "Filesystem total free file nodes.", "files_free"),
)
_MOUNT = ["device", "fstype", "mountpoint"]
_NETWORK = (
    ("receive_bytes_total", "rx_bytes"),
    ("transmit_bytes_total", "tx_bytes"),
    ("receive_packets_total", "rx_packets"),
    ("transmit_packets_total", "tx_packets"),
)


class HostCollector(Collector):
    def __init__(self, sampler: HostSampler) -> None:
        self._sampler = sampler

    def collect(self) -> Iterator[Metric]:
        sample = self._sampler.latest
        if sample is None:
            return
        yield GaugeMetricFamily(
            "moorage_host_sample_age_seconds", "Age of the host sample", value=age_seconds(sample["sampled_at"])
        )
        if node := self._sampler.node:
            yield from _node(node)
        if network := sample.get("network"):
            for suffix, key in _NETWORK:
                family = CounterMetricFamily(f"node_network_{suffix}", f"Network device statistic {key}.",
                                             labels=["device"])  # fmt: skip
                for device, counters in network["interfaces"].items():
                    family.add_metric([device], counters[key])
                yield family
        if load := sample.get("load_average"):
            for minutes, value in zip(("1", "5", "15"), load, strict=True):
                yield GaugeMetricFamily(f"node_load{minutes}", f"{minutes}m load average.", value=value)


def _node(node: dict[str, Any]) -> Iterator[Metric]:
    cpu = CounterMetricFamily("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"])
    for core, times in enumerate(node["cpu_times"]):
        for mode in _MODES:
            if mode in times:
                cpu.add_metric([str(core), mode], times[mode])
    yield cpu
    for field, part, key in _MEMORY:
        if key in node[part]:
            yield GaugeMetricFamily(f"node_memory_{field}_bytes", f"Memory information field {field}_bytes.",
                                    value=node[part][key])  # fmt: skip
    for suffix, documentation, key in _FILESYSTEM:
        family = GaugeMetricFamily(f"node_filesystem_{suffix}", documentation, labels=_MOUNT)
        for fs in node["filesystems"]:
            family.add_metric([fs["device"], fs["fstype"], fs["mountpoint"]], fs[key])
        yield family
    yield GaugeMetricFamily("node_boot_time_seconds", "Node boot time, in unixtime.", value=node["boot_time"])
