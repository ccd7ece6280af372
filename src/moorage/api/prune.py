"""Prunes of stopped containers, unused images, volumes and networks, and all of them at once, each with a dry run
that answers what would go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from marshmallow import Schema

from moorage.api.paths import API_PREFIX
from moorage.containers import prune as pruning
from moorage.containers.prune import Prune, Report
from moorage.schemas.prune import (
    ContainersPruneQuery,
    ContainersPruneSchema,
    ImagesPruneQuery,
    ImagesPruneSchema,
    NetworksPruneQuery,
    NetworksPruneSchema,
    SystemPruneQuery,
    SystemPruneSchema,
    VolumesPruneQuery,
    VolumesPruneSchema,
    prune_filters,
)
from moorage.settings import Permission
from moorage.web.operations import ENGINE, documented
from moorage.web.requests import load_query
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.scoping import check_scoped_host_wide
from moorage.web.state import AUDIT_DETAIL, docker

routes = web.RouteTableDef()

# The ids (or names) an audit line names of each kind; the counts are whole.
_AUDITED_IDS = 20
_KINDS = (("containers", "id"), ("images", "id"), ("volumes", "name"), ("networks", "name"))
# A prune while the engine runs one of the same kind is the engine's 409.
_ERRORS = (409, *ENGINE)
_ANSWERS: dict[type[Schema], Schema] = {}


async def _run(
    request: web.Request,
    query_schema: type[Schema],
    answer: type[Schema],
    run: Callable[[Prune, bool, dict[str, Any]], Awaitable[Report]],
) -> web.Response:
    """Read the query, prune (or not), audit what was asked and what went, answer in the route's shape."""
    query = load_query(request, query_schema)
    check_scoped_host_wide(request, "a prune")
    prune = Prune(docker(request), prune_filters(query), dangling=query.get("dangling", True))
    report = {"dry_run": query["dry_run"], **await run(prune, query["dry_run"], query)}
    asked = {**query, "until": prune.filters.until} if "until" in query else query
    request[AUDIT_DETAIL] = {**asked, **_went(report)}
    schema = _ANSWERS.setdefault(answer, answer())
    return ok(schema.dump(report))


def _went(report: Report) -> dict[str, Any]:
    """An audit's account of a prune: counts and bytes, and the first ids or names of each kind."""
    went: dict[str, Any] = {"reclaimed_bytes": report["reclaimed_bytes"]}
    for kind, key in _KINDS:
        if kind in report:
            items = report[kind]
            went[kind] = {"count": len(items), key + "s": [item[key] for item in items[:_AUDITED_IDS]]}
    if "build_cache" in report:
        went["build_cache"] = {
            "count": len(report["build_cache"]["items"]),
            "skipped": report["build_cache"]["skipped"],
        }
    return went


@routes.post(f"{API_PREFIX}/containers/prune")
@requires(Permission.SYSTEM_PRUNE)
@documented(
    "Remove stopped containers",
    tag="containers",
    query=ContainersPruneQuery,
    data=ContainersPruneSchema,
    errors=_ERRORS,
)
async def prune_containers(request: web.Request) -> web.Response:
    """Like `docker container prune --filter`: every created, exited or dead container the filters name (never a
    running, paused or restarting one); `dry_run=true` answers the same list and removes nothing."""
    return await _run(
        request, ContainersPruneQuery, ContainersPruneSchema, lambda p, dry, _: pruning.prune_containers(p, dry)
    )


@routes.post(f"{API_PREFIX}/images/prune")
@requires(Permission.SYSTEM_PRUNE)
@documented("Remove unused images", tag="images", query=ImagesPruneQuery, data=ImagesPruneSchema, errors=_ERRORS)
async def prune_images(request: web.Request) -> web.Response:
    """Like `docker image prune [-a] --filter`: dangling images (`dangling=false`: every image no container uses,
    running or not), as the engine does it: an image a container uses keeps one reference and may lose others."""
    return await _run(request, ImagesPruneQuery, ImagesPruneSchema, lambda p, dry, _: pruning.prune_images(p, dry))


@routes.post(f"{API_PREFIX}/volumes/prune")
@requires(Permission.SYSTEM_PRUNE)
@documented("Remove unused volumes", tag="volumes", query=VolumesPruneQuery, data=VolumesPruneSchema, errors=_ERRORS)
async def prune_volumes(request: web.Request) -> web.Response:
    """Like `docker volume prune --filter` of Docker 20.10: every local volume without driver options that no
    container mounts, named ones too; no `until` (the engine has none for volumes)."""
    return await _run(request, VolumesPruneQuery, VolumesPruneSchema, lambda p, dry, _: pruning.prune_volumes(p, dry))


@routes.post(f"{API_PREFIX}/networks/prune")
@requires(Permission.SYSTEM_PRUNE)
@documented(
    "Remove unused networks", tag="networks", query=NetworksPruneQuery, data=NetworksPruneSchema, errors=_ERRORS
)
async def prune_networks(request: web.Request) -> web.Response:
    """Like `docker network prune --filter`: every network but bridge, host and none with no container attached
    (a stopped container is attached to none: a network only stopped containers use goes)."""
    return await _run(
        request, NetworksPruneQuery, NetworksPruneSchema, lambda p, dry, _: pruning.prune_networks(p, dry)
    )


@routes.post(f"{API_PREFIX}/system/prune")
@requires(Permission.SYSTEM_PRUNE)
@documented("Remove unused data", tag="system", query=SystemPruneQuery, data=SystemPruneSchema, errors=_ERRORS)
async def prune_system(request: web.Request) -> web.Response:
    """Like `docker system prune [-a] [--volumes] --filter`: stopped containers, unused networks, volumes with
    `volumes=true`, dangling images (all unused with `dangling=false`), then the build cache, which a label filter
    leaves alone (the engine's build cache prune ignores labels)."""
    return await _run(
        request, SystemPruneQuery, SystemPruneSchema, lambda p, dry, q: pruning.prune_system(p, dry, q["volumes"])
    )
