"""The record of a recreate in flight, in the state dir, so that one cut by moorage's own end is settled.

A recreate writes its record before it creates the new container and again before each step that cannot
be taken back silently (stopping the old, then committing to the new). At start-up, each record left is
settled: a recreate that had not committed is undone (the new container removed, the old one started
again if it ran), one that had is finished (the old removed or kept, the new named and running). Either
way the host ends with one container of the name, running, and the record goes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiodocker
from aiodocker.exceptions import DockerError

from moorage.engine.errors import ENGINE_CALL_ERRORS

_LOGGER = logging.getLogger(__name__)
# Seconds to wait for a stop the engine may still be making: a container's stop timeout is rarely above a minute.
_STOP_WAIT = 300.0


@dataclass
class RecreateRecord:
    old_id: str
    name: str
    temp_name: str
    keep_old: bool
    kept_name: str
    old_running: bool = False
    new_id: str | None = None
    stopping: bool = False
    committed: bool = False


class RecreateJournal:
    """One JSON file per recreate in flight, written whole (a temporary file renamed over it, synced)."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "recreates"

    def write(self, record: RecreateRecord) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".record.")
        with os.fdopen(fd, "w") as file:
            json.dump(dataclasses.asdict(record), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._path(record.old_id))
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def remove(self, old_id: str) -> None:
        self._path(old_id).unlink(missing_ok=True)

    def pending(self) -> list[RecreateRecord]:
        if not self.directory.is_dir():
            return []
        records = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                records.append(RecreateRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as err:
                _LOGGER.error("recreate record %s cannot be read (%s): settle it by hand", path, err)
        return records

    def _path(self, old_id: str) -> Path:
        return self.directory / f"{old_id}.json"


async def _inspect(docker: aiodocker.Docker, ref: str | None) -> dict | None:
    if ref is None:
        return None
    try:
        return dict(await docker.containers.container(ref).show())
    except DockerError as err:
        if err.status == 404:
            return None
        raise


async def undo(docker: aiodocker.Docker, record: RecreateRecord) -> None:
    """The new container removed (found by its id, or its temporary name before the id was known), and the old
    one as it was: its name and, if it ran, running."""
    new = await _inspect(docker, record.new_id) or await _inspect(docker, record.temp_name)
    if new is not None and new["Id"] != record.old_id:
        await docker.containers.container(new["Id"]).delete(force=True)
    old = await _inspect(docker, record.old_id)
    if old is None:
        return
    if old["Name"].lstrip("/") != record.name:
        await docker.containers.container(record.old_id).rename(record.name)
    if not record.old_running:
        return
    if record.stopping and old["State"]["Running"]:
        # The stop asked before moorage died may still be under way: it is waited for, then the old one started.
        await docker.containers.container(record.old_id).stop(timeout=_STOP_WAIT)
        await docker.containers.container(record.old_id).start()
    elif not old["State"]["Running"]:
        await docker.containers.container(record.old_id).start()


async def finish(docker: aiodocker.Docker, record: RecreateRecord) -> None:
    """The old container removed (its volumes kept) or kept under its other name, and the new one named and
    running. A new container that is gone (removed by hand) leaves the old one to take over again."""
    new = await _inspect(docker, record.new_id)
    if new is None:
        await undo(docker, record)
        return
    await retire_old(docker, record)
    await hand_over(docker, record, new["Name"].lstrip("/"), new["State"]["Running"])


async def retire_old(docker: aiodocker.Docker, record: RecreateRecord) -> None:
    """The old container removed without its volumes, or with `keep_old` renamed out of the new one's way."""
    old = await _inspect(docker, record.old_id)
    if old is None:
        return
    if not record.keep_old:
        await docker.containers.container(record.old_id).delete(force=True)
    elif old["Name"].lstrip("/") != record.kept_name:
        await docker.containers.container(record.old_id).rename(record.kept_name)


async def hand_over(docker: aiodocker.Docker, record: RecreateRecord, name: str, running: bool) -> None:
    """The new container (now `name`, and `running` or not) under the old one's name, running."""
    assert record.new_id is not None
    if name != record.name:
        await docker.containers.container(record.new_id).rename(record.name)
    if not running:
        await docker.containers.container(record.new_id).start()


async def settle(docker: aiodocker.Docker, journal: RecreateJournal) -> list[str]:
    """Every recreate a previous run left half-done, finished or undone; the old ids of those still pending (the
    engine could not be asked), to be tried again."""
    left = []
    for record in journal.pending():
        try:
            await (finish if record.committed else undo)(docker, record)
        except ENGINE_CALL_ERRORS as err:
            _LOGGER.error("recreate of %s left half-done could not be settled yet: %s", record.name, err)
            left.append(record.old_id)
            continue
        journal.remove(record.old_id)
        _LOGGER.warning(
            "recreate of %s was cut by moorage's stop; %s at start-up",
            record.name,
            "finished" if record.committed else "undone",
        )
    return left
