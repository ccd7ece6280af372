"""Volumes: list, inspect, create, delete."""

from __future__ import annotations

from aiodocker.exceptions import DockerError
from aiodocker.volumes import DockerVolume
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.explain import answer, audited
from moorage.containers.policy import denials, refusal
from moorage.containers.volumes import volume_decisions, volume_size, volume_users
from moorage.engine.client import engine_json, engine_post
from moorage.engine.filters import engine_filters
from moorage.errors import Conflict
from moorage.schemas.common import docker_time
from moorage.schemas.policy import DryRunQuery, DryRunSchema
from moorage.schemas.volumes import (
    VolumeCreateSchema,
    VolumeDeleteQuery,
    VolumeDetailQuery,
    VolumeDetailSchema,
    VolumeListQuery,
    VolumeRef,
    VolumeSummarySchema,
    volume,
)
from moorage.settings import Permission
from moorage.web.operations import ENGINE, documented, page, shape
from moorage.web.requests import load_json, load_path, load_query
from moorage.web.responses import ok, paged
from moorage.web.roles import requires
from moorage.web.scoping import (
    check_labelled,
    in_scope,
    labelled,
    scope_of,
    seen,
    stamped_labels,
    unseen_users,
    with_scope_labels,
)
from moorage.web.state import AUDIT_DETAIL, docker, live

routes = web.RouteTableDef()


async def _in_use(request: web.Request, name: str, users: list[dict[str, str]]) -> Conflict:
    """The 409 of a volume in use: the users the caller may see by name, the others (a scoped caller's) counted,
    since they keep the volume too."""
    told = users if scope_of(request).unscoped else await volume_users(docker(request), name, seen(request))
    named = [f"{user['name']} ({user['id'][:12]})" for user in told] + unseen_users(len(users), len(told))
    return Conflict(f"volume {name} is in use by {', '.join(named)}", data={"containers": told})


@routes.get(f"{API_PREFIX}/volumes")
@requires(Permission.VOLUMES_READ)
@documented("List volumes", tag="volumes", query=VolumeListQuery, data=page(VolumeSummarySchema), errors=ENGINE)
async def list_volumes(request: web.Request) -> web.Response:
    query = load_query(request, VolumeListQuery)
    filters = engine_filters(with_scope_labels(request, query), "name", "label", "dangling", "driver")
    found = (await engine_json(docker(request), "volumes", {"filters": filters}))["Volumes"] or []
    found = in_scope(request, found, labelled)
    # Newest first, as containers are (CreatedAt is in the engine's zone: compared in UTC); the name orders
    # volumes made in the same second.
    found.sort(key=lambda v: v["Name"])
    found.sort(key=lambda v: docker_time(v.get("CreatedAt")) or "", reverse=True)
    return paged(found, query, volume)


@routes.get(f"{API_PREFIX}/volumes/{{name}}")
@requires(Permission.VOLUMES_READ)
@documented(
    "Inspect a volume",
    tag="volumes",
    path=VolumeRef,
    query=VolumeDetailQuery,
    data=VolumeDetailSchema,
    errors=(404, *ENGINE),
)
async def get_volume(request: web.Request) -> web.Response:
    """Like `docker volume inspect`, with the containers that mount it and, with ?size=true, its size
    (`docker system df -v`)."""
    name = load_path(request, VolumeRef)["name"]
    query = load_query(request, VolumeDetailQuery)
    inspected = await engine_json(docker(request), f"volumes/{name}")
    check_labelled(request, "volume", name, inspected.get("Labels"))
    users = await volume_users(docker(request), name, seen(request))
    size = await volume_size(docker(request), name) if query["size"] else None
    return ok({**volume(inspected), "containers": users, "size": size})


@routes.post(f"{API_PREFIX}/volumes")
@requires(Permission.VOLUMES_WRITE)
@documented(
    "Create a volume",
    tag="volumes",
    body=VolumeCreateSchema,
    status=201,
    data=VolumeSummarySchema,
    errors=(409, *ENGINE),
    query=DryRunQuery,
    also={200: DryRunSchema},
)
async def create_volume(request: web.Request) -> web.Response:
    """Like `docker volume create`, within the host-safety policy (403 naming `driver` or `driver_opts...`); a
    name in use is a 409, where the engine would answer with the volume it has. With `dry_run=true`, nothing is
    created: 200 with the policy's decisions and the engine's body."""
    dry_run = load_query(request, DryRunQuery)["dry_run"]
    req = await load_json(request, VolumeCreateSchema)
    if not scope_of(request).unscoped:
        req = {**req, "labels": stamped_labels(request, req["labels"])}
    decisions = volume_decisions(req["driver"], req["driver_opts"], live(request).policy)
    if not dry_run and (violations := denials(decisions)):
        raise refusal(violations)
    body = {"Name": req["name"], "Driver": req["driver"], "DriverOpts": req["driver_opts"], "Labels": req["labels"]}
    if not denials(decisions):
        try:
            await engine_json(docker(request), f"volumes/{req['name']}")
        except DockerError as err:
            if err.status != 404:
                raise
        else:
            raise Conflict(f"volume {req['name']} exists", errors=[{"field": "name", "message": "is in use"}])
    if dry_run:
        answered = answer(decisions, {"body": body})
        request[AUDIT_DETAIL] = {"name": req["name"], **audited(answered)}
        return ok(answered)
    created = await engine_post(docker(request), "volumes/create", body)
    request[AUDIT_DETAIL] = {"name": created["Name"], "driver": created["Driver"], "driver_opts": req["driver_opts"]}
    return ok(volume(created), status=201, headers={"Location": f"{API_PREFIX}/volumes/{created['Name']}"})


@routes.delete(f"{API_PREFIX}/volumes/{{name}}")
@requires(Permission.VOLUMES_WRITE)
@documented(
    "Remove a volume",
    tag="volumes",
    path=VolumeRef,
    query=VolumeDeleteQuery,
    data=shape(name="string"),
    errors=(404, 409, *ENGINE),
)
async def delete_volume(request: web.Request) -> web.Response:
    """Like `docker volume rm [-f]`: a volume that a container mounts, running or not, is a 409 naming them."""
    name = load_path(request, VolumeRef)["name"]
    force = load_query(request, VolumeDeleteQuery)["force"]
    inspected = await engine_json(docker(request), f"volumes/{name}")  # 404 before anything else
    check_labelled(request, "volume", name, inspected.get("Labels"))
    if users := await volume_users(docker(request), name):
        raise await _in_use(request, name, users)
    try:
        await DockerVolume(docker(request), name).delete(force=force)
    except DockerError as err:
        # A container that took the volume since: name it too.
        if err.status == 409 and (users := await volume_users(docker(request), name)):
            raise await _in_use(request, name, users) from err
        raise
    request[AUDIT_DETAIL] = {"name": name, "force": force}
    return ok({"name": name})
