"""The engine's side of a merged log: each container's log as a source of runs of lines, the containers that start
while it is followed, and why a followed log ended."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiodocker
import orjson
from aiodocker.exceptions import DockerError

from moorage.engine.errors import ENGINE_STREAM_ERRORS
from moorage.engine.frames import whole_lines
from moorage.engine.streams import EngineStreams, batched
from moorage.errors import ApiError
from moorage.logs.grep import LineGrep, grepped
from moorage.logs.merge import Cursor, Joiner, Notice, Source
from moorage.settings import ApiKey
from moorage.timestamps import rfc3339_ns

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """A container in a merged log, as its lines name it."""

    id: str
    name: str
    tty: bool
    created: datetime
    tag: Mapping[str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", {"id": self.id, "name": self.name})

    @classmethod
    def of(cls, inspected: Mapping[str, Any]) -> Member:
        name, tty = inspected["Name"].lstrip("/"), bool(inspected["Config"]["Tty"])
        return cls(inspected["Id"], name, tty, datetime.fromisoformat(inspected["Created"]))


# A run of one member's lines (stream, bytes as the engine sent them, stamped) as (timestamp, item) pairs.
Shape = Callable[[Member, int, bytes], list[tuple[str, Any]]]


@dataclass(frozen=True)
class LogReading:
    """How every member's log is read: the engine's parameters, the grep, and what each line becomes."""

    gate: EngineStreams
    docker: aiodocker.Docker
    key: ApiKey | None
    params: Mapping[str, str]
    shape: Shape
    max_line: int
    grep: Callable[[bool], LineGrep] | None
    follow: bool

    async def source(self, member: Member, cursor: Cursor | None, *, first: bool = False) -> Source:
        """The member's lines (after `cursor`, when it was read before; the query's tail only when `first`),
        led by a notice that it joined and, when followed, ended by one saying why it left. The engine stream
        it holds counts among the key's streams. A failure is a notice too, but one of a `first` source before
        its stream opened raises, so that the whole merge is refused before any header goes out."""
        params = {**self.params, **({} if first else {"tail": "all"})}
        if cursor is not None:
            params["since"] = f"{Decimal(rfc3339_ns(cursor.stamp)) / 10**9:.9f}"
        opened = False
        try:
            with self.gate.slot(self.key, holder=uuid.uuid4()):
                async with self.gate.request("GET", f"/containers/{member.id}/logs", params) as engine:
                    opened = True
                    yield Notice({"container": member.tag, "notice": "joined"})
                    runs = whole_lines(batched(engine.content), member.tty, True, self.max_line)
                    async for lines in self._lines(member, runs, cursor):
                        yield lines
        except (ApiError, *ENGINE_STREAM_ERRORS) as err:
            if first and not opened:
                raise
            yield Notice({"container": member.tag, "notice": "failed", "message": str(err)})
            return
        if self.follow:
            yield Notice({"container": member.tag, **notice_of(await stop_reason(self.docker, member.id))})

    async def _lines(
        self, member: Member, runs: AsyncIterator[tuple[int, bytes]], cursor: Cursor | None
    ) -> AsyncIterator[list[tuple[str, Any]]]:
        if self.grep is not None:
            runs = grepped(runs, self.grep(member.tty))
        skip = cursor.seen if cursor is not None else 0
        async for stream, run in runs:
            lines = self.shape(member, stream, run)
            while skip and lines and lines[0][0] == cursor.stamp:  # type: ignore[union-attr]
                lines, skip = lines[1:], skip - 1
            skip = 0 if lines else skip
            yield lines


def notice_of(reason: Mapping[str, Any]) -> dict[str, Any]:
    """A member's notice from the reason its log ended (`end` becomes `notice`, which an item ending the whole
    stream does not carry)."""
    return {"notice": reason["end"], **{k: v for k, v in reason.items() if k != "end"}}


async def stop_reason(docker: aiodocker.Docker, container_id: str) -> dict[str, Any]:
    """Why a followed log ended, by its container's state now: it stopped (with its exit code), it was removed,
    or it runs (`done`: an `until` came, or the engine ended the stream itself)."""
    try:
        state = (await docker.containers.container(container_id).show())["State"]
    except DockerError as err:
        if err.status == 404:
            return {"end": "container_removed"}
        return {"end": "engine_gone", "message": str(err.message)}
    except ENGINE_STREAM_ERRORS as err:
        return {"end": "engine_gone", "message": str(err)}
    if state.get("Running"):
        return {"end": "done"}
    return {"end": "container_stopped", "exit_code": state.get("ExitCode")}


async def started(
    gate: EngineStreams,
    params: Mapping[str, str],
    wanted: Callable[[str], Awaitable[bool]],
) -> AsyncGenerator[Joiner, None]:
    """The containers that start from `params`' since (to its until), among those `wanted` takes: the engine's
    event stream, read for the handler's own stream slot. If it fails, no more join (logged): the containers
    being read go on."""
    try:
        async with gate.request("GET", "/events", params) as engine:
            async for line in engine.content:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                actor = (event.get("Actor") or {}).get("ID", "")
                if event.get("Action") == "start" and await wanted(actor):
                    yield Joiner(actor, int(event["timeNano"]))
    except (ApiError, *ENGINE_STREAM_ERRORS) as err:
        _LOGGER.warning("a merged log's containers that start can no longer join: %s", err)
