"""The container history fed from the stats watcher's readings, and kept in the state dir across restarts.

Rates are computed here from consecutive readings' counters: a container that restarts starts its counters over,
so its first reading after a start has no rate rather than a negative one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from moorage.background import running
from moorage.metrics.history import ContainerHistory
from moorage.metrics.readings import Reading

_LOGGER = logging.getLogger(__name__)
FILE = "container-history.bin"
_EVERY = 60.0  # seconds between writes: at most once a minute, so the disk is not worn by a copy a second
_RATES = ("network_rx_bytes_per_s", "network_tx_bytes_per_s", "block_read_bytes_per_s", "block_write_bytes_per_s")
_Totals = tuple[float, float, float, float]  # the counters of each of _RATES


def _totals(reading: Reading) -> _Totals:
    """The reading's own totals over its interfaces and devices."""
    network, block = reading["network"], reading["block_io"]
    return network["rx_bytes"], network["tx_bytes"], block["read_bytes"], block["write_bytes"]


class HistoryRecorder:
    def __init__(self, history: ContainerHistory) -> None:
        self.history = history
        self._last: dict[str, tuple[float, _Totals]] = {}  # each running container's last reading: when, totals

    def record(self, container_id: str, reading: Reading) -> None:
        at, totals = reading["sampled_at"], _totals(reading)
        values = {"cpu_percent": reading["cpu_percent"], "memory_bytes": reading["counters"]["memory"]["working_set"]}
        if (last := self._last.get(container_id)) is not None and at > last[0]:
            elapsed = at - last[0]
            for key, now, before in zip(_RATES, totals, last[1], strict=True):
                if now >= before:  # a counter that went back (an interface made again) has no rate this time
                    values[key] = (now - before) / elapsed
        self._last[container_id] = (at, totals)
        self.history.record(container_id, reading["name"], at, values)

    def ended(self, container_id: str, removed: bool) -> None:
        """The container stopped (its next run's counters start from zero), or was removed (its history goes)."""
        self._last.pop(container_id, None)
        if removed:
            self.history.forget(container_id)

    def present(self, ids: Iterable[str]) -> None:
        """The containers the engine has: the history of any other (removed while moorage was away) goes."""
        self.history.retain(ids)


@contextlib.asynccontextmanager
async def kept(history: ContainerHistory, state_dir: Path) -> AsyncIterator[None]:
    """The history written to the state dir once a minute while the context lasts, and once more at its end."""
    path = state_dir / FILE
    writing: asyncio.Future[None] | None = None

    async def write() -> None:
        """One write at a time, and a write cancelled on the loop still ends in its thread: the last to finish
        must be the last taken."""
        nonlocal writing
        if writing is not None:
            await asyncio.wait({writing})
            writing.exception()  # told below by the call that started it, if it was not cancelled meanwhile
        writing = asyncio.ensure_future(asyncio.to_thread(history.snapshot().write, path))
        try:
            await asyncio.shield(writing)
        except OSError as err:
            _LOGGER.warning("container history not written to %s: %s", path, err)
        except Exception:  # never expected; logged, and the next minute tries again
            _LOGGER.exception("container history not written to %s", path)

    async def every_minute() -> None:
        while True:
            await asyncio.sleep(_EVERY)
            await write()

    try:
        async with running(every_minute(), "history writer"):
            yield
    finally:
        await write()


async def loaded(state_dir: Path, tiers: Iterable[tuple[float, float]]) -> ContainerHistory:
    """The history a previous run left, read in a worker thread (about 0.1 s for 200 containers)."""
    return await asyncio.to_thread(ContainerHistory.load, state_dir / FILE, tuple(tiers))
