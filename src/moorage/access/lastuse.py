"""When each API key was last used, kept in the state directory, so that an operator can find the keys nobody
uses any more (`moorage keys`).

A use is a dict write; the file is written at most once a minute, and at shutdown, so that a key used on every
request costs no disk write per request. A key's tokens count as its use. Keys are told apart by name and by
their hash's prefix: a key replaced under the same name starts unused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from moorage.settings import ApiKey

FILE = "keys-last-used.json"
WRITE_EVERY = 60.0  # seconds
_LOGGER = logging.getLogger(__name__)


def key_id(key: ApiKey) -> str:
    return key.sha256[:16]


def read_last_used(path: Path) -> dict[str, dict[str, Any]]:
    """The file's records, {name: {"kid", "at"}}; none when it is missing or unreadable (a bad file costs the
    history, never the start)."""
    try:
        records = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        _LOGGER.warning("%s is unreadable (%s): keys' last use starts afresh", path, err)
        return {}
    if not isinstance(records, dict):
        return {}
    return {
        str(name): {"kid": str(record["kid"]), "at": int(record["at"])}
        for name, record in records.items()
        if isinstance(record, dict) and isinstance(record.get("kid"), str) and isinstance(record.get("at"), int)
    }


def last_used(records: dict[str, dict[str, Any]], key: ApiKey) -> int | None:
    """Unix seconds of the key's last use, None when never (or only a former key of its name was used)."""
    record = records.get(key.name)
    return record["at"] if record is not None and record["kid"] == key_id(key) else None


class KeyUse:
    """The keys' last uses in memory, and the file they are written to."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._records = read_last_used(path)
        self._dirty = False

    def touch(self, key: ApiKey) -> None:
        self._records[key.name] = {"kid": key_id(key), "at": int(time.time())}
        self._dirty = True

    def last_used(self, key: ApiKey) -> int | None:
        return last_used(self._records, key)

    def _changes(self) -> bytes | None:
        """The records as the file holds them if any changed since the last write; taken on the loop, where
        uses are recorded, so that no thread reads the records while a request writes them."""
        if not self._dirty:
            return None
        self._dirty = False
        return json.dumps(self._records, sort_keys=True).encode()

    def _store(self, body: bytes) -> None:
        """Replace the file whole (mode 0600): a crash leaves the old one."""
        partial = self._path.with_name(f".{self._path.name}.partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            os.replace(partial, self._path)
        except OSError as err:
            self._dirty = True  # tried again at the next write
            _LOGGER.warning("cannot write %s: %s", self._path, err)

    def write(self) -> None:
        if (body := self._changes()) is not None:
            self._store(body)

    async def writing(self) -> None:
        """For the app's life: changes written every WRITE_EVERY seconds, in a thread (the disk may be slow)."""
        while True:
            await asyncio.sleep(WRITE_EVERY)
            if (body := self._changes()) is not None:
                await asyncio.to_thread(self._store, body)
