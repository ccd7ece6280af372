"""Containers: list, inspect, create, delete."""

from __future__ import annotations

from typing import Any

from aiodocker.exceptions import DockerError
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.explain import answer, audited, dry_run_create
from moorage.containers.policy import decide_update, denials, refusal
from moorage.containers.provision import provision_container
from moorage.containers.spec import engine_update_body
from moorage.engine.client import engine_json, engine_post
from moorage.engine.errors import rename_failure, update_failure
from moorage.engine.filters import engine_filters
from moorage.errors import BadRequest
from moorage.schemas.containers import (
    ContainerDetailSchema,
    ContainerListQuery,
    ContainerRef,
    ContainerSummarySchema,
    detail,
    summary,
)
from moorage.schemas.create import ContainerCreateSchema, networks_asked
from moorage.schemas.lifecycle import DeleteQuery, RenameBody
from moorage.schemas.policy import DryRunCreateSchema, DryRunQuery, DryRunSchema
from moorage.schemas.update import ContainerUpdateSchema
from moorage.settings import Permission
from moorage.web.operations import ENGINE, any_of, documented, page, shape
from moorage.web.requests import load_json, load_query
from moorage.web.responses import ok, paged
from moorage.web.roles import requires
from moorage.web.scoping import (
    check_name,
    container_ref,
    created_admitted,
    inspect_container,
    listed_containers,
    scoped_create,
    with_scope_labels,
)
from moorage.web.secrets import for_caller, shown
from moorage.web.state import AUDIT_DETAIL, BIND_LEDGER, docker, live, policy_stops, pulls

routes = web.RouteTableDef()


@routes.get(f"{API_PREFIX}/containers")
@requires(Permission.CONTAINERS_READ)
@documented(
    "List containers", tag="containers", query=ContainerListQuery, data=page(ContainerSummarySchema), errors=ENGINE
)
async def list_containers(request: web.Request) -> web.Response:
    query = load_query(request, ContainerListQuery)
    filters = engine_filters(with_scope_labels(request, query), "status", "health", "name", "label")
    params = {"all": "1", "filters": filters}
    found = listed_containers(request, await engine_json(docker(request), "containers/json", params))
    found.sort(key=lambda c: c["Created"], reverse=True)
    show = for_caller(request)
    return paged(found, query, lambda c: show(summary(c)))


@routes.post(f"{API_PREFIX}/containers")
@requires(Permission.CONTAINERS_CREATE)
@documented(
    "Create a container",
    tag="containers",
    body=ContainerCreateSchema,
    status=201,
    data=ContainerDetailSchema,
    errors=(404, 409, *ENGINE),
    query=DryRunQuery,
    also={200: DryRunCreateSchema},
)
async def create_container(request: web.Request) -> web.Response:
    """Like `docker create` (or `docker run -d` with start), within the host-safety policy: 201 with the detail.
    With `dry_run=true`, nothing is pulled or created: 200 with the policy's decision on each field that touches
    the host, and the name and body the engine would be sent."""
    dry_run = load_query(request, DryRunQuery)["dry_run"]
    req = await scoped_create(request, await load_json(request, ContainerCreateSchema))
    if dry_run:
        answer = await dry_run_create(docker(request), req, live(request))
        request[AUDIT_DETAIL] = {"name": req.name, **audited(answer)}
        return ok(answer)
    ledger = request.config_dict[BIND_LEDGER]
    container_id = await provision_container(docker(request), pulls(request), req, live(request), ledger)
    inspected = await docker(request).containers.container(container_id).show()
    await created_admitted(request, inspected)
    created = detail(inspected, None)
    request[AUDIT_DETAIL] = {"id": created["id"], "name": created["name"], **networks_asked(req)}
    return ok(shown(request, created), status=201, headers={"Location": f"{API_PREFIX}/containers/{container_id}"})


@routes.get(f"{API_PREFIX}/containers/{{container_id}}")
@requires(Permission.CONTAINERS_READ)
@documented(
    "Inspect a container", tag="containers", path=ContainerRef, data=ContainerDetailSchema, errors=(404, *ENGINE)
)
async def get_container(request: web.Request) -> web.Response:
    inspected = await inspect_container(request)
    return ok(shown(request, detail(inspected, policy_stops(request))))


