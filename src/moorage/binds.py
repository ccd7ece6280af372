"""Keeping binds what the policy checked.

The engine resolves a bind's source again at every start. A container that can write to a directory
above another container's bind source could replace a directory on that path with a symlink, and the
next start would mount whatever it points at, the host's / included. So a bind may not lie inside a
writable bind, a writable bind may not contain another, and the binds of a container moorage
created are checked again before each start.
"""

from __future__ import annotations

import os
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
