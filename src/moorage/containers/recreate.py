"""Recreate: the container made again from its (new) image with the same settings, health-gated, undone on failure.

The new container is created beside the old one under a temporary name, so a refusal, a failed pull or a
failed create leave the old one untouched. Only then is the old one stopped and the new one started; from
there until the new one has reached the condition asked, any failure, a cancellation included, removes the
new one and starts the old one again (same id, same name). The steps are recorded in the state dir
(journal.py), so that a recreate cut by moorage's own end is settled at its next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from moorage.background import given_grace, to_the_end
from moorage.containers import journal
from moorage.containers.binds import BindLedger, recheck
from moorage.containers.journal import RecreateJournal, RecreateRecord
from moorage.containers.model import CreateRequest, PullPolicy
from moorage.containers.provision import ensure_image, provision_container
from moorage.containers.rebuild import host_differences, refuse_unexpressed
from moorage.containers.scoped import image_outside
from moorage.engine.errors import ENGINE_CALL_ERRORS, as_api_error, start_failure
from moorage.errors import ApiError, Conflict, EngineTimeout
from moorage.images.pulls import PullHub
from moorage.images.updates import local_digest, repository_of
from moorage.selectors import Scope
from moorage.settings import Settings
from moorage.timestamps import rfc3339

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")
# How often the new container's state is looked at while it comes up; a healthcheck runs at most once a second.
_POLL_SECONDS = 0.2
# The new container's last log lines a failed recreate answers with.
_LOG_LINES = 50
# The stop timeout the engine applies when the container sets none (docker stop's default).
_DEFAULT_STOP_SECONDS = 10


class WaitFor(StrEnum):
    RUNNING = "running"
    HEALTHY = "healthy"
    NONE = "none"


@dataclass(frozen=True)
class RecreateOptions:
    pull: PullPolicy = PullPolicy.MISSING
    image: str | None = None
    wait: WaitFor = WaitFor.RUNNING
    timeout: int = 60
    keep_old: bool = False


@dataclass
class Timeline:
    """The steps as they are taken, each with its time; `listener` hears each one as it happens (a stream)."""

    listener: Callable[[Mapping[str, Any]], None] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)

    def add(self, step: str, **extra: Any) -> None:
        entry = {"step": step, "at": rfc3339(milliseconds=True), "elapsed": self.elapsed(), **extra}
        self.steps.append(entry)
        if self.listener is not None:
            self.listener(entry)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.began, 3)


class Recreates:
    """The containers being recreated, one recreate each at a time; the record of each in flight; and the
    recreates that run on their own (a stream's, a hook's), which a client that leaves does not stop."""

    def __init__(self, journal: RecreateJournal, grace: float) -> None:
        self.journal = journal
        self._grace = grace
        self._busy: set[str] = set()
        self._running: set[asyncio.Task[Any]] = set()

    def claim(self, container_id: str) -> None:
        """Hold the container for one recreate, until `release`; a 409 if another recreate holds it."""
        if container_id in self._busy:
            raise Conflict(
                f"container {container_id[:12]} is being recreated already",
                errors=[{"field": "container_id", "message": "a recreate of it is in progress"}],
            )
        self._busy.add(container_id)

    def release(self, container_id: str) -> None:
        self._busy.discard(container_id)

    def spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        task = asyncio.create_task(coro, name="recreate")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def settle_left(self, docker: aiodocker.Docker, pause: float) -> None:
        """At start-up, until none is left: the recreates a previous run left half-done finished or undone
        (journal.py), each container held meanwhile, so that no new recreate of it begins first."""
        left = [record.old_id for record in self.journal.pending()]
        self._busy.update(left)
        try:
            while left:
                still = await journal.settle(docker, self.journal)
                self._busy.difference_update(set(left) - set(still))
                left = still
                if left:
                    await asyncio.sleep(pause)
        finally:
            self._busy.difference_update(left)

    async def finish(self) -> None:
        """At shutdown: those running get the grace, then are cancelled, and roll back to the end (the engine
        is still open)."""
        await given_grace(self._running, self._grace)


@dataclass(frozen=True)
class Recreated:
    new_id: str
    old_id: str
    kept_old: Mapping[str, str] | None


@dataclass
class _Run:
    docker: aiodocker.Docker
    settings: Settings
    timeline: Timeline
    record: RecreateRecord
    recreates: Recreates
    new: DockerContainer | None = None

    def save(self) -> None:
        self.recreates.journal.write(self.record)


def temporary_name(name: str) -> str:
    return f"{name}-new-{uuid.uuid4().hex[:8]}"


async def run_recreate(
    docker: aiodocker.Docker,
    hub: PullHub,
    ledger: BindLedger,
    settings: Settings,
    recreates: Recreates,
    old: Mapping[str, Any],
    req: CreateRequest,
    options: RecreateOptions,
    timeline: Timeline,
    scope: Scope,
) -> Recreated:
    """`req` is the old container's create body, rebuilt (rebuild.py), loaded and passed by the policy's check of
    the request (before any pull; the create checks again, the engine's side too); the caller holds the claim.
    A new container whose image's labels take it out of the caller's `scope` is removed before the old is
    touched."""
    old_id, name = old["Id"], old["Name"].lstrip("/")
    image = await ensure_image(docker, hub, req.image, options.pull, settings.registries)
    timeline.add(
        "pulled",
        image=req.image,
        image_id=image["Id"],
        digest=local_digest(image, repository_of(req.image)),
        pull=options.pull.value,
    )
    if options.wait is WaitFor.HEALTHY and not _has_healthcheck(req, image):
        raise Conflict(
            f"wait is healthy, and {req.image} with this container's settings has no healthcheck",
            errors=[{"field": "wait", "message": "the new container would have no healthcheck"}],
        )
    record = RecreateRecord(
        old_id=old_id,
        name=name,
        temp_name=temporary_name(name),
        keep_old=options.keep_old,
        kept_name=f"{name}-old-{old_id[:12]}",
        old_running=bool(old["State"]["Running"]),
    )
    run = _Run(docker, settings, timeline, record, recreates)
    run.save()
    try:
        created = replace(req, name=record.temp_name, start=False, pull=PullPolicy.NEVER)
        record.new_id = await provision_container(docker, hub, created, settings, ledger)
    except BaseException:
        recreates.journal.remove(old_id)
        raise
    run.new = docker.containers.container(record.new_id)
    run.save()
    timeline.add("created", id=record.new_id, name=record.temp_name)
    made = await run.new.show()
    if not scope.labels_admit(labels := made["Config"].get("Labels")):
        await to_the_end(_discarded(run))
        raise image_outside(scope, labels)
    if differences := host_differences(old["HostConfig"], made["HostConfig"]):
        await to_the_end(_discarded(run))
        raise refuse_unexpressed(differences, name)
    try:
        await _switch(run, old, options)
    except BaseException as err:
        failure = as_api_error(err) if isinstance(err, ENGINE_CALL_ERRORS) else err
        await to_the_end(_rolled_back(run, failure))
        if failure is err:
            raise
        raise failure from err
    record.committed = True
    run.save()
    kept = await to_the_end(_committed(run))
    return Recreated(record.new_id, old_id, kept)


async def _discarded(run: _Run) -> None:
    """The new container removed before anything of the old one was touched, and the record with it."""
    assert run.new is not None
    await run.new.delete(force=True)
    run.recreates.journal.remove(run.record.old_id)


def _has_healthcheck(req: CreateRequest, image: Mapping[str, Any]) -> bool:
    test = req.healthcheck.test if req.healthcheck and req.healthcheck.test else None
    test = test or ((image.get("Config") or {}).get("Healthcheck") or {}).get("Test")
    return bool(test) and test[0] != "NONE"


async def _switch(run: _Run, old: Mapping[str, Any], options: RecreateOptions) -> None:
    """Stop the old, start the new, and wait for the condition: the steps a failure of undoes."""
    assert run.new is not None
    timeout = run.settings.docker.timeout
    stop_seconds = old["Config"].get("StopTimeout") or _DEFAULT_STOP_SECONDS
    run.record.stopping = True  # a stop the engine goes on with after moorage died is waited out at start-up
    run.save()
    await run.docker.containers.container(run.record.old_id).stop(timeout=stop_seconds + timeout)
    run.timeline.add("old_stopped", id=run.record.old_id, was_running=run.record.old_running)
    await recheck(run.new, run.settings)
    try:
        await run.new.start()
    except DockerError as err:
        # The settings were the old container's: that the new one cannot run with them is a conflict, not a bad request.
        failure = start_failure(err)
        raise Conflict(failure.message, errors=failure.errors) from err
    run.timeline.add("new_started", id=run.record.new_id)
    started = time.monotonic()
    if options.wait is WaitFor.NONE:
        return
    try:
        async with asyncio.timeout(options.timeout):
            await _reached(run.new, options.wait)
    except TimeoutError:
        raise EngineTimeout(
            f"the new container did not become {options.wait.value} within {options.timeout} s",
            errors=[{"field": "timeout", "message": f"{options.timeout} s passed first"}],
        ) from None
    run.timeline.add(options.wait.value, id=run.record.new_id, after=round(time.monotonic() - started, 3))


async def _reached(container: DockerContainer, wait: WaitFor) -> None:
    """Until the container runs (and is healthy, if asked); a 409 as soon as it exits or is unhealthy."""
    while True:
        state = (await container.show())["State"]
        if not state["Running"] or state["Restarting"]:
            raise Conflict(
                f"the new container exited with code {state['ExitCode']}",
                errors=[{"field": "wait", "message": f"it exited ({state['ExitCode']}) before it was {wait.value}"}],
            )
        health = (state.get("Health") or {}).get("Status")
        if wait is WaitFor.RUNNING or health == "healthy":
            return
        if health == "unhealthy":
            raise Conflict(
                "the new container is unhealthy", errors=[{"field": "wait", "message": "its healthcheck failed"}]
            )
        await asyncio.sleep(_POLL_SECONDS)


async def _rolled_back(run: _Run, err: BaseException) -> None:
    """The new container's logs and health read, then it is removed and the old one is started again if it
    ran; the failure answers with all that, and the record goes."""
    assert run.new is not None
    record, timeline = run.record, run.timeline
    timeline.add("failed", reason=err.message if isinstance(err, ApiError) else type(err).__name__)
    logs, health = await _last_words(run.new, run.settings.docker.timeout)
    try:
        await journal.undo(run.docker, record)
    except ENGINE_CALL_ERRORS:
        _LOGGER.exception("recreate of %s not undone; it is settled at moorage's next start", record.name)
        raise
    timeline.add("new_removed", id=record.new_id)
    if record.old_running:
        timeline.add("old_started", id=record.old_id)
    run.recreates.journal.remove(record.old_id)
    if isinstance(err, ApiError):
        err.data = {
            "old_id": record.old_id,
            "new_id": record.new_id,
            "timeline": timeline.steps,
            "logs": logs,
            "health_log": health,
        }


async def _last_words(container: DockerContainer, call_seconds: float) -> tuple[list[str], list[dict[str, Any]] | None]:
    """The container's last log lines and its health log, as far as the engine can tell them."""
    try:
        lines = await container.log(stdout=True, stderr=True, tail=_LOG_LINES, timeout=call_seconds)
        state = (await container.show())["State"]
    except ENGINE_CALL_ERRORS as err:
        _LOGGER.warning("the failed container's logs could not be read: %s", err)
        return [], None
    health = state.get("Health")
    log = [
        {"start": h.get("Start"), "end": h.get("End"), "exit_code": h.get("ExitCode"), "output": h.get("Output")}
        for h in (health or {}).get("Log") or ()
    ]
    return [line.rstrip("\n") for line in "".join(lines).splitlines()], log if health else None


async def _committed(run: _Run) -> Mapping[str, str] | None:
    """The old container removed (its volumes kept) or kept stopped under another name; the new one named."""
    record, timeline = run.record, run.timeline
    await journal.retire_old(run.docker, record)
    if record.keep_old:
        timeline.add("old_kept", id=record.old_id, name=record.kept_name)
    else:
        timeline.add("old_removed", id=record.old_id)
    # Started, and waited for if asked: a container that exited since is the wait's business, not the name's.
    await journal.hand_over(run.docker, record, record.temp_name, running=True)
    timeline.add("renamed", id=record.new_id, name=record.name)
    run.recreates.journal.remove(record.old_id)
    return {"id": record.old_id, "name": record.kept_name} if record.keep_old else None
