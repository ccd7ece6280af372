"""Keeping binds what the policy checked.

The engine resolves a bind's source again at every start. A container that can write to a directory
above another container's bind source could replace a directory on that path with a symlink, and the
next start would mount whatever it points at, the host's / included. So a bind may not lie inside a
writable bind, a writable bind may not contain another, and the binds of a container moorage
created are checked again before each start.

The nesting rule compares a request with the containers the engine holds, so the check and the engine
call that adds the binds must be one step: `BindLedger.adding` runs both under one lock, and every
operation that adds binds (today only the create) goes through it. A create whose outcome the engine did
not tell (a timeout, a lost connection, a cancellation) may still finish in the engine after moorage gave
up on it: the ledger then keeps the lock until the container it may have made (known by its CREATE_LABEL)
is found and removed, and stays closed to creates with binds while the engine cannot be asked.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from moorage.background import to_the_end
from moorage.containers.model import BindVolume, CreateRequest
from moorage.containers.ownership import CREATE_LABEL, is_moorages, policy_mark
from moorage.containers.policy import bind_judgement, refusal
from moorage.engine.errors import DOCKER_UNREACHABLE, ENGINE_CALL_ERRORS
from moorage.engine.shapes import listed_name
from moorage.errors import EngineUnavailable, FieldError, Forbidden
from moorage.settings import Settings

_LOGGER = logging.getLogger(__name__)
_RECONCILE_PAUSE = 0.2  # seconds between two looks for a create that may still finish
NESTING = "moorage.bind_nesting"  # the rule that names a refusal of binds that nest


@dataclass(frozen=True)
class _Bind:
    source: str
    writable: bool
    owner: str


class _Binds:
    """Bind sources indexed for the nesting rule: a request's bind is judged in time proportional to its
    depth and to the log of the number of binds, not to that number (a long request, many containers)."""

    def __init__(self, binds: Iterable[_Bind]) -> None:
        self._writable: dict[str, str] = {}
        entries: list[tuple[str, str]] = []
        for bind in binds:
            entries.append((bind.source, bind.owner))
            if bind.writable:
                self._writable.setdefault(bind.source, bind.owner)
        entries.sort()
        self._sources = [source for source, _ in entries]
        self._owners = [owner for _, owner in entries]

    def problem(self, mine: _Bind) -> str | None:
        """Why `mine` may not be added beside these binds, or None."""
        above, parent = mine.source, os.path.dirname(mine.source)
        while parent != above:  # up to the root, whatever the path's form ("//x" and "x" end too)
            above, parent = parent, os.path.dirname(parent)
            if (owner := self._writable.get(above)) is not None:
                return f"lies inside {above}, which {owner} can write: a directory on the way could be swapped"
        if mine.writable:
            prefix = mine.source.rstrip("/") + "/"
            at = bisect.bisect_left(self._sources, prefix)
            if at < len(self._sources) and self._sources[at].startswith(prefix):
                inside, owner = self._sources[at], self._owners[at]
                return f"contains {inside}, bound by {owner}: a writable bind above it could swap it"
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
        _Bind(mount["Source"], bool(mount.get("RW", True)), f"container {listed_name(container)}")
        for container in await docker.containers.list(all=True)
        for mount in container["Mounts"] or ()
        if mount.get("Type") == "bind"
    ]
    # A request's bind of the same source as its own is no nesting, so the index may hold it too.
    binds = _Binds(existing + [bind for _, bind in requested])
    return [
        {"field": f"volumes.{index}.host_path", "message": problem, "rule": NESTING}
        for index, mine in requested
        if (problem := binds.problem(mine))
    ]


class BindLedger:
    """The one gate of the nesting rule: held on the app, one per daemon.

    Without it, two creates checked at the same moment would each see the engine without the other's
    binds, and both pass (a writable /srv/x and a /srv/x/sub). Only requests with binds take the lock,
    and only for the check and the engine call: pulls happen before, starts after. Waiting for it is
    bounded by the engine timeout (then 503), as every engine call is.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        # Creates whose outcome the engine did not tell, by their CREATE_LABEL value: the monotonic time
        # after which one that has not shown up is taken as never made.
        self._unsettled: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def adding(
        self, docker: aiodocker.Docker, req: CreateRequest, create_id: str, engine_timeout: float
    ) -> AsyncIterator[None]:
        """Wrap the engine call that creates `req` with CREATE_LABEL `create_id`: refused (403) if its binds
        nest with any container's, those of creates that finished while this one waited included. If the
        call ends without the engine's answer, the container it may yet make is removed before the lock goes."""
        if not _requested(req):
            async with self._removed_if_unanswered(docker, create_id, engine_timeout):
                yield
            return
        try:
            async with asyncio.timeout(engine_timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise EngineUnavailable("another create with binds holds the bind ledger: try again") from None
        try:
            await self._settle(docker)
            if violations := await nesting_violations(docker, req):
                raise refusal(violations)
            async with self._removed_if_unanswered(docker, create_id, engine_timeout):
                yield
        finally:
            self._lock.release()

    @contextlib.asynccontextmanager
    async def _removed_if_unanswered(
        self, docker: aiodocker.Docker, create_id: str, grace: float
    ) -> AsyncIterator[None]:
        """Around the engine call: if it ends without the engine's answer (a timeout, a lost connection, a
        cancellation), the engine may yet make the container: it is looked for and removed before this ends."""
        try:
            yield
        except DockerError as err:
            if err.status != DOCKER_UNREACHABLE:
                raise  # the engine's own answer: it made nothing
            await self._give_up_on(docker, create_id, grace)
            raise
        except GeneratorExit:
            raise  # the context was closed, not the create ended
        except BaseException:
            await self._give_up_on(docker, create_id, grace)
            raise

    async def _give_up_on(self, docker: aiodocker.Docker, create_id: str, grace: float) -> None:
        """A create that may still finish in the engine: look for it until it has had `grace` more, and remove it."""
        self._unsettled[create_id] = time.monotonic() + grace
        with contextlib.suppress(EngineUnavailable):  # the create's own error is the answer; the ledger stays shut
            await to_the_end(self._settle(docker))

    async def _settle(self, docker: aiodocker.Docker) -> None:
        """Remove what unsettled creates made, until each has had its time and is not there: 503 while the
        engine cannot be asked, so that no create with binds is checked without them."""
        while self._unsettled:
            try:
                for create_id, quiet_at in list(self._unsettled.items()):
                    late = time.monotonic() >= quiet_at
                    found = await docker.containers.list(
                        all=True, filters=json.dumps({"label": [f"{CREATE_LABEL}={create_id}"]})
                    )
                    for container in found:
                        _LOGGER.warning("removing container %s: its create ended without the engine's answer",
                                        container.id[:12])  # fmt: skip
                        try:
                            await container.delete(force=True, v=True)
                        except DockerError as err:
                            # 404: gone already. Otherwise it stays, but the nesting check sees it as any other.
                            if err.status != 404:
                                _LOGGER.error("container %s cannot be removed: %s", container.id[:12], err.message)
                    if late and not found:
                        del self._unsettled[create_id]
            # RuntimeError: aiodocker's session is closed (moorage is stopping).
            except (*ENGINE_CALL_ERRORS, OSError, RuntimeError) as err:
                _LOGGER.warning("bind ledger: a create that timed out cannot be reconciled yet (%s)", err)
                raise EngineUnavailable(
                    "the engine cannot be asked whether a create that timed out made a container: try again"
                ) from err
            if self._unsettled:
                await asyncio.sleep(_RECONCILE_PAUSE)


async def recheck(container: DockerContainer, settings: Settings) -> None:
    """Before a start: the binds of a container moorage created must still pass the policy (403 if not)."""
    inspected = await container.show()
    if not await is_moorages(container.docker, inspected, policy_mark(settings.server.state_dir)):
        return  # made outside moorage, by someone with the socket: not moorage's to judge
    problems = [
        {"field": f"volumes.{index}.host_path", "message": problem, "rule": rule}
        for index, mount in enumerate(inspected.get("Mounts") or ())
        if mount.get("Type") == "bind"
        for rule, problem in [bind_judgement(mount["Source"], settings.policy)]
        if problem
    ]
    if problems:
        raise Forbidden("a bind of this container no longer passes the host-safety policy", errors=problems)
