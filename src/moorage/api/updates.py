"""Image-update checks: whether a container's image has a newer build at its registry, without a pull."""

from __future__ import annotations

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.engine.client import engine_json
from moorage.images.updates import image_update
from moorage.schemas.containers import ContainerRef
from moorage.schemas.updates import ImageUpdateSchema
from moorage.settings import Role
from moorage.web.operations import ENGINE, documented
from moorage.web.requests import load_path
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.state import docker, live

routes = web.RouteTableDef()


@routes.get(f"{API_PREFIX}/containers/{{container_id}}/image-update")
@requires(Role.VIEWER)
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
    ref = load_path(request, ContainerRef)["container_id"]
    inspected = await engine_json(docker(request), f"containers/{ref}/json")
    return ok(await image_update(docker(request), inspected, live(request).registries))