@routes.patch(f"{API_PREFIX}/containers/{{container_id}}")
@requires(Permission.CONTAINERS_UPDATE)
@documented(
    "Change a container's limits and restart policy",
    tag="containers",
    path=ContainerRef,
    body=ContainerUpdateSchema,
    data=any_of(ContainerDetailSchema, DryRunSchema),
    errors=(404, 409, *ENGINE),
    query=DryRunQuery,
)
async def update_container(request: web.Request) -> web.Response:
    """Like `docker update`, on a running container too: memory, memory_reservation, cpus, pids_limit and
    restart_policy in the create body's forms, within the policy's maxima (403 naming the field); what the body
    leaves out stays as it is. 200 with the detail; with `dry_run=true`, 200 with the policy's decisions and the
    engine's body, and nothing changed."""
    ref = await container_ref(request)
    dry_run = load_query(request, DryRunQuery)["dry_run"]
    update = await load_json(request, ContainerUpdateSchema)
    decisions = decide_update(update, live(request).policy)
    if dry_run and denials(decisions):
        return _dry_run_answer(request, answer(decisions, None), ref)
    if violations := denials(decisions):
        raise refusal(violations)
    inspected = await engine_json(docker(request), f"containers/{ref}/json")
    if conflicts := update.conflicts(inspected["HostConfig"]):
        raise BadRequest(f"invalid request body: {conflicts[0]['field']}", errors=conflicts)
    body = engine_update_body(update)
    if dry_run:
        return _dry_run_answer(request, answer(decisions, {"id": inspected["Id"], "body": body}), inspected["Id"])
    try:
        await engine_post(docker(request), f"containers/{inspected['Id']}/update", body)
    except DockerError as err:
        raise update_failure(err) from err
    inspected = await engine_json(docker(request), f"containers/{inspected['Id']}/json")
    request[AUDIT_DETAIL] = {"id": inspected["Id"], **body}
    return ok(shown(request, detail(inspected, policy_stops(request))))


def _dry_run_answer(request: web.Request, answered: dict[str, Any], container: str) -> web.Response:
    request[AUDIT_DETAIL] = {"id": container, **audited(answered)}
    return ok(answered)


@routes.post(f"{API_PREFIX}/containers/{{container_id}}/rename")
@requires(Permission.CONTAINERS_UPDATE)
@documented(
    "Rename a container",
    tag="containers",
    path=ContainerRef,
    body=RenameBody,
    data=ContainerDetailSchema,
    errors=(404, 409, *ENGINE),
)
async def rename_container(request: web.Request) -> web.Response:
    """Like `docker rename`: 409 naming `name` when another container has it; 200 with the detail."""
    ref = await container_ref(request)
    name = (await load_json(request, RenameBody))["name"]
    check_name(request, name)
    container = docker(request).containers.container(ref)
    try:
        await container.rename(name)
    except DockerError as err:
        raise rename_failure(err) from err
    inspected = await container.show()
    request[AUDIT_DETAIL] = {"id": inspected["Id"], "name": name}
    return ok(shown(request, detail(inspected, policy_stops(request))))


@routes.delete(f"{API_PREFIX}/containers/{{container_id}}")
@requires(Permission.CONTAINERS_DELETE)
@documented(
    "Remove a container",
    tag="containers",
    path=ContainerRef,
    query=DeleteQuery,
    data=shape(id="string"),
    errors=(404, 409, *ENGINE),
)
async def delete_container(request: web.Request) -> web.Response:
    """Like `docker rm [-f] [-v]`; a running container without force is the engine's 409."""
    query = load_query(request, DeleteQuery)
    # Inspect first: the answer names the full id, whatever reference the caller used.
    container_id = (await inspect_container(request))["Id"]
    await docker(request).containers.container(container_id).delete(force=query["force"], v=query["volumes"])
    return ok({"id": container_id})
