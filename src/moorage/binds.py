"""Keeping binds what the policy checked.

The engine resolves a bind's source again at every start. A container that can write to a directory
above another container's bind source could replace a directory on that path with a symlink, and the
next start would mount whatever it points at, the host's / included. So a bind may not lie inside a
writable bind, a writable bind may not contain another, and the binds of a container moorage
created are checked again before each start.

The nesting rule compares a request with the containers the engine holds, so the check and the engine
call that adds the binds must be one step: `BindLedger.adding` runs both under one lock, and every
operation that adds binds (today only the create) goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiodocker
from aiodocker.containers import DockerContainer

from .enginespec import POLICY_LABEL
from .errors import Forbidden
from .models import BindVolume, CreateRequest
from .policy import PolicySettings, bind_problem, within
from .validation import FieldError


@dataclass(frozen=True)
class _Bind:
    source: str
    writable: bool
    owner: str


def _nesting(mine: _Bind, other: _Bind) -> str | None:
    if other.writable and mine.source != other.source and within(mine.source, other.source):
        return f"lies inside {other.source}, which {other.owner} can write: a directory on the way could be swapped"
    if mine.writable and mine.source != other.source and within(other.source, mine.source):
        return f"contains {other.source}, bound by {other.owner}: a writable bind above it could swap it"
    return None


def _requested(req: CreateRequest) -> list[tuple[int, _Bind]]:
    return [
        (index, _Bind(os.path.normpath(volume.host_path), not volume.read_only, "another bind of this request"))
        for index, volume in enumerate(req.volumes)
        if isinstance(volume, BindVolume)
    ]


async def nesting_violations(docker: aiodocker.Docker, req: CreateRequest) -> list[FieldError]:
    """Binds of the request that lie inside, or writable ones that contain, another bind (any container's)."""
    requested = _requested(req)
    if not requested:
        return []
    existing = [
        _Bind(mount["Source"], bool(mount.get("RW", True)), f"container {container['Names'][0].lstrip('/')}")
        for container in await docker.containers.list(all=True)
        for mount in container["Mounts"] or ()
        if mount.get("Type") == "bind"
    ]
    found: list[FieldError] = []
    for index, mine in requested:
        others = existing + [bind for i, bind in requested if i != index]
        if problem := next(filter(None, (_nesting(mine, other) for other in others)), None):
            found.append({"field": f"volumes.{index}.host_path", "message": problem})
    return found


def refusal(violations: list[FieldError]) -> Forbidden:
    """The 403 for a request the policy refuses, naming each field."""
    fields = ", ".join(v["field"] for v in violations)
    return Forbidden(f"refused by the host-safety policy: {fields}", errors=violations)


class BindLedger:
    """The one gate of the nesting rule: held on the app, one per daemon.

    Without it, two creates checked at the same moment would each see the engine without the other's
    binds, and both pass (a writable /srv/x and a /srv/x/sub). Only requests with binds take the lock,
    and only for the check and the engine call: pulls happen before, starts after.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def adding(self, docker: aiodocker.Docker, req: CreateRequest) -> AsyncIterator[None]:
        """Wrap the engine call that adds `req`'s binds: refused (403) if they nest with any container's,
        those of creates that finished while this one waited included."""
        if not _requested(req):
            yield
            return
        async with self._lock:
            if violations := await nesting_violations(docker, req):
                raise refusal(violations)
            yield


async def recheck(container: DockerContainer, policy: PolicySettings) -> None:
    """Before a start: the binds of a container moorage created must still pass the policy (403 if not)."""
    inspected = await container.show()
    if POLICY_LABEL not in (inspected["Config"].get("Labels") or {}):
        return  # made outside moorage, by someone with the socket: not moorage's to judge
    problems = [
        {"field": f"volumes.{index}.host_path", "message": problem}
        for index, mount in enumerate(inspected.get("Mounts") or ())
        if mount.get("Type") == "bind" and (problem := bind_problem(mount["Source"], policy))
    ]
    if problems:
        raise Forbidden("a bind of this container no longer passes the host-safety policy", errors=problems)
