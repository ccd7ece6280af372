"""The audit log: one JSON line for every call that changes something and every denied call.

Written to `[audit] path` (default state_dir/audit.log, mode 0600) and to the `moorage.audit` logger,
which journald keeps. It names the key (and the id of the token, when one was used) and the permission the
route needs, never the key itself, and no token, password or environment value: only who, from where, what, on
which object, and the result. A mutating call is refused (503)
when the file cannot be written, rather than carried out unaudited.

A caller without a credential costs nothing to send and must not be able to fill the disk or the journal:
every text field is cut at `MAX_FIELD` characters (marked with its length), and repeated refusals (see
`foldable`) are folded by client and key (callers without a valid credential are one key, null): the first of
a window is written in full, the rest are counted and written as one summary line (`"folded": N`, with the key,
the results and the methods) when the window ends, at the latest when the log is closed. However many addresses
a caller sends from, one key's refusals give at most `MAX_FULL_REFUSALS` full lines a window: past them, those
of clients without a window of their own fold into the key's window of every client (`"client": "*"`).
An authenticated mutating call is never folded.

The file is rotated as logging's RotatingFileHandler rotates, by a writer of its own (a failed write must be
the caller's 503, and the file mode 0600): a line that would take the file past `max_bytes` first moves it to
`.1` (`.1` to `.2`..., the oldest of `keep` dropped), so that a line is never split across files. A reader opens
the files (`snapshot`) under the lock a rotation holds, so that no rotation falls between two of its opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from http import HTTPMethod
from pathlib import Path
from typing import IO, Any

from moorage.access.auditquery import AuditSnapshot
from moorage.access.clientaddr import client_group
from moorage.timestamps import rfc3339

_LOGGER = logging.getLogger("moorage.audit")
DENIED = frozenset({401, 403, 429})
READS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FIELD = 256  # characters of one text field (a path, a target) in an audit or log line
# Clients whose refusals are being counted at most; past it the oldest window is summarised early.
MAX_FOLDED_CLIENTS = 4096
# Full lines of one key's refusals a window, all clients together: an IPv6 caller has a /64 for each request.
MAX_FULL_REFUSALS = 100
EVERY_CLIENT = "*"  # the window of one key's refusals past MAX_FULL_REFUSALS, whatever their client
# A summary counts the methods by name; anything else a client sent is "other", so that a summary stays small.
_METHODS = frozenset(HTTPMethod)
# The window of every client keeps counts of this many client groups at most (the rest are "other"), and its
# summary names the busiest few: whoever floods it is still named.
_CLIENTS_COUNTED = 1024
_CLIENTS_NAMED = 10


def cut(text: str, limit: int = MAX_FIELD) -> str:
    """`text`, or its first `limit` characters and a marker saying how long it was: a line stays small."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[cut: {len(text)} characters]"


def stamp(wall: float | None = None) -> str:
    """An audit line's time (now, or Unix seconds `wall`), to the millisecond."""
    return rfc3339(wall, milliseconds=True)


# A window's name: the client's group (or EVERY_CLIENT) and the key's name (None: no valid credential).
_Fold = tuple[str, str | None]


@dataclass
class _Window:
    """The refusals of one key from one client since the one written in full."""

    opened: float  # monotonic
    first: float | None = None  # wall time of the first refusal counted
    last: float | None = None
    results: Counter[int] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    clients: Counter[str] = field(default_factory=Counter)  # in the window of every client only

    def count(self, result: int, method: str, client: str | None = None) -> None:
        self.last = time.time()
        self.first = self.first or self.last
        self.results[result] += 1
        self.methods[method if method in _METHODS else "other"] += 1
        if client is not None:
            self.clients[client if client in self.clients or len(self.clients) < _CLIENTS_COUNTED else "other"] += 1


@dataclass
class _Spent:
    """The full lines of one key's refusals written since `opened` (monotonic), all clients together."""

    opened: float
    lines: int = 0


def rotated(path: Path, generation: int) -> Path:
    """The audit file `generation` rotations back: `audit.log.1` the newest of them, `audit.log` itself for 0."""
    return path.with_name(f"{path.name}.{generation}") if generation else path


