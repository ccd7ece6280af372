"""Many containers' logs as one, in timestamp order: each container's lines come in order, and the merge holds
a line back until no container can still send an earlier one, or, while following, until it has waited out a
small window (a quiet container cannot hold the others back for longer).

The engine stamps lines as RFC3339NanoFixed in UTC (nine digits, always), so their text sorts as their time.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import heapq
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from moorage.timestamps import rfc3339_fixed

# A source's lines held at most (it is not read further meanwhile): a dump whose containers' logs cover
# different hours holds the later ones back until the earlier are out, and must not hold them all.
HOLD = 10_000
# A followed merge wakes for lines that waited out the window in ticks of an eighth of it, so that it writes them
# in batches: a wake-up for every arrival's deadline cost more than all else it does.
_TICK = 0.125


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a source says of itself (it joined, it stopped): out after every line it sent before."""

    item: Any


Key = TypeVar("Key", bound=Hashable)
# A source sends runs of (timestamp, item), oldest first, and notices.
Piece = list[tuple[str, Any]] | Notice
Source = AsyncGenerator[Piece, None]


class Reorder:
    """The lines of many sources, each in order, released in timestamp order. A line goes out once every live
    source has sent one as late as it (or has ended), or, with a `window`, once it has waited that long.

    The heap holds runs, not lines, and a run goes out in slices (as far as the next run's first line, found by
    bisection): the work is per run, and a run is often hundreds of lines.
    """

    def __init__(self, window: float | None) -> None:
        self._window = window
        # (first stamp held, arrival, source, when it came, its lines, where the held ones begin)
        self._heap: list[tuple[str, int, Hashable, float, list[tuple[str, Any]], int]] = []
        self._arrival = itertools.count()
        self._latest: dict[Hashable, str] = {}  # each live source's latest stamp ("" before its first line)
        # Lines of each source added and let out so far; a notice goes out once the lines before it have, even
        # when a source that began again has added more since.
        self._added: collections.Counter[Hashable] = collections.Counter()
        self._out: collections.Counter[Hashable] = collections.Counter()
        self._after: dict[Hashable, collections.deque[tuple[int, Any]]] = {}
        self._ready: list[Any] = []

    def open(self, source: Hashable) -> None:
        self._latest[source] = ""

    def close(self, source: Hashable) -> None:
        """The source sends no more: it no longer holds the others back."""
        self._latest.pop(source, None)

    def add(self, source: Hashable, lines: list[tuple[str, Any]], now: float) -> None:
        if not lines:
            return
        heapq.heappush(self._heap, (lines[0][0], next(self._arrival), source, now, lines, 0))
        self._added[source] += len(lines)
        if source in self._latest:
            self._latest[source] = max(self._latest[source], lines[-1][0])

    def notice(self, source: Hashable, item: Any) -> None:
        if self.held(source):
            self._after.setdefault(source, collections.deque()).append((self._added[source], item))
        else:
            self._ready.append(item)

    def held(self, source: Hashable) -> int:
        return self._added[source] - self._out[source]

    @property
    def empty(self) -> bool:
        return not self._heap and not self._ready

    def deadline(self) -> float | None:
        """When the oldest held line has waited out the window, and a tick more (None: nothing waits on time)."""
        if self._window is None or not self._heap:
            return None
        return self._heap[0][3] + self._window * (1 + _TICK)

    def due(self, now: float) -> list[Any]:
        out, self._ready = self._ready, []
        floor = min(self._latest.values(), default=None)
        heap = self._heap
        while heap:
            stamp, arrival, source, when, lines, start = heap[0]
            waited = self._window is not None and now - when >= self._window
            if floor is not None and stamp > floor and not waited:
                break
            heapq.heappop(heap)
            # As far as the next run's first line, and, unless these waited out the window, the floor.
            bound = heap[0][0] if heap else None
            if not waited and floor is not None:
                bound = floor if bound is None else min(bound, floor)
            end = len(lines) if bound is None else bisect.bisect_right(lines, bound, lo=start, key=_stamp)
            out.extend(item for _, item in lines[start:end])
            if end < len(lines):
                heapq.heappush(heap, (lines[end][0], arrival, source, when, lines, end))
            self._out[source] += end - start
            after = self._after.get(source)
            while after and after[0][0] <= self._out[source]:
                out.append(after.popleft()[1])
        return out


def _stamp(line: tuple[str, Any]) -> str:
    return line[0]


