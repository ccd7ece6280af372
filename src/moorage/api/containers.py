"""Containers: list, inspect, create, delete."""

from __future__ import annotations

import json

from aiodocker.exceptions import DockerError
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.policy import check_update, refusal
from moorage.containers.provision import provision_container
from moorage.containers.spec import engine_update_body
from moorage.engine.client import engine_json, engine_post
from moorage.engine.errors import rename_failure, update_failure
from moorage.errors import BadRequest
from moorage.schemas.containers import (
    ContainerDetailSchema,
    ContainerListQuery,
    ContainerRef,
    ContainerSummarySchema,
    detail,
    summary,
)
from moorage.schemas.create import ContainerCreateSchema
from moorage.schemas.lifecycle import DeleteQuery, RenameBody
from moorage.schemas.update import ContainerUpdateSchema
from moorage.settings import Role
from moorage.web.operations import ENGINE, documented, page, shape
from moorage.web.requests import load_json, load_path, load_query
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.state import AUDIT_DETAIL, BIND_LEDGER, docker, live, policy_stops, pulls

routes = web.RouteTableDef()


def engine_filters(query: dict) -> str:
    """The list query as the engine's `filters`; the engine filters, moorage pages (Docker's limit is not a page)."""
    filters: dict[str, list[str]] = {}
    if "status" in query:
        filters["status"] = [query["status"]]
    if "name" in query:
        # The engine reads `name` as a regular expression; the query admits only [a-zA-Z0-9_.-],
        # so "." is all there is to escape.
        filters["name"] = [query["name"].replace(".", r"\.")]
    if query.get("label"):
        filters["label"] = query["label"]
    return json.dumps(filters)


@routes.get(f"{API_PREFIX}/containers")
@requires(Role.VIEWER)
@documented(
    "List containers", tag="containers", query=ContainerListQuery, data=page(ContainerSummarySchema), errors=ENGINE
)
async def list_containers(request: web.Request) -> web.Response:
    query = load_query(request, ContainerListQuery)
    found = await engine_json(docker(request), "containers/json", {"all": "1", "filters": engine_filters(query)})
    found.sort(key=lambda c: c["Created"], reverse=True)
    page = found[query["offset"] : query["offset"] + query["limit"]]
    return ok({"total": len(found), "items": [summary(c) for c in page]})


@routes.post(f"{API_PREFIX}/containers")
@requires(Role.ADMIN)
@documented(
    "Create a container",
    tag="containers",
    body=ContainerCreateSchema,
    status=201,
    data=ContainerDetailSchema,
    errors=(404, 409, *ENGINE),
)
async def create_container(request: web.Request) -> web.Response:
    """Like `docker create` (or `docker run -d` with start), within the host-safety policy: 201 with the detail."""
    req = await load_json(request, ContainerCreateSchema)
    ledger = request.config_dict[BIND_LEDGER]
    container_id = await provision_container(docker(request), pulls(request), req, live(request), ledger)
    created = detail(await docker(request).containers.container(container_id).show(), None)
    request[AUDIT_DETAIL] = {"id": created["id"], "name": created["name"]}
    return ok(created, status=201, headers={"Location": f"{API_PREFIX}/containers/{container_id}"})


@routes.get(f"{API_PREFIX}/containers/{{container_id}}")
@requires(Role.VIEWER)
@documented(
    "Inspect a container", tag="containers", path=ContainerRef, data=ContainerDetailSchema, errors=(404, *ENGINE)
)
async def get_container(request: web.Request) -> web.Response:
    ref = load_path(request, ContainerRef)["container_id"]
    inspected = await engine_json(docker(request), f"containers/{ref}/json")
    return ok(detail(inspected, policy_stops(request)))


@routes.patch(f"{API_PREFIX}/containers/{{container_id}}")
@requires(Role.ADMIN)
@documented(
    "Change a container's limits and restart policy",
    tag="containers",
    path=ContainerRef,
    body=ContainerUpdateSchema,
    data=ContainerDetailSchema,
    errors=(404, 409, *ENGINE),
)
async def update_container(request: web.Request) -> web.Response:
    """Like `docker update`, on a running container too: memory, memory_reservation, cpus, pids_limit and
    restart_policy in the create body's forms, within the policy's maxima (403 naming the field); what the body
    leaves out stays as it is. 200 with the detail."""
    ref = load_path(request, ContainerRef)["container_id"]
    update = await load_json(request, ContainerUpdateSchema)
    if violations := check_update(update, live(request).policy):
        raise refusal(violations)
    inspected = await engine_json(docker(request), f"containers/{ref}/json")
    if conflicts := update.conflicts(inspected["HostConfig"]):
        raise BadRequest(f"invalid request body: {conflicts[0]['field']}", errors=conflicts)
    body = engine_update_body(update)
    try:
        await engine_post(docker(request), f"containers/{inspected['Id']}/update", body)
    except DockerError as err:
        raise update_failure(err) from err
    inspected = await engine_json(docker(request), f"containers/{inspected['Id']}/json")
    request[AUDIT_DETAIL] = {"id": inspected["Id"], **body}
    return ok(detail(inspected, policy_stops(request)))


@routes.post(f"{API_PREFIX}/containers/{{container_id}}/rename")
@requires(Role.ADMIN)
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
    ref = load_path(request, ContainerRef)["container_id"]
    name = (await load_json(request, RenameBody))["name"]
    container = docker(request).containers.container(ref)
    try:
        await container.rename(name)
    except DockerError as err:
        raise rename_failure(err) from err
    inspected = await container.show()
    request[AUDIT_DETAIL] = {"id": inspected["Id"], "name": name}
    return ok(detail(inspected, policy_stops(request)))


@routes.delete(f"{API_PREFIX}/containers/{{container_id}}")
@requires(Role.ADMIN)
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
    ref = load_path(request, ContainerRef)["container_id"]
    # Inspect first: the answer names the full id, whatever reference the caller used.
    container_id = (await docker(request).containers.container(ref).show())["Id"]
    await docker(request).containers.container(container_id).delete(force=query["force"], v=query["volumes"])
    return ok({"id": container_id})
