"""The containers' series, named, typed and labelled as cAdvisor's, so that its dashboards and recording rules work
unchanged: counters of seconds and bytes with `_total` (for `rate()`), the working set, and limits from the spec.

Labels are cAdvisor's: `id` (the cgroup), `name`, `image`, and `container_label_<key>` for the labels in
`[metrics] label_allowlist` only, since each value is a series of its own. As in cAdvisor, every series of the
exposition has the same label names, empty where a container lacks the label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage.metrics.containers import ContainerStats
from moorage.metrics.readings import Reading
from moorage.metrics.specs import ContainerSpec
from moorage.selectors import UNSCOPED, Scope

_NOT_A_NAME = re.compile(r"[^a-zA-Z0-9_]")
Part = Callable[[Reading, ContainerSpec], float]
# (name, help, kind, value): one value per container.
_ONE: tuple[tuple[str, str, str, Part], ...] = (
    ("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", "counter",
     lambda r, s: r["counters"]["cpu_user_seconds"]),
    ("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", "counter",
     lambda r, s: r["counters"]["cpu_system_seconds"]),
    ("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", "counter",
     lambda r, s: r["counters"]["cfs_periods"]),
    ("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", "counter",
     lambda r, s: r["counters"]["cfs_throttled_periods"]),
    ("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.",
     "counter", lambda r, s: r["counters"]["cfs_throttled_seconds"]),
    ("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it "
     "was accessed", "gauge", lambda r, s: r["counters"]["memory"]["usage"]),
    ("container_memory_working_set_bytes", "Current working set in bytes.", "gauge",
     lambda r, s: r["counters"]["memory"]["working_set"]),
    ("container_memory_rss", "Size of RSS in bytes.", "gauge", lambda r, s: r["counters"]["memory"]["rss"]),
    ("container_memory_cache", "Number of bytes of page cache memory.", "gauge",
     lambda r, s: r["counters"]["memory"]["cache"]),
    ("container_processes", "Number of processes running inside the container.", "gauge", lambda r, s: r["pids"]),
    ("container_spec_memory_limit_bytes", "Memory limit for the container.", "gauge", lambda r, s: s.memory_limit),
    ("container_spec_cpu_period", "CPU period of the container.", "gauge", lambda r, s: s.cpu_period),
    ("container_spec_cpu_shares", "CPU share of the container.", "gauge", lambda r, s: s.cpu_shares),
    ("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", "gauge",
     lambda r, s: s.started_at),
    ("container_last_seen", "Last time a container was seen by the exporter", "gauge", lambda r, s: r["sampled_at"]),
)  # fmt: skip
# (name, help, the label, where its values are, the counter): one value per interface or device.
_PER: tuple[tuple[str, str, str, str, str], ...] = (
    ("container_network_receive_bytes_total", "Cumulative count of bytes received", "interface", "interfaces",
     "rx_bytes"),
    ("container_network_receive_packets_total", "Cumulative count of packets received", "interface", "interfaces",
     "rx_packets"),
    ("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving",
     "interface", "interfaces", "rx_errors"),
    ("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving",
     "interface", "interfaces", "rx_dropped"),
    ("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", "interface", "interfaces",
     "tx_bytes"),
    ("container_network_transmit_packets_total", "Cumulative count of packets transmitted", "interface",
     "interfaces", "tx_packets"),
    ("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting",
     "interface", "interfaces", "tx_errors"),
    ("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting",
     "interface", "interfaces", "tx_dropped"),
    ("container_fs_reads_bytes_total", "Cumulative count of bytes read", "device", "devices", "read_bytes"),
    ("container_fs_writes_bytes_total", "Cumulative count of bytes written", "device", "devices", "write_bytes"),
    ("container_fs_reads_total", "Cumulative count of reads completed", "device", "devices", "read_ops"),
    ("container_fs_writes_total", "Cumulative count of writes completed", "device", "devices", "write_ops"),
)  # fmt: skip


def label_name(key: str) -> str:
    """`container_label_<key>` with what a Prometheus label name cannot hold made `_`, as cAdvisor does."""
    return "container_label_" + _NOT_A_NAME.sub("_", key)


class ContainerCollector(Collector):
    """The series of the running containers `scope` admits, from the watcher's latest readings and specs."""

    def __init__(self, stats: ContainerStats, allowlist: Sequence[str] = (), scope: Scope = UNSCOPED) -> None:
        self._stats = stats
        # Two keys that become one label name (a.b and a_b): the first one listed wins, as in cAdvisor.
        self._allowlist = {label_name(key): key for key in reversed(allowlist)}
        self._scope = scope

    def collect(self) -> Iterator[Metric]:
        containers = self._stats.specified(self._scope)
        names = ["id", "name", "image", *self._allowlist]
        labelled = [(r, s, self._labels(s)) for r, s in containers]
        for name, documentation, kind, value in _ONE:
            family = _family(kind, name, documentation, names)
            for reading, spec, labels in labelled:
                family.add_metric(labels, value(reading, spec))
            yield family
        usage = CounterMetricFamily(
            "container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", labels=[*names, "cpu"]
        )
        quota = GaugeMetricFamily("container_spec_cpu_quota", "CPU quota of the container.", labels=names)
        for reading, spec, labels in labelled:
            usage.add_metric([*labels, "total"], reading["counters"]["cpu_seconds"])
            if spec.cpu_quota:  # cAdvisor has no quota series for a container without one
                quota.add_metric(labels, spec.cpu_quota)
        yield usage
        yield quota
        for name, documentation, label, where, counter in _PER:
            family = CounterMetricFamily(name, documentation, labels=[*names, label])
            for reading, _, labels in labelled:
                for part, counters in reading["counters"][where].items():
                    family.add_metric([*labels, part], counters[counter])
            yield family
        yield GaugeMetricFamily("container_scrape_error", "1 if there was an error while getting container metrics, "
                                "0 otherwise", value=0 if self._stats.connected else 1)  # fmt: skip

    def _labels(self, spec: ContainerSpec) -> list[str]:
        return [spec.cgroup, spec.name, spec.image, *(spec.labels.get(key, "") for key in self._allowlist.values())]


def _family(kind: str, name: str, documentation: str, labels: list[str]) -> Any:
    if kind == "counter":
        return CounterMetricFamily(name, documentation, labels=labels)
    return GaugeMetricFamily(name, documentation, labels=labels)
