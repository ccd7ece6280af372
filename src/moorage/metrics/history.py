"""Each container's recent metrics in tiers of ring buffers, so that a chart of the last minutes, day or week costs
no engine call and a bounded memory known in advance.

A tier is (step, span) in seconds, finest first. It keeps a bucket per `step` (bucket = floor(at / step)) for the
last `span`, in ceil(span / step) slots allocated at a container's first reading (slot = bucket % slots). Each slot
also keeps its bucket's number: a slot left from an earlier lap of the ring is then told from the current bucket and
started afresh, never added to. For each of SERIES a bucket holds the min, max, sum and count of its readings, so that
buckets of any fill (a container that started mid-bucket, a coarser step than the tier's) average rightly.

Memory: a slot is 8 bytes (its bucket number) + 6 series * 14 bytes (float32 min, max and sum, uint16 count) = 92
bytes whatever its tier. The default tiers (900 per-second slots, 1,440 per-minute, 1,008 per-10-minute: 3,348 slots)
hold 308,016 bytes of arrays per container, allocated whole at its first reading, and about 1.8 KiB of Python objects
around them (`bytes_per_container` counts both: 310,064 bytes), some 59 MiB for 200 containers. float32 keeps about 7
digits: the sum of a 10-minute bucket (600 readings) is within about 4e-5 of the exact one, relatively, and min and
max are the readings rounded to float32.

Persistence: `snapshot()` copies the arrays on the event loop, where `record` runs, so that no slot is caught half
updated; `Snapshot.write` compresses and writes them in a worker thread; `ContainerHistory.load` reads them back and
answers an empty history for a missing, unreadable or foreign file (a bad file costs the history, never the start).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

SERIES = (
    "cpu_percent",
    "memory_bytes",
    "network_rx_bytes_per_s",
    "network_tx_bytes_per_s",
    "block_read_bytes_per_s",
    "block_write_bytes_per_s",
)
FORMAT_VERSION = 1
Tiers = tuple[tuple[float, float], ...]

_N = len(SERIES)
_EMPTY = -(2**63)  # the bucket number of a slot never written
_MAX_COUNT = 2**16 - 1  # a uint16 count: a bucket this full (18 hours of readings a second) takes no more
_ZERO_COUNTS = array("H", [0]) * _N
_FLOAT32_MAX = 3.4028234663852886e38  # a reading past it would be stored as infinite
# What a container costs beyond its arrays (15 array headers, its ring objects, its dict entry, a 64-character id and
# a short name): 1,792 bytes measured with tracemalloc on CPython 3.11 over 200 containers, rounded up.
_OBJECT_BYTES = 2048
_MAGIC = b"MOORHIST"  # then the header's length (uint32, little-endian), the JSON header, each container's body


class _Ring:
    """One tier of one container: the arrays are indexed by slot (bucket numbers) or by slot * _N + series."""

    __slots__ = ("buckets", "count", "high", "low", "slots", "step", "total")

    def __init__(self, step: float, slots: int) -> None:
        self.step, self.slots = step, slots
        self.buckets = array("q", [_EMPTY]) * slots
        self.low = array("f", [0.0]) * (slots * _N)
        self.high = array("f", [0.0]) * (slots * _N)
        self.total = array("f", [0.0]) * (slots * _N)
        self.count = array("H", [0]) * (slots * _N)

    @property
    def arrays(self) -> tuple[array[Any], ...]:
        """In the order the file holds them."""
        return self.buckets, self.low, self.high, self.total, self.count

    def add(self, at: float, readings: list[tuple[int, float]]) -> None:
        bucket = math.floor(at / self.step)
        slot = bucket % self.slots
        held = self.buckets[slot]
        if held > bucket:
            return  # the slot holds a later lap: this bucket has left the ring (a late reading, or a clock set back)
        base = slot * _N
        if held != bucket:
            self.buckets[slot] = bucket
            self.count[base : base + _N] = _ZERO_COUNTS
        for series, value in readings:
            i = base + series
            n = self.count[i]
            if n == _MAX_COUNT:
                continue
            if n == 0:
                self.low[i] = self.high[i] = self.total[i] = value
            else:
                self.low[i] = min(self.low[i], value)
                self.high[i] = max(self.high[i], value)
                self.total[i] += value
            self.count[i] = n + 1

    def points(self, first: int, last: int, per: int) -> list[dict[str, Any]]:
        """The buckets first..last that have readings, `per` consecutive ones (aligned on multiples of `per`) made
        into one point."""
        groups: dict[int, list[int]] = {}
        # No bucket older than a lap of the ring can be held: a step of weeks must not walk weeks of seconds.
        for bucket in range(max(first, last - self.slots + 1), last + 1):
            slot = bucket % self.slots
            if self.buckets[slot] == bucket:
                groups.setdefault(bucket // per, []).append(slot * _N)
        return [self._point(group * per * self.step, bases) for group, bases in groups.items()]

    def _point(self, at: float, bases: list[int]) -> dict[str, Any]:
        """The point of the slots at `bases`. A series without readings in them is None."""
        low, high, total, count = self.low, self.high, self.total, self.count
        point: dict[str, Any] = {"at": at}
        for series, key in enumerate(SERIES):
            cells = [base + series for base in bases if count[base + series]]
            if not cells:
                point[key] = None
                continue
            if len(cells) == 1:  # the usual case (a tier's own step): spare the generators
                (cell,) = cells
                lowest, highest, mean = low[cell], high[cell], total[cell] / count[cell]
            else:
                lowest, highest = min(low[i] for i in cells), max(high[i] for i in cells)
                mean = sum(total[i] for i in cells) / sum(count[i] for i in cells)
            # A float32 sum may round the mean just past the extremes, between which the true one lies.
            mean = lowest if mean < lowest else highest if mean > highest else mean
            point[key] = {"min": lowest, "avg": mean, "max": highest}
        return point


@dataclass(slots=True)
class _Container:
    name: str
    rings: tuple[_Ring, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every container's history as bytes: taken on the event loop, written in a worker thread."""

    tiers: Tiers
    containers: tuple[tuple[str, str, bytes], ...]  # id, name, the arrays of each tier in turn

    def write(self, path: Path) -> None:
        """Replace the file whole (mode 0600, synced before the rename): a crash leaves the old one. OSError if the
        directory cannot be written."""
        bodies = [zlib.compress(blob, 1) for _, _, blob in self.containers]  # idle containers' arrays are mostly 0
        header = {
            "version": FORMAT_VERSION,
            "byteorder": sys.byteorder,
            "series": list(SERIES),
            "tiers": [list(tier) for tier in self.tiers],
            "containers": [
                {"id": cid, "name": name, "bytes": len(body)}
                for (cid, name, _), body in zip(self.containers, bodies, strict=True)
            ],
        }
        encoded = json.dumps(header, separators=(",", ":")).encode()
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(_MAGIC + len(encoded).to_bytes(4, "little") + encoded)
                for body in bodies:
                    file.write(body)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise


