"""A scoped caller's view of the host: only the objects its key's (and token's) selector and name globs admit.

Outside the scope an object does not exist for the caller: a single-object route answers the engine's own 404
text for it, byte for byte what an absent one gets, and lists, totals, events and metrics leave it out. An
unscoped caller costs nothing here: each check returns at once, and the engine resolves references as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiodocker.exceptions import DockerError
from aiohttp import web

from moorage.containers.model import CreateRequest
from moorage.containers.scoped import check_reach, container_admitted, image_outside, outside
from moorage.engine.client import engine_json
from moorage.engine.shapes import Seen, all_seen, listed_name
from moorage.errors import Forbidden, NotFound
from moorage.schemas.containers import ContainerRef
from moorage.selectors import UNSCOPED, Scope
from moorage.web.requests import load_path
from moorage.web.state import PRINCIPAL, docker

Item = TypeVar("Item")

# The engine's own words for an object that is not there, which an object outside the scope gets too.
_ABSENT: dict[str, Callable[[str], str]] = {
    "container": lambda ref: f"No such container: {ref}",
    "image": lambda ref: f"No such image: {ref}",
    "volume": lambda ref: f"get {ref}: no such volume",
    "network": lambda ref: f"network {ref} not found",
}


def scope_of(request: web.Request) -> Scope:
    """The caller's scope; a deploy hook, which the operator configured and which has no key, has none."""
    principal = request.get(PRINCIPAL)
    return UNSCOPED if principal is None else principal.scope


def absent(kind: str, ref: str) -> NotFound:
    return NotFound(_ABSENT[kind](ref))


async def container_ref(request: web.Request, ref: str | None = None) -> str:
    """The container the call names (the path's, or `ref`): as given for an unscoped caller, the engine resolving
    it; its full id for a scoped one whose scope admits it, so that what is acted on is what was judged; else
    the engine's 404 for it."""
    if ref is None:
        ref = load_path(request, ContainerRef)["container_id"]
    scope = scope_of(request)
    if scope.unscoped:
        return ref
    return (await inspect_container(request, ref))["Id"]


async def inspect_container(request: web.Request, ref: str | None = None) -> dict[str, Any]:
    """The container's inspect, or the engine's 404 when it is not there or outside the caller's scope."""
    if ref is None:
        ref = load_path(request, ContainerRef)["container_id"]
    inspected: dict[str, Any] = await engine_json(docker(request), f"containers/{ref}/json")
    scope = scope_of(request)
    if not scope.unscoped and not container_admitted(scope, inspected):
        raise absent("container", ref)
    return inspected


def labelled(item: Mapping[str, Any]) -> Mapping[str, str] | None:
    """The labels of an engine list item (images, volumes and networks spell them alike)."""
    return item.get("Labels")


def in_scope(
    request: web.Request,
    items: list[Item],
    labels: Callable[[Item], Mapping[str, str] | None],
    name: Callable[[Item], str | None] = lambda _: None,
) -> list[Item]:
    """The items the caller's scope admits, by their labels and (containers) their name."""
    scope = scope_of(request)
    if scope.unscoped:
        return items
    return [item for item in items if scope.admits(labels(item), name(item))]


def listed_containers(request: web.Request, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The engine's container list items the caller may see."""
    return in_scope(request, found, lambda c: c.get("Labels"), listed_name)


def seen(request: web.Request) -> Seen:
    """The filter of engine container list items to those the caller may see (for the service layers)."""
    return all_seen if scope_of(request).unscoped else lambda found: listed_containers(request, found)


def with_scope_labels(request: web.Request, query: Mapping[str, Any]) -> dict[str, Any]:
    """A list query with the scope's label requirements the engine can judge added to its `label` filter, so that
    the engine sends less; what it cannot judge is left to `in_scope`."""
    pushed = scope_of(request).engine_label_filters()
    if not pushed:
        return dict(query)
    given = query.get("label") or []
    return {**query, "label": [*(given if isinstance(given, list) else [given]), *pushed]}


def check_labelled(request: web.Request, kind: str, ref: str, labels: Mapping[str, str] | None) -> None:
    """A 404 for an image, volume or network outside the caller's scope."""
    if not scope_of(request).labels_admit(labels):
        raise absent(kind, ref)


def stamped_labels(request: web.Request, labels: Mapping[str, str]) -> dict[str, str]:
    """What a scoped caller creates carries: its labels with the scope's fixed ones added. A label the body sets
    otherwise, or any requirement the result would not meet, is a 403 naming `labels.<key>`: a caller cannot
    make what it could not then see."""
    scope = scope_of(request)
    merged = dict(labels)
    for key, value in scope.stamped().items():
        if merged.setdefault(key, value) != value:
            raise outside(f"labels.{key}", f"the key's selector fixes it to {value!r}")
    for requirement in scope.unmet(merged):
        raise outside(f"labels.{requirement.key}", f"the key's selector requires {requirement.text()}")
    return merged


def check_name(request: web.Request, name: str | None) -> None:
    """A 403 naming `name` for a container name outside the caller's globs (or none, where it has globs)."""
    scope = scope_of(request)
    if scope.name_globs and (name is None or not scope.name_admits(name)):
        globs = " and ".join("one of " + ", ".join(sorted(globs)) for globs in scope.name_globs)
        raise outside("name", f"the key's names are {globs}")


async def scoped_create(request: web.Request, req: CreateRequest) -> CreateRequest:
    """A create as a scoped caller may make it: its name within the globs, the scope's labels stamped on, and
    only volumes, networks and containers in its scope named."""
    scope = scope_of(request)
    if scope.unscoped:
        return req
    check_name(request, req.name)
    stamped = dataclasses.replace(req, labels=stamped_labels(request, req.labels))
    await check_reach(docker(request), stamped, scope)
    return stamped


def unseen_users(every: int, told: int) -> list[str]:
    """What an in-use 409 says of the users a scoped caller may not see: how many (they keep the object too)."""
    hidden = every - told
    return [f"{hidden} container{'s' if hidden > 1 else ''} outside the caller's scope"] if hidden else []


def check_scoped_host_wide(request: web.Request, what: str) -> None:
    """A 403 for a scoped caller on a route that acts on, or tells of, the whole host."""
    if not scope_of(request).unscoped:
        raise Forbidden(f"{what} is of the whole host: a key or token with a selector or names has no part in it")


async def created_admitted(request: web.Request, inspected: Mapping[str, Any]) -> None:
    """A container a scoped caller just made whose image's labels took it out of its scope is removed again: a
    403 naming `image` (its labels are the image's with the body's over them)."""
    scope = scope_of(request)
    if scope.unscoped or container_admitted(scope, inspected):
        return
    try:
        await docker(request).containers.container(inspected["Id"]).delete(force=True, v=True)
    except DockerError as err:
        if err.status != 404:
            raise
    raise image_outside(scope, inspected["Config"].get("Labels"))
