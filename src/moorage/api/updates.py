"""Image-update checks: whether a container's image (or every container's) has a newer build at its registry,
without a pull."""

from __future__ import annotations

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.images.updates import image_update
from moorage.schemas.containers import ContainerRef
from moorage.schemas.lifecycle import NoQuery
from moorage.schemas.updates import ImageUpdateItemSchema, ImageUpdateSchema
from moorage.settings import Permission
from moorage.web.operations import ENGINE, documented, page
from moorage.web.requests import load_query
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.scoping import inspect_container, seen
from moorage.web.state import UPDATE_CHECKS, docker, live

routes = web.RouteTableDef()


@routes.get(f"{API_PREFIX}/containers/{{container_id}}/image-update")
@requires(Permission.CONTAINERS_READ)
@documented(
    "Check a container's image for a newer build",
    tag="containers",
    path=ContainerRef,
    data=ImageUpdateSchema,
    errors=(404, 409, *ENGINE),
)
async def check_image_update(request: web.Request) -> web.Response:
    """The registry's digest for the container's reference (with `[[registries]]` credentials) beside the digest
    of the image it runs: nothing is pulled. 409 for a container made from an image id or pinned by digest."""
    inspected = await inspect_container(request)
    return ok(await image_update(docker(request), inspected, live(request).registries))


@routes.get(f"{API_PREFIX}/image-updates")
@requires(Permission.CONTAINERS_READ)
@documented(
    "Check every container's image for a newer build",
    tag="containers",
    query=NoQuery,
    data=page(ImageUpdateItemSchema),
    errors=ENGINE,
)
async def list_image_updates(request: web.Request) -> web.Response:
    """Every container, checked as GET /containers/{id}/image-update does, [updates] concurrency at once; a
    registry's digest is kept [updates] cache_seconds. A container that cannot be checked (an unreachable
    registry, an image id) is an item with its `error`, not a failed list."""
    load_query(request, NoQuery)
    items = await request.config_dict[UPDATE_CHECKS].check_all(docker(request), live(request).registries, seen(request))
    return ok({"total": len(items), "items": items})
