"""Recreate a container from its (new) image with the same settings: answered when done, or its steps streamed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.explain import audited, dry_run_create
from moorage.containers.model import CreateRequest
from moorage.containers.policy import check, refusal
from moorage.containers.rebuild import create_body, refuse_unexpressed, unexpressed
from moorage.containers.recreate import Recreated, RecreateOptions, Timeline, run_recreate, temporary_name
from moorage.engine.client import engine_json
from moorage.engine.shapes import inspected_name
from moorage.errors import ApiError
from moorage.schemas.containers import ContainerRef, detail
from moorage.schemas.events import HeartbeatSchema
from moorage.schemas.policy import DryRunCreateSchema
from moorage.schemas.recreate import (
    RecreateBody,
    RecreatedSchema,
    RecreateEndSchema,
    RecreateQuery,
    StepSchema,
    rebuilt_request,
)
from moorage.settings import Permission
from moorage.web.operations import ENGINE, any_of, documented
from moorage.web.requests import load_json, load_query
from moorage.web.responses import NDJSON, Framed, ndjson_line, ok, serve_stream
from moorage.web.roles import requires
from moorage.web.scoping import container_ref, scope_of
from moorage.web.secrets import shown, shown_dry_run
from moorage.web.state import AUDIT_DETAIL, BIND_LEDGER, RECREATES, docker, live, policy_stops, pulls, streams

routes = web.RouteTableDef()


@routes.post(f"{API_PREFIX}/containers/{{container_id}}/recreate")
@requires(Permission.CONTAINERS_UPDATE)
@documented(
    "Recreate a container from its image, health-gated, rolled back on failure",
    tag="containers",
    path=ContainerRef,
    query=RecreateQuery,
    body=RecreateBody,
    body_required=False,
    data=any_of(RecreatedSchema, DryRunCreateSchema),
    raw={NDJSON: any_of(StepSchema, HeartbeatSchema, RecreateEndSchema)},
    errors=(404, 409, *ENGINE),
)
async def recreate_container(request: web.Request) -> web.StreamResponse:
    """Like `docker compose up` for one changed image: the settings the engine reports, rebuilt as a create (a
    setting a create cannot express is a 409 naming it, and nothing is touched), the create policy, the pull,
    the new container made beside the old, the old stopped, the new started and waited for (`wait`: running or
    healthy, within `timeout` seconds); then the old removed (or kept stopped, `keep_old`) and the name handed
    over. A failure once the old was stopped removes the new and starts the old again: 409 (504 past the
    timeout) with the timeline, the new container's last logs and its health log in `data`. With `dry_run=true`,
    nothing is pulled, stopped or made: 200 with the policy's decisions on the rebuilt create and its engine body.
    """
    ref = await container_ref(request)
    query = load_query(request, RecreateQuery)
    options = await load_json(request, RecreateBody, optional=True)
    if query["dry_run"]:
        return await dry_run_recreate(request, ref, options)
    return await answer_recreate(request, ref, options, query["stream"])


async def dry_run_recreate(request: web.Request, ref: str, options: RecreateOptions) -> web.Response:
    """The rebuilt create judged as the recreate would make it (under its temporary name, pulled as `pull` asks),
    and nothing touched: no claim, no pull, no container."""
    old = await engine_json(docker(request), f"containers/{ref}/json")
    req = await _rebuilt_unjudged(request, old, options, Timeline())
    created = replace(req, name=temporary_name(req.name or inspected_name(old)), start=False, pull=options.pull)
    answered = await dry_run_create(docker(request), created, live(request))
    request[AUDIT_DETAIL] = {**request[AUDIT_DETAIL], "outcome": "dry run", **audited(answered)}
    return ok(shown_dry_run(request, answered))


async def answer_recreate(request: web.Request, ref: str, options: RecreateOptions, stream: bool) -> web.StreamResponse:
    """The recreate of `ref` answered as the recreate route answers it (hooks answer the same)."""
    if not stream:
        timeline = Timeline()
        old = await engine_json(docker(request), f"containers/{ref}/json")
        with holding(request, old["Id"]):
            req = await rebuilt(request, old, options, timeline)
            return ok(await recreated(request, old, req, options, timeline))
    steps: asyncio.Queue[Mapping[str, Any] | None] = asyncio.Queue()
    task = await start_recreate(request, ref, options, steps.put_nowait)

    async def lines() -> AsyncIterator[bytes]:
        while (step := await steps.get()) is not None:
            yield ndjson_line(step)

    async def ending(failure: Exception | None) -> Mapping[str, Any]:
        try:
            return {"end": "done", "result": await asyncio.shield(task)}
        except ApiError as err:
            return {"end": "failed", "code": err.status, "message": err.message, "errors": err.errors, "data": err.data}

    response = await serve_stream(request, streams(request), NDJSON, lines(), Framed(ending))
    # The client may have left: the recreate ran on, and its audit line says how it ended.
    await asyncio.wait({task})
    return response


@contextlib.contextmanager
def holding(request: web.Request, container_id: str) -> Iterator[None]:
    recreates = request.config_dict[RECREATES]
    recreates.claim(container_id)
    try:
        yield
    finally:
        recreates.release(container_id)


async def start_recreate(
    request: web.Request, ref: str, options: RecreateOptions, listener: Callable[[Mapping[str, Any] | None], None]
) -> asyncio.Task[dict[str, Any]]:
    """The recreate of `ref` as a task of its own, which its client's leaving does not stop; `listener` hears each
    step, then None. What needs no pull (the settings rebuilt, the policy) is done first, here: a refusal is the
    caller's plain error, before a stream begins or a hook answers 202."""
    recreates, timeline = request.config_dict[RECREATES], Timeline()
    old = await engine_json(docker(request), f"containers/{ref}/json")
    recreates.claim(old["Id"])  # released by the task, or here if it never starts
    try:
        req = await rebuilt(request, old, options, timeline)
    except BaseException:
        recreates.release(old["Id"])
        raise
    for step in timeline.steps:
        listener(step)
    timeline.listener = listener
    return recreates.spawn(_released(request, old, req, options, timeline, listener))