class ContainerHistory:
    """The history of each container that had a reading, until it is forgotten. On the event loop only."""

    def __init__(self, tiers: Sequence[tuple[float, float]]) -> None:
        self._tiers: Tiers = tuple((float(step), float(span)) for step, span in tiers)
        if not self._tiers or any(step <= 0 or span < step for step, span in self._tiers):
            raise ValueError(f"history tiers must be (step, span) with 0 < step <= span: {tiers!r}")
        if [span for _, span in self._tiers] != sorted(span for _, span in self._tiers):
            raise ValueError(f"history tiers must come finest first: {tiers!r}")
        self._geometry = tuple((step, math.ceil(span / step)) for step, span in self._tiers)
        self._containers: dict[str, _Container] = {}
        self._array_bytes = sum(a.itemsize * len(a) for ring in self._new_rings() for a in ring.arrays)

    @property
    def bytes_per_container(self) -> int:
        """The memory one container's history takes: its arrays exactly, plus an estimate of the objects around
        them."""
        return self._array_bytes + _OBJECT_BYTES

    def _new_rings(self) -> tuple[_Ring, ...]:
        return tuple(_Ring(step, slots) for step, slots in self._geometry)

    def record(self, container_id: str, name: str, at: float, values: Mapping[str, float]) -> None:
        """One reading at `at` (Unix seconds). A series missing from `values`, NaN, or past float32's range has no
        reading."""
        container = self._containers.get(container_id)
        if container is None:
            container = self._containers[container_id] = _Container(name, self._new_rings())
        container.name = name
        readings = [
            (series, float(value))
            for series, key in enumerate(SERIES)
            if (value := values.get(key)) is not None and -_FLOAT32_MAX <= value <= _FLOAT32_MAX
        ]
        if readings:
            for ring in container.rings:
                ring.add(at, readings)

    def forget(self, container_id: str) -> None:
        self._containers.pop(container_id, None)

    def retain(self, ids: Iterable[str]) -> None:
        """Forget every container not in `ids`: those removed while the daemon was down, after `load`."""
        kept = set(ids)
        for container_id in [cid for cid in self._containers if cid not in kept]:
            del self._containers[container_id]

    def ids(self) -> list[str]:
        return list(self._containers)

    def name_of(self, container_id: str) -> str:
        """The name of the latest reading. KeyError for an unknown id."""
        return self._containers[container_id].name

    def query(self, container_id: str, seconds: float, step: float | None, now: float) -> dict[str, Any]:
        """The points of the last `seconds` (at most the coarsest tier's span, which the answer's `seconds` then
        says) in buckets of `step`, oldest first, from the finest tier whose span covers `seconds`. `step` is
        rounded up to a multiple of that tier's step (None: the tier's step); the answer says the step used. Each
        point's `at` is its bucket's start; buckets without readings are left out. KeyError for an unknown id."""
        container = self._containers[container_id]
        tier, seconds, per = self._window(seconds, step)
        tier_step = self._tiers[tier][0]
        # Bucket arithmetic in the tier's integers: floor(t / (per * step)) == floor(t / step) // per.
        first = math.floor((now - seconds) / tier_step) // per * per
        last = math.floor(now / tier_step)
        return {
            "id": container_id,
            "name": container.name,
            "seconds": seconds,
            "step": per * tier_step,
            "points": container.rings[tier].points(first, last, per),
        }

    def _window(self, seconds: float, step: float | None) -> tuple[int, float, int]:
        """The tier that answers `seconds`, the seconds it covers of them, and its buckets per point."""
        tier = next((i for i, (_, span) in enumerate(self._tiers) if span >= seconds), len(self._tiers) - 1)
        tier_step, span = self._tiers[tier]
        # The tolerance keeps a step that is a multiple in decimal (0.3 over 0.1) from rounding up to the next one.
        per = 1 if step is None else max(1, math.ceil(step / tier_step - 1e-9))
        return tier, min(seconds, span), per

    def window(self, seconds: float, step: float | None) -> tuple[float, float]:
        """The seconds and the step a query of `seconds` in `step`s is answered in, whatever container it asks of."""
        tier, covered, per = self._window(seconds, step)
        return covered, per * self._tiers[tier][0]

    def snapshot(self) -> Snapshot:
        """A copy of every history, on the event loop: a memory copy of `bytes_per_container` each (about 40 ms for 200
        containers of the default tiers on a slow two-core machine)."""
        return Snapshot(
            self._tiers,
            tuple(
                (cid, c.name, b"".join(a for ring in c.rings for a in ring.arrays))
                for cid, c in self._containers.items()
            ),
        )

    @classmethod
    def load(cls, path: Path, tiers: Sequence[tuple[float, float]]) -> ContainerHistory:
        """The history `Snapshot.write` left at `path`; an empty one if there is none, or it is unreadable, or it was
        written with other tiers (logged)."""
        history = cls(tiers)
        try:
            history._restore(path.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError, zlib.error) as err:
            _LOGGER.warning("%s is unreadable (%s): container history starts afresh", path, err)
        return history

    def _restore(self, data: bytes) -> None:
        """ValueError (or zlib.error) when `data` is not a history this process can take whole."""
        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a container history file")
        start = len(_MAGIC) + 4
        end = start + int.from_bytes(data[len(_MAGIC) : start], "little")
        header = json.loads(data[start:end])
        if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
            version = header.get("version") if isinstance(header, dict) else None
            raise ValueError(f"format version {version!r}, not {FORMAT_VERSION}")
        if header.get("byteorder") != sys.byteorder or header.get("series") != list(SERIES):
            raise ValueError("written with another byte order or other series")
        if header.get("tiers") != [list(tier) for tier in self._tiers]:
            raise ValueError(f"written with tiers {header.get('tiers')!r}, not {[list(t) for t in self._tiers]!r}")
        entries = header.get("containers")
        if not isinstance(entries, list) or not all(_is_entry(entry) for entry in entries):
            raise ValueError("a malformed list of containers")
        if end + sum(entry["bytes"] for entry in entries) != len(data):
            raise ValueError("truncated, or with bytes after the last container")
        containers = {}
        for entry in entries:
            body = zlib.decompressobj()
            # At most the size expected (one byte more to tell a longer body): a forged body cannot swell memory.
            blob = memoryview(body.decompress(data[end : end + entry["bytes"]], self._array_bytes + 1))
            if len(blob) != self._array_bytes or not body.eof:
                raise ValueError(f"container {entry['id']}: not the size of this history's arrays")
            rings = self._new_rings()
            offset = 0
            for a in (a for ring in rings for a in ring.arrays):
                size = a.itemsize * len(a)
                memoryview(a).cast("B")[:] = blob[offset : offset + size]
                offset += size
            containers[entry["id"]] = _Container(entry["name"], rings)
            end += entry["bytes"]
        self._containers = containers


def _is_entry(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("id"), str)
        and isinstance(entry.get("name"), str)
        and type(entry.get("bytes")) is int
        and entry["bytes"] >= 0
    )
