"""Networks: list, inspect, create, remove, and connect or disconnect a container, within the host-safety policy."""

from __future__ import annotations

import json
from typing import Any

from aiodocker.exceptions import DockerError
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.explain import answer, audited
from moorage.containers.networks import (
    PREDEFINED,
    change_failure,
    check_attach,
    decide_create,
    engine_connect_body,
    engine_create_body,
)
from moorage.containers.policy import denials, refusal
from moorage.engine.client import engine_json, engine_post
from moorage.engine.filters import engine_filters
from moorage.engine.shapes import listed_name
from moorage.errors import Conflict, Forbidden
from moorage.schemas.networks import (
    ConnectSchema,
    DisconnectSchema,
    NetworkCreateSchema,
    NetworkDetailSchema,
    NetworkListQuery,
    NetworkRef,
    NetworkSummarySchema,
    detail,
    summary,
)
from moorage.schemas.policy import DryRunQuery, DryRunSchema
from moorage.settings import Permission
from moorage.web.operations import ENGINE, documented, page, shape
from moorage.web.requests import load_json, load_path, load_query
from moorage.web.responses import ok, paged
from moorage.web.roles import requires
from moorage.web.scoping import (
    check_labelled,
    container_ref,
    in_scope,
    labelled,
    listed_containers,
    scope_of,
    stamped_labels,
    unseen_users,
    with_scope_labels,
)
from moorage.web.state import AUDIT_DETAIL, docker, live

routes = web.RouteTableDef()


def _taken(name: str) -> Conflict:
    return Conflict(f"network {name} exists", errors=[{"field": "name", "message": "is in use"}])


async def _name_taken(request: web.Request, name: str) -> bool:
    """Whether a network has this name (the engine's filter also matches parts of names: the list is checked)."""
    found = await engine_json(docker(request), "networks", {"filters": json.dumps({"name": [name]})})
    return any(network["Name"] == name for network in found)


async def _inspect(request: web.Request) -> dict[str, Any]:
    """The network the path names, 404 outside a scoped caller's view; its `Containers` those the caller may see."""
    ref = load_path(request, NetworkRef)["network_id"]
    inspected: dict[str, Any] = await engine_json(docker(request), f"networks/{ref}")
    check_labelled(request, "network", ref, inspected.get("Labels"))
    if not scope_of(request).unscoped and inspected.get("Containers"):
        filters = json.dumps({"network": [inspected["Id"]]})
        found = await engine_json(docker(request), "containers/json", {"all": "1", "filters": filters})
        visible = {c["Id"] for c in listed_containers(request, found)}
        inspected["Containers"] = {cid: c for cid, c in inspected["Containers"].items() if cid in visible}
    return inspected


@routes.get(f"{API_PREFIX}/networks")
@requires(Permission.NETWORKS_READ)
@documented("List networks", tag="networks", query=NetworkListQuery, data=page(NetworkSummarySchema), errors=ENGINE)
async def list_networks(request: web.Request) -> web.Response:
    """Like `docker network ls`, by name; the engine filters, moorage pages."""
    query = load_query(request, NetworkListQuery)
    filters = engine_filters(with_scope_labels(request, query), "name", "label", "driver")
    found = in_scope(request, await engine_json(docker(request), "networks", {"filters": filters}), labelled)
    found.sort(key=lambda n: n["Name"])
    return paged(found, query, summary)


@routes.get(f"{API_PREFIX}/networks/{{network_id}}")
@requires(Permission.NETWORKS_READ)
@documented("Inspect a network", tag="networks", path=NetworkRef, data=NetworkDetailSchema, errors=(404, *ENGINE))
async def get_network(request: web.Request) -> web.Response:
    """Like `docker network inspect`, with the containers attached and their addresses."""
    return ok(detail(await _inspect(request)))


@routes.post(f"{API_PREFIX}/networks")
@requires(Permission.NETWORKS_WRITE)
@documented(
    "Create a network",
    tag="networks",
    body=NetworkCreateSchema,
    status=201,
    data=NetworkDetailSchema,
    errors=(409, *ENGINE),
    query=DryRunQuery,
    also={200: DryRunSchema},
)
async def create_network(request: web.Request) -> web.Response:
    """Like `docker network create`: a driver of [policy] allowed_network_drivers and a subnet that overlaps none
    of the host's addresses or routes, else 403 naming the field; 409 naming `name` when the name is taken. With
    `dry_run=true`, nothing is created: 200 with the policy's decisions and the engine's body, or the same 409."""
    dry_run = load_query(request, DryRunQuery)["dry_run"]
    req = await load_json(request, NetworkCreateSchema)
    if not scope_of(request).unscoped:
        req = {**req, "labels": stamped_labels(request, req.get("labels") or {})}
    ipam = req.get("ipam")
    decisions = decide_create(req["driver"], ipam["subnet"] if ipam else None, live(request).policy)
    if dry_run:
        if await _name_taken(request, req["name"]):
            raise _taken(req["name"])
        answered = answer(decisions, {"body": engine_create_body(req)})
        request[AUDIT_DETAIL] = {"name": req["name"], **audited(answered)}
        return ok(answered)
    if violations := denials(decisions):
        raise refusal(violations)
    try:
        created = await engine_post(docker(request), "networks/create", engine_create_body(req))
    except DockerError as err:
        raise (_taken(req["name"]) if err.status == 409 else change_failure(err)) from err
    inspected = await engine_json(docker(request), f"networks/{created['Id']}")
    request[AUDIT_DETAIL] = {
        "id": inspected["Id"],
        "name": inspected["Name"],
        "driver": inspected["Driver"],
        "subnet": str(ipam["subnet"]) if ipam else None,
    }
    return ok(detail(inspected), status=201, headers={"Location": f"{API_PREFIX}/networks/{inspected['Id']}"})