async def _released(
    request: web.Request,
    old: Mapping[str, Any],
    req: CreateRequest,
    options: RecreateOptions,
    timeline: Timeline,
    listener: Callable[[Mapping[str, Any] | None], None],
) -> dict[str, Any]:
    try:
        return await recreated(request, old, req, options, timeline)
    finally:
        listener(None)
        request.config_dict[RECREATES].release(old["Id"])


async def rebuilt(
    request: web.Request, old: Mapping[str, Any], options: RecreateOptions, timeline: Timeline
) -> CreateRequest:
    """The old container's settings as a create request of the new image, within the policy; nothing touched."""
    req = await _rebuilt_unjudged(request, old, options, timeline)
    if violations := check(req, live(request).policy):
        raise refusal(violations)
    return req


async def _rebuilt_unjudged(
    request: web.Request, old: Mapping[str, Any], options: RecreateOptions, timeline: Timeline
) -> CreateRequest:
    """The old container's settings as a create request of the new image (409 for one a create cannot express)."""
    engine, name = docker(request), inspected_name(old)
    timeline.add("inspected", id=old["Id"], name=name)
    image = options.image or old["Config"]["Image"]
    request[AUDIT_DETAIL] = {"old_id": old["Id"], "name": name, "image": image, "outcome": "refused"}
    image_config = await _image_config(engine, old["Image"])
    if found := unexpressed(old, image_config):
        raise refuse_unexpressed(found, name)
    return rebuilt_request(create_body(old, image_config, image), name)


async def _image_config(engine: aiodocker.Docker, image_id: str) -> Mapping[str, Any]:
    """The Config of the image the container runs, whose defaults the new image's replace; none when that image
    was removed (`docker rmi -f`): then every setting is carried over as the container's own."""
    try:
        return (await engine_json(engine, f"images/{image_id}/json")).get("Config") or {}
    except DockerError as err:
        if err.status != 404:
            raise
        return {}


async def recreated(
    request: web.Request, old: Mapping[str, Any], req: CreateRequest, options: RecreateOptions, timeline: Timeline
) -> dict[str, Any]:
    """The recreate itself, audited with its outcome: the answer's data, or the failure that ended it."""
    audit = {**request[AUDIT_DETAIL]}
    try:
        done: Recreated = await run_recreate(
            docker(request), pulls(request), request.config_dict[BIND_LEDGER], live(request),
            request.config_dict[RECREATES], old, req, options, timeline, scope_of(request),
        )  # fmt: skip
    except ApiError as err:
        if err.data is not None:
            request[AUDIT_DETAIL] = {**audit, "new_id": err.data.get("new_id"), "outcome": "rolled back"}
        raise
    request[AUDIT_DETAIL] = {**audit, "new_id": done.new_id, "outcome": "recreated"}
    inspected = await engine_json(docker(request), f"containers/{done.new_id}/json")
    return {
        "container": shown(request, detail(inspected, policy_stops(request))),
        "old_id": done.old_id,
        "kept_old": done.kept_old,
        "timeline": timeline.steps,
    }