@dataclass(frozen=True, slots=True)
class Joiner:
    """A source that joins a running merge: `key` (a container's id) and when it began (ns since the epoch)."""

    key: Hashable
    began_ns: int


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a source was read: its latest stamp and how many of its lines had that stamp."""

    stamp: str
    seen: int


# The source of a key: from its start (None), or after what a cursor says was read.
Opener = Callable[[Hashable, Cursor | None], Source]


async def primed(sources: Mapping[Key, Source]) -> dict[Key, Source]:
    """Every source read up to its first piece, all at once, so that a failure to open any of them is raised
    here (every source closed) before the merge is answered."""
    firsts = await asyncio.gather(*(anext(source) for source in sources.values()), return_exceptions=True)
    if failed := next((first for first in firsts if isinstance(first, BaseException)), None):
        for source in sources.values():
            await source.aclose()
        raise failed
    return {key: _led_by(first, source) for (key, source), first in zip(sources.items(), firsts, strict=True)}


async def _led_by(first: Piece, source: Source) -> Source:
    try:
        yield first
        async for piece in source:
            yield piece
    finally:
        await source.aclose()


async def merged(
    sources: Mapping[Hashable, Source],
    opener: Opener,
    joiners: AsyncGenerator[Joiner, None] | None,
    *,
    window: float | None,
    began_ns: int = 0,
    lasting: bool = True,
) -> AsyncGenerator[list[Any], None]:
    """The items of every source and each joiner's, in batches as they are due. The sources were chosen at
    `began_ns`: a joiner that began later, or one that begins again, is read (again, after its cursor) once
    its present source ends: a container that restarted. The merge ends when every source has and, if it is
    `lasting` (a later joiner may be new), when the joiners end too."""
    merge = _Merge(opener, window)
    for key, source in sources.items():
        merge.start(key, began_ns, source)
    upcoming = merge.awaited(anext(joiners)) if joiners is not None else None
    try:
        while merge.busy or (lasting and upcoming is not None):
            deadline = merge.reorder.deadline()
            for future in await merge.completed(deadline):
                if future is upcoming:
                    upcoming = _next_joiner(merge, joiners, upcoming)
                else:
                    merge.received(future)
            if out := merge.reorder.due(merge.clock()):
                yield out
            merge.resume_parked()
    finally:
        await merge.stop(upcoming, joiners)


def _next_joiner(merge: _Merge, joiners: AsyncGenerator[Joiner, None] | None, done: asyncio.Future[Any]) -> Any:
    try:
        joiner = done.result()
    except StopAsyncIteration:
        return None
    merge.joined(joiner)
    assert joiners is not None
    return merge.awaited(anext(joiners))


class _Merge:
    """The sources being read (one read outstanding each), and what is known of each key."""

    def __init__(self, opener: Opener, window: float | None) -> None:
        self.reorder = Reorder(window)
        self.reading: dict[asyncio.Future[Piece], Hashable] = {}
        self._opener = opener
        self.clock = asyncio.get_running_loop().time
        self._sources: dict[Hashable, Source] = {}
        self._began: dict[Hashable, int] = {}
        self._cursors: dict[Hashable, Cursor] = {}
        self._again: dict[Hashable, int] = {}  # keys that began again while read: when
        self._parked: set[Hashable] = set()
        # Reads that completed, in the order they did: one wait for any of them, whatever their number.
        self._completed: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()

    def awaited(self, step: Awaitable[Any]) -> asyncio.Future[Any]:
        future = asyncio.ensure_future(step)
        future.add_done_callback(self._completed.put_nowait)
        return future

    async def completed(self, deadline: float | None) -> list[asyncio.Future[Any]]:
        """The reads that completed, waiting for one until `deadline` (the loop's time; None: as long as it
        takes); none when the deadline came first."""
        done = []
        if self._completed.empty():
            try:
                async with asyncio.timeout_at(deadline):
                    done.append(await self._completed.get())
            except TimeoutError:
                return []
        while not self._completed.empty():
            done.append(self._completed.get_nowait())
        return done

    @property
    def busy(self) -> bool:
        return bool(self.reading or self._parked or not self.reorder.empty)

    def start(self, key: Hashable, began_ns: int, source: Source | None = None) -> None:
        self._sources[key] = source if source is not None else self._opener(key, self._cursor(key))
        self._began[key] = began_ns
        self.reorder.open(key)
        self._read(key)

    def _cursor(self, key: Hashable) -> Cursor | None:
        """Where a key is read from: after its last line, or, when it sent none, from when its last source began
        (a tail of 0, or a grep nothing matched, must not bring its whole past back); a new key from its start."""
        if key in self._cursors:
            return self._cursors[key]
        return Cursor(rfc3339_fixed(self._began[key]), 0) if key in self._began else None

    def joined(self, joiner: Joiner) -> None:
        if joiner.began_ns <= self._began.get(joiner.key, -1):
            return  # a start its present (or last) source already read past
        if joiner.key not in self._sources:
            self.start(joiner.key, joiner.began_ns)
        else:
            self._again[joiner.key] = joiner.began_ns  # it restarted: read it again once its present source ends

    def received(self, future: asyncio.Future[Piece]) -> None:
        key = self.reading.pop(future)
        try:
            piece = future.result()
        except StopAsyncIteration:
            self._ended(key)
            return
        if isinstance(piece, Notice):
            self.reorder.notice(key, piece.item)
        elif piece:
            self.reorder.add(key, piece, self.clock())
            self._cursors[key] = _advanced(self._cursors.get(key), piece)
        if self.reorder.held(key) < HOLD:
            self._read(key)
        else:
            self._parked.add(key)

    def resume_parked(self) -> None:
        for key in [key for key in self._parked if self.reorder.held(key) < HOLD]:
            self._parked.discard(key)
            self._read(key)

    def _read(self, key: Hashable) -> None:
        self.reading[self.awaited(anext(self._sources[key]))] = key

    def _ended(self, key: Hashable) -> None:
        self.reorder.close(key)
        del self._sources[key]
        if key in self._again:
            self.start(key, self._again.pop(key))

    async def stop(self, upcoming: asyncio.Future[Joiner] | None, joiners: AsyncGenerator[Joiner, None] | None) -> None:
        """Every read still outstanding is cancelled and every source (and the joiners) closed, whatever ended
        the merge: their engine streams are closed now, not when they are collected."""
        pending = [*self.reading, *([upcoming] if upcoming is not None else [])]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for source in self._sources.values():
            await source.aclose()
        if joiners is not None:
            await joiners.aclose()


def _advanced(cursor: Cursor | None, lines: list[tuple[str, Any]]) -> Cursor:
    """The cursor after `lines`: their last stamp, and how many lines (these, and before them) had it."""
    last = lines[-1][0]
    same = 0
    for stamp, _ in reversed(lines):
        if stamp != last:
            break
        same += 1
    if same == len(lines) and cursor is not None and cursor.stamp == last:
        same += cursor.seen
    return Cursor(last, same)
