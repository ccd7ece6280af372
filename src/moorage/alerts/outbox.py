"""The deliveries still to make and those made lately, in sqlite in the state directory (deliveries.sqlite), so
that a notification outlives a receiver that is down and a restart of moorage: `enqueue` has committed (and
synced) before it returns. A delivery is one notification for one webhook; it is pending until a receiver takes it
(delivered) or it is too old to be worth sending (expired). A delivery whose webhook a reload removed stays
pending: the webhook may come back, and the deliverer expires it otherwise. Finished ones are kept a while for the
API's listing, then pruned."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from moorage.alerts.notifications import Notification

FILE = "deliveries.sqlite"
KEEP_FINISHED = 1000  # finished deliveries kept at most
RETENTION = 7 * 86400.0  # seconds a finished delivery is kept at most

_P = ParamSpec("_P")
_T = TypeVar("_T")

# `seq` is the order deliveries were made in, which the rows' ids (random) and times (a clock may step back) are
# not: a webhook's deliveries go out in that order.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    webhook TEXT NOT NULL,
    notification TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    last_status INTEGER,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'expired')),
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (webhook, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (finished_at) WHERE state != 'pending';
PRAGMA user_version = 1;
"""
_COLUMNS = (
    "id, webhook, notification, created_at, attempts, next_attempt_at, last_error, last_status, state, finished_at"
)


@dataclass(frozen=True)
class Delivery:
    """One notification for one webhook, as the outbox holds it."""

    id: str  # stable across retries: the X-Moorage-Delivery header
    webhook: str
    notification: Notification
    created_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None
    last_status: int | None  # the HTTP status of the last answer; None when there was none (refused, timed out)
    state: str  # pending, delivered or expired
    finished_at: float | None


def _delivery(row: tuple[Any, ...]) -> Delivery:
    """A row of _COLUMNS as a Delivery."""
    id_, webhook, notification, *rest = row
    return Delivery(id_, webhook, Notification.from_json(notification), *rest)


class Outbox:
    """The deliveries' table, on one connection: use it from the thread that made it (AsyncOutbox does)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = state_dir / FILE
        # sqlite would make the file 0644 less the umask, and its -wal and -shm take the file's mode: made first
        # here, 0600, for notifications quote what runs on the host (names, log lines).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path)
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")  # a commit is on the disk, not only past the process
            self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def enqueue(self, notification: Notification, webhook_names: Iterable[str], now: float) -> list[str]:
        """A pending delivery of `notification` to each webhook, due at once; their ids. Committed on return."""
        body = notification.to_json()
        rows = [(uuid.uuid4().hex, name, body, now, now) for name in webhook_names]
        with self._db:
            self._db.executemany(
                "INSERT INTO deliveries (id, webhook, notification, created_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        return [row[0] for row in rows]

    def heads(self, webhook: str | None = None) -> list[Delivery]:
        """The oldest pending delivery of each webhook (or of `webhook`), due or not, oldest first: the only one of
        its webhook's that may be sent, so that a webhook's notifications arrive in the order they were made
        (a newer one would otherwise overtake an older one waiting for its retry)."""
        where, args = ("AND webhook = ?", (webhook,)) if webhook is not None else ("", ())
        heads = f"SELECT MIN(seq) FROM deliveries WHERE state = 'pending' {where} GROUP BY webhook"
        query = f"SELECT {_COLUMNS} FROM deliveries WHERE seq IN ({heads}) ORDER BY seq"
        return [_delivery(row) for row in self._db.execute(query, args)]

    def delivered(self, delivery_id: str, status: int, now: float) -> None:
        self._update(
            "attempts = attempts + 1, last_status = ?, state = 'delivered', finished_at = ?", delivery_id, status, now
        )

    def failed(self, delivery_id: str, error: str, status: int | None, next_at: float) -> None:
        self._update(
            "attempts = attempts + 1, last_error = ?, last_status = ?, next_attempt_at = ?",
            delivery_id,
            error,
            status,
            next_at,
        )

    def expired(self, delivery_id: str, error: str, now: float) -> None:
        self._update("last_error = ?, state = 'expired', finished_at = ?", delivery_id, error, now)

    def _update(self, assignments: str, delivery_id: str, *values: object) -> None:
        with self._db:
            self._db.execute(
                f"UPDATE deliveries SET {assignments} WHERE id = ? AND state = 'pending'", (*values, delivery_id)
            )

    def recent(self, limit: int, webhook: str | None = None, state: str | None = None) -> list[Delivery]:
        """The latest deliveries, newest first, of one webhook and in one state if given: for the API's listing."""
        given = {column: value for column, value in (("webhook", webhook), ("state", state)) if value is not None}
        where = " AND ".join(f"{column} = ?" for column in given) or "1"
        query = f"SELECT {_COLUMNS} FROM deliveries WHERE {where} ORDER BY seq DESC LIMIT ?"
        return [_delivery(row) for row in self._db.execute(query, (*given.values(), limit))]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'").fetchone()[0])

    def prune(self, now: float, keep: int = KEEP_FINISHED, retention: float = RETENTION) -> int:
        """Drop finished deliveries older than `retention` seconds or beyond the newest `keep`; how many."""
        with self._db:
            cursor = self._db.execute(
                "DELETE FROM deliveries WHERE state != 'pending' AND (finished_at < ? OR seq NOT IN"
                " (SELECT seq FROM deliveries WHERE state != 'pending' ORDER BY seq DESC LIMIT ?))",
                (now - retention, keep),
            )
        return cursor.rowcount


class AsyncOutbox:
    """An Outbox on a thread of its own, for the event loop: sqlite's connection stays with the thread that made
    it, and a commit's wait for the disk is not the loop's. `await outbox.call(Outbox.recent, 50)`."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moorage-outbox")
        self._outbox: Outbox | None = None

    async def __aenter__(self) -> AsyncOutbox:
        try:
            self._outbox = await self._run(Outbox, self._state_dir)
        except BaseException:
            self._thread.shutdown(wait=False)
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            await self.call(Outbox.close)
        finally:
            self._outbox = None
            self._thread.shutdown()  # at once: the close was its last work

    async def call(self, method: Callable[Concatenate[Outbox, _P], _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """`method` of the Outbox, on its thread. A call cancelled meanwhile still runs to its end there."""
        if self._outbox is None:
            raise RuntimeError("the outbox is not open")
        return await self._run(functools.partial(method, self._outbox), *args, **kwargs)

    async def _run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, functools.partial(fn, *args, **kwargs))
