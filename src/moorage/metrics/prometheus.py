"""moorage's own series: what runs, whether the engine is reached, and how many engine streams callers hold.

Requests are counted by web/requestmetrics.py, policy stops by containers/bindwatch.py, and the process (CPU,
memory, file descriptors) by prometheus_client's own process collector.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage import __version__
from moorage.engine.streams import EngineStreams
from moorage.metrics.containers import ContainerStats


class DaemonCollector(Collector):
    def __init__(self, stats: ContainerStats, streams: EngineStreams) -> None:
        self._stats = stats
        self._streams = streams

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            "moorage_build", "moorage's version", value={"version": __version__, "python": platform.python_version()}
        )
        yield GaugeMetricFamily(
            "moorage_engine_up", "1 while the Docker engine's events are followed", value=int(self._stats.connected)
        )
        yield GaugeMetricFamily(
            "moorage_streams_open", "Engine streams callers hold (logs, events, stats)", value=self._streams.in_use
        )