class AuditLog:
    def __init__(
        self,
        path: Path,
        fold_seconds: float = 60.0,
        full_refusals: int = MAX_FULL_REFUSALS,
        max_bytes: int = 0,
        keep: int = 5,
    ) -> None:
        self.path = path
        self.fold_seconds = fold_seconds
        self.full_refusals = full_refusals
        self.max_bytes = max_bytes  # 0: never rotated
        self.keep = keep
        self._file: IO[str] | None = None
        self._size = 0  # bytes in the file being written
        self._rotating = threading.Lock()  # held by a rotation, and by a reader opening the files
        # In the order the windows opened, so that the ended ones are at the front.
        self._windows: OrderedDict[_Fold, _Window] = OrderedDict()
        self._spent: dict[str | None, _Spent] = {}  # by key name: as many as there are keys, and None

    def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file = _opened(self.path)
        self._size = os.fstat(self._file.fileno()).st_size

    def files(self) -> list[Path]:
        """The audit file and its rotations, newest first (some may not exist)."""
        return [rotated(self.path, generation) for generation in range(self.keep + 1)]

    def snapshot(self) -> AuditSnapshot:
        """The files as they are now, to read from any thread: opened while no rotation can run, so that none is
        read twice or missed."""
        with self._rotating:
            return AuditSnapshot(self.files())

    def close(self) -> None:
        """Write what was counted and not yet written, then close."""
        self.flush(everything=True)
        if self._file:
            self._file.close()
            self._file = None

    @property
    def writable(self) -> bool:
        return self._file is not None and not self._file.closed

    def write(self, **entry: Any) -> bool:
        """Append one line; False when it could not be written (the caller has already acted or refused).

        A refusal (see `foldable`) within a window of another of the same key from the same client is counted
        instead, and so is one past the key's full lines of this window.
        """
        self.flush()
        if self.fold_seconds > 0 and foldable(entry) and self._folded(entry):
            return True
        return self._append({k: cut(v) if isinstance(v, str) else v for k, v in entry.items()})

    def _folded(self, entry: dict[str, Any]) -> bool:
        """Count the refusal in its window (True), or open one with it when the key may write one more full line
        (False: the caller writes it)."""
        now = time.monotonic()
        key = entry.get("key")
        own: _Fold = (client_group(entry.get("client")), key)
        window = self._windows.get(own)
        if window is not None:
            window.count(entry.get("result", 0), str(entry.get("method")))
            return True
        if self._spend(key, now):
            self._open(own, now)
            return False
        window = self._windows.get((EVERY_CLIENT, key)) or self._open((EVERY_CLIENT, key), now)
        window.count(entry.get("result", 0), str(entry.get("method")), own[0])
        return True

    def _spend(self, key: str | None, now: float) -> bool:
        """One more full line of `key`'s refusals, if its window has room for it."""
        spent = self._spent.get(key)
        if spent is None or now - spent.opened >= self.fold_seconds:
            spent = self._spent[key] = _Spent(opened=now)
        if spent.lines >= self.full_refusals:
            return False
        spent.lines += 1
        return True

    def _open(self, fold: _Fold, now: float) -> _Window:
        window = self._windows[fold] = _Window(opened=now)
        while len(self._windows) > MAX_FOLDED_CLIENTS:  # early, but nothing counted is lost
            self._summarise(*self._windows.popitem(last=False))
        return window

    def flush(self, everything: bool = False) -> None:
        """Summarise the windows that have ended (all of them with `everything`)."""
        cutoff = time.monotonic() - self.fold_seconds
        while self._windows:
            fold, window = next(iter(self._windows.items()))
            if not everything and window.opened > cutoff:
                break
            del self._windows[fold]
            self._summarise(fold, window)

    async def flushing(self) -> None:
        """Summarise ended windows while the app runs, so that a count is written even if nothing follows."""
        if self.fold_seconds <= 0:
            return
        while True:
            await asyncio.sleep(max(0.1, min(1.0, self.fold_seconds / 4)))
            try:
                self.flush()
            except Exception:  # one bad round must not end the flushing: the next may do
                _LOGGER.exception("audit summaries not written")

    def _summarise(self, fold: _Fold, window: _Window) -> None:
        client, key = fold
        if window.first is not None and window.last is not None:
            self._append(
                {
                    "client": cut(client),
                    "key": key,
                    "folded": window.results.total(),
                    "first": stamp(window.first),
                    "last": stamp(window.last),
                    "results": {str(status): n for status, n in sorted(window.results.items())},
                    "methods": dict(sorted(window.methods.items())),
                    **({"clients": dict(window.clients.most_common(_CLIENTS_NAMED))} if window.clients else {}),
                }
            )

    def _append(self, entry: dict[str, Any]) -> bool:
        line = json.dumps({"time": stamp(), **entry})
        _LOGGER.info(line)
        if self._file is None:  # closed: the caller has acted or refused already, and is told
            _LOGGER.error("audit line not written, the audit log is closed: %s", line)
            return False
        try:
            self._rotate_before(len(line) + 1)  # JSON's ASCII: a character a byte
            self._file.write(line + "\n")
        except (OSError, ValueError):
            _LOGGER.exception("audit line not written: %s", line)
            return False
        self._size += len(line) + 1
        return True

    def _rotate_before(self, size: int) -> None:
        """Rotate when `size` more bytes would take a file that holds something past max_bytes. A rotation that
        fails is logged and the lines go on to the file being written (the next line tries again): none is lost.
        The new file is made before anything is renamed, so that a failure to make it leaves the names alone."""
        if self.max_bytes <= 0 or self._size == 0 or self._size + size <= self.max_bytes:
            return
        assert self._file is not None
        following = self.path.with_name(f"{self.path.name}.new")
        try:
            new = _opened(following)
        except OSError:
            _LOGGER.exception("audit log not rotated: its lines go on to the file it has")
            return
        try:
            with self._rotating:
                for generation in range(self.keep, 0, -1):  # .keep-1 replaces .keep, the oldest; audit.log is .1
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(rotated(self.path, generation - 1), rotated(self.path, generation))
                os.replace(following, self.path)
        except OSError:
            _LOGGER.exception("audit log not rotated: its lines go on to the file it has")
            new.close()
            with contextlib.suppress(OSError):
                following.unlink()
            return
        self._file.close()
        self._file, self._size = new, os.fstat(new.fileno()).st_size


def _opened(path: Path) -> IO[str]:
    """`path` for appending (made 0600), line-buffered: each line reaches the kernel as it is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", buffering=1)


def foldable(entry: dict[str, Any]) -> bool:
    """A refusal that cannot have changed anything: of a call without a valid credential (a 401, a 429, a 400 for
    a key in the URL: no handler ran, and anyone can send them), or of a read. An authenticated mutating call is
    written in full, every time, whatever its result (a 403 for its role or the policy included)."""
    result = entry.get("result")
    return (
        isinstance(result, int) and 400 <= result < 500 and (entry.get("key") is None or entry.get("method") in READS)
    )


def audited(method: str, status: int) -> bool:
    return method not in READS or status in DENIED