@routes.delete(f"{API_PREFIX}/networks/{{network_id}}")
@requires(Permission.NETWORKS_WRITE)
@documented(
    "Remove a network",
    tag="networks",
    path=NetworkRef,
    data=shape(id="string"),
    errors=(404, 409, *ENGINE),
)
async def delete_network(request: web.Request) -> web.Response:
    """Like `docker network rm`: the predefined bridge, host and none are 403; a network that a container uses,
    running or not, 409 naming them."""
    inspected = await _inspect(request)
    if inspected["Name"] in PREDEFINED:
        raise Forbidden(f"{inspected['Name']} is a predefined network: the engine's own, never removed")
    # Stopped containers too, which have no endpoint: removing their network would leave them unable to start.
    # One never started knows its network by name only (its NetworkID is empty).
    filters = json.dumps({"network": [inspected["Id"], inspected["Name"]]})
    if users := await engine_json(docker(request), "containers/json", {"all": "1", "filters": filters}):
        told = sorted(listed_name(c) for c in listed_containers(request, users))
        told += unseen_users(len(users), len(told))
        raise Conflict(f"network {inspected['Name']} is in use by {', '.join(told)}")
    try:
        await (await docker(request).networks.get(inspected["Id"])).delete()
    except DockerError as err:
        raise change_failure(err) from err
    request[AUDIT_DETAIL] = {"id": inspected["Id"], "name": inspected["Name"]}
    return ok({"id": inspected["Id"]})


async def _attach(request: web.Request, action: str, body: dict[str, Any]) -> web.Response:
    """Connect or disconnect, after the policy's look at the network; 200 with the network's detail."""
    inspected = await _inspect(request)
    if violations := check_attach(inspected, live(request).policy):
        raise refusal(violations)
    try:
        await engine_post(docker(request), f"networks/{inspected['Id']}/{action}", body)
    except DockerError as err:
        raise change_failure(err, "" if action == "connect" else None) from err
    after = await engine_json(docker(request), f"networks/{inspected['Id']}")
    return ok(detail(after))


@routes.post(f"{API_PREFIX}/networks/{{network_id}}/connect")
@requires(Permission.NETWORKS_CONNECT)
@documented(
    "Connect a container to a network",
    tag="networks",
    path=NetworkRef,
    body=ConnectSchema,
    data=NetworkDetailSchema,
    errors=(404, 409, *ENGINE),
)
async def connect_network(request: web.Request) -> web.Response:
    """Like `docker network connect [--alias] [--ip]`; a container connected already is 409. The host's and the
    none network are 403, as at create."""
    req = await load_json(request, ConnectSchema)
    req = {**req, "container": await container_ref(request, req["container"])}
    request[AUDIT_DETAIL] = {
        "network": request.match_info["network_id"],
        "container": req["container"],
        "aliases": list(req.get("aliases") or ()),
        "ipv4_address": str(req["ipv4_address"]) if req.get("ipv4_address") is not None else None,
    }
    return await _attach(request, "connect", engine_connect_body(req))


@routes.post(f"{API_PREFIX}/networks/{{network_id}}/disconnect")
@requires(Permission.NETWORKS_CONNECT)
@documented(
    "Disconnect a container from a network",
    tag="networks",
    path=NetworkRef,
    body=DisconnectSchema,
    data=NetworkDetailSchema,
    errors=(404, 409, *ENGINE),
)
async def disconnect_network(request: web.Request) -> web.Response:
    """Like `docker network disconnect [-f]`; a container that is not connected is 409."""
    req = await load_json(request, DisconnectSchema)
    req = {**req, "container": await container_ref(request, req["container"])}
    request[AUDIT_DETAIL] = {
        "network": request.match_info["network_id"],
        "container": req["container"],
        "force": req["force"],
    }
    return await _attach(request, "disconnect", {"Container": req["container"], "Force": req["force"]})
