"""The host sampler: psutil read on a background task, so that handlers answer from the latest sample.

Sampling runs in a worker thread (a disk on a hung mount must not stop the event loop) every
`[metrics] interval` seconds. A failed part of a sample (an interface that vanished, a path no longer
mounted) is logged and left out; a failed sample keeps the last good one, whose age the API shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import psutil

from moorage.background import running
from moorage.settings import MetricsSettings

_LOGGER = logging.getLogger(__name__)
Sample = dict[str, Any]


class HostSampler:
    def __init__(self, settings: MetricsSettings) -> None:
        self._settings = settings
        self._history: deque[Sample] = deque(maxlen=max(1, int(settings.history_seconds / settings.interval)))
        self._previous_net: tuple[float, dict[str, Any]] | None = None
        self._boot = psutil.boot_time()
        self._view: tuple[Sample, Callable[[Sample], Any], Any] | None = None
        self.node: dict[str, Any] | None = None  # the latest sample's node_exporter part
        # psutil's first cpu_percent(None) has nothing to compare with: prime it so the first sample is true.
        psutil.cpu_percent(None)
        psutil.cpu_percent(None, percpu=True)

    @property
    def interval(self) -> float:
        """Seconds between samples, as configured when the sampler started (a reload does not change it)."""
        return self._settings.interval

    def latest_as(self, view: Callable[[Sample], Any]) -> Any:
        """`view` of the latest sample, made once a sample: answers come far more often than samples do."""
        sample = self.latest
        if sample is None:
            return None
        if self._view is None or self._view[0] is not sample or self._view[1] != view:
            self._view = (sample, view, view(sample))
        return self._view[2]

    @property
    def latest(self) -> Sample | None:
        return self._history[-1] if self._history else None

    def history(self, seconds: float) -> list[Sample]:
        since = time.time() - seconds
        return [sample for sample in self._history if sample["sampled_at"] >= since]

    def record(self, sample: Sample) -> None:
        """Keep a sample; on the event loop only, where the handlers read the history. Its node_exporter part is
        kept apart, the latest only: /metrics reads it, the history does not (it is a few KB a core)."""
        self.node = sample.pop("node", self.node)
        self._history.append(sample)

    def sample(self) -> Sample:
        """One reading of the host (in a worker thread); parts that fail are logged and left out."""
        now = time.time()
        sample: Sample = {"sampled_at": now}
        for name, read in self._parts():
            try:
                sample[name] = read(now)
            except Exception:  # one bad part (a vanished disk, say) must not cost the rest
                _LOGGER.warning("host sample: %s failed", name, exc_info=True)
        return sample

    def _parts(self) -> list[tuple[str, Callable[[float], Any]]]:
        return [
            ("cpu", lambda _: {"percent": psutil.cpu_percent(None), "per_core": psutil.cpu_percent(None, percpu=True)}),
            ("memory", lambda _: _usage(psutil.virtual_memory(), "available")),
            ("swap", lambda _: _usage(psutil.swap_memory(), "free")),
            ("disks", lambda _: self._disks()),
            ("network", self._network),
            ("load_average", lambda _: list(psutil.getloadavg())),
            ("uptime_seconds", lambda now: round(now - self._boot, 3)),
            ("node", lambda _: self._node()),
        ]

    def _node(self) -> dict[str, Any]:
        """What node_exporter's names need that the API's parts lack: each core's time in each mode, the kernel's
        own memory figures, and the filesystems of the disk paths with their mounts (left out of the API)."""
        return {
            "cpu_times": [times._asdict() for times in psutil.cpu_times(percpu=True)],
            "memory": psutil.virtual_memory()._asdict(),
            "swap": psutil.swap_memory()._asdict(),
            "filesystems": self._filesystems(),
            "boot_time": self._boot,
        }

    def _filesystems(self) -> list[dict[str, Any]]:
        """The filesystem of each disk path, once each: node_exporter has a series per mount, not per path."""
        # The longest mountpoint holds the path; of mounts stacked on one mountpoint, the last mounted is seen.
        mounts = sorted(reversed(psutil.disk_partitions(all=True)), key=lambda m: len(m.mountpoint), reverse=True)
        found: dict[str, dict[str, Any]] = {}
        for path in self._settings.disk_paths:
            real = os.path.realpath(path)
            mount = next((m for m in mounts if _within(real, m.mountpoint)), None)
            if mount is None or mount.mountpoint in found:
                continue
            try:
                fs = os.statvfs(path)
            except OSError as err:
                _LOGGER.warning("host sample: filesystem of %s: %s", path, err)
                continue
            found[mount.mountpoint] = {
                "mountpoint": mount.mountpoint,
                "device": mount.device,
                "fstype": mount.fstype,
                "size": fs.f_blocks * fs.f_frsize,
                "free": fs.f_bfree * fs.f_frsize,
                "avail": fs.f_bavail * fs.f_frsize,
                "files": fs.f_files,
                "files_free": fs.f_ffree,
            }
        return list(found.values())

    def _disks(self) -> dict[str, Any]:
        disks = {}
        for path in self._settings.disk_paths:
            try:
                disks[path] = _usage(psutil.disk_usage(path), "free")
            except OSError as err:
                _LOGGER.warning("host sample: disk %s: %s", path, err)
        return disks

    def _network(self, now: float) -> dict[str, Any]:
        counters = {name: c._asdict() for name, c in psutil.net_io_counters(pernic=True).items()}
        previous, self._previous_net = self._previous_net, (now, counters)
        interfaces = {name: _traffic(c, previous, name, now) for name, c in counters.items()}
        total = {key: sum(i[key] for i in interfaces.values()) for key in _TRAFFIC_KEYS}
        return {**total, "interfaces": interfaces}


_RATES = {
    "rx_bytes_per_s": "bytes_recv",
    "tx_bytes_per_s": "bytes_sent",
    "rx_packets_per_s": "packets_recv",
    "tx_packets_per_s": "packets_sent",
}
_TRAFFIC_KEYS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", *_RATES)


def _traffic(
    counters: dict[str, int], previous: tuple[float, dict[str, Any]] | None, name: str, now: float
) -> dict[str, float]:
    traffic: dict[str, float] = {
        "rx_bytes": counters["bytes_recv"],
        "tx_bytes": counters["bytes_sent"],
        "rx_packets": counters["packets_recv"],
        "tx_packets": counters["packets_sent"],
    }
    before = previous[1].get(name) if previous else None
    elapsed = now - previous[0] if previous else 0.0
    for key, counter in _RATES.items():
        # A counter that went back (an interface re-created) has no rate this round.
        delta = counters[counter] - before[counter] if before else 0
        traffic[key] = round(delta / elapsed, 1) if elapsed > 0 and delta >= 0 else 0.0
    return traffic


def _within(path: str, mountpoint: str) -> bool:
    return path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")


def _usage(reading: Any, free_field: str) -> dict[str, float]:
    return {
        "percent": reading.percent,
        "total": reading.total,
        "used": reading.used,
        free_field: getattr(reading, free_field),
    }


@contextlib.asynccontextmanager
async def sampling(sampler: HostSampler, interval: float) -> AsyncIterator[None]:
    """Sample at once, then every `interval` seconds, for as long as the context is open."""
    loop = asyncio.get_running_loop()

    async def run() -> None:
        while True:
            started = loop.time()
            try:
                sampler.record(await loop.run_in_executor(None, sampler.sample))
            except Exception:  # one bad round must not stop the sampler
                _LOGGER.exception("host sample failed")
            await asyncio.sleep(max(0.0, interval - (loop.time() - started)))

    async with running(run(), "host sampler"):
        yield
