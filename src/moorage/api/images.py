"""Images: list, pull (plain or streamed progress, shared between callers), delete."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.engine.client import engine_json
from moorage.engine.errors import as_api_error
from moorage.engine.filters import engine_filters
from moorage.images.registries import pull_auth
from moorage.schemas.events import HeartbeatSchema
from moorage.schemas.images import (
    ImageDeletedSchema,
    ImageDeleteQuery,
    ImageListQuery,
    ImageRef,
    ImageSummarySchema,
    PullBody,
    PullProgressSchema,
    PullQuery,
)
from moorage.settings import Permission
from moorage.web.operations import ENGINE, STREAM, any_of, documented, page, shape
from moorage.web.requests import load_json, load_path, load_query
from moorage.web.responses import NDJSON, Framed, ndjson_line, ok, paged, serve_stream
from moorage.web.roles import requires
from moorage.web.scoping import check_labelled, in_scope, labelled, listed_containers, scope_of
from moorage.web.state import docker, live, pulls, stream_slot, streams

routes = web.RouteTableDef()

_SUMMARY = ImageSummarySchema()
_PROGRESS = PullProgressSchema()
_DELETED = ImageDeletedSchema()
# A pull's last line when moorage stops: the pull is cancelled with its last subscriber.
_SHUTDOWN = {"status": "error", "code": 503, "message": "moorage is shutting down: the pull was stopped"}
_UNTOLD = {"status": "error", "code": 500, "message": "the pull's outcome could not be told: see moorage's log"}


async def containers_per_image(request: web.Request) -> Counter[str]:
    """How many containers the caller may see use each image id: the engine's own count is -1 unless asked for
    disk usage, and would count containers outside a scoped caller's view."""
    found = await engine_json(docker(request), "containers/json", {"all": "1"})
    return Counter(c["ImageID"] for c in listed_containers(request, found))


def summary(image: Mapping[str, Any], counts: Counter[str]) -> dict[str, Any]:
    return _SUMMARY.dump({**image, "Containers": counts[image["Id"]]})


async def pulled_item(request: web.Request, reference: str) -> dict[str, Any]:
    image, counts = await asyncio.gather(docker(request).images.inspect(reference), containers_per_image(request))
    return summary(image, counts)


@routes.get(f"{API_PREFIX}/images")
@requires(Permission.IMAGES_READ)
@documented("List images", tag="images", query=ImageListQuery, data=page(ImageSummarySchema), errors=ENGINE)
async def list_images(request: web.Request) -> web.Response:
    query = load_query(request, ImageListQuery)
    filters = engine_filters(query, "reference", "dangling")
    listed = engine_json(docker(request), "images/json", {"filters": filters})
    images, counts = await asyncio.gather(listed, containers_per_image(request))
    images = in_scope(request, images, labelled)
    images.sort(key=lambda image: image["Created"], reverse=True)
    return paged(images, query, lambda image: summary(image, counts))


@routes.post(f"{API_PREFIX}/images/pull")
@requires(Permission.IMAGES_PULL)
@documented(
    "Pull an image",
    tag="images",
    query=PullQuery,
    body=PullBody,
    data=ImageSummarySchema,
    raw={
        NDJSON: any_of(
            PullProgressSchema,
            HeartbeatSchema,
            shape(status="string", image=ImageSummarySchema),
            shape(status="string", code="integer", message="string"),
        )
    },
    errors=(404, *STREAM),
)
async def pull_image(request: web.Request) -> web.StreamResponse:
    """Like `docker pull`: waits and answers the image, or streams NDJSON progress with ?stream=true."""
    stream = load_query(request, PullQuery)["stream"] or NDJSON in request.headers.get("Accept", "")
    body = await load_json(request, PullBody)
    auth = pull_auth(body["name"], live(request).registries)
    reference = body["reference"]
    if not stream:
        await pulls(request).pull(reference, auth)
        return ok(await pulled_item(request, reference))
    return await stream_pull(request, reference, auth)


async def stream_pull(request: web.Request, reference: str, auth: str | None) -> web.StreamResponse:
    """NDJSON progress as the engine sends it, heartbeats while it is quiet, then one line with the outcome."""
    with stream_slot(request, NDJSON):
        async with pulls(request).subscribe(reference, auth) as events:
            # The first event (or failure) before the headers: a pull that fails at once is a plain error response.
            first = await anext(events, None)

            async def progress() -> AsyncIterator[bytes]:
                if first is not None:
                    yield ndjson_line(_PROGRESS.dump(first))
                async for event in events:
                    yield ndjson_line(_PROGRESS.dump(event))

            async def outcome(failure: Exception | None) -> dict[str, Any]:
                if failure is None:
                    try:
                        return {"status": "done", "image": await pulled_item(request, reference)}
                    except Exception as exc:  # after the headers nothing may reach the error middleware
                        failure = exc
                err = as_api_error(failure)
                return {"status": "error", "code": err.status, "message": err.message}

            # Leaving the subscription (the client left, or moorage stops) lets the pull go if it was the last.
            ending = Framed(outcome, shutdown=_SHUTDOWN, untold=_UNTOLD)
            return await serve_stream(request, streams(request), NDJSON, progress(), ending)


@routes.delete(f"{API_PREFIX}/images/{{image_id:.+}}")
@requires(Permission.IMAGES_DELETE)
@documented(
    "Remove an image",
    tag="images",
    path=ImageRef,
    query=ImageDeleteQuery,
    data=ImageDeletedSchema,
    errors=(404, 409, *ENGINE),
)
async def delete_image(request: web.Request) -> web.Response:
    """Like `docker rmi`; an image a container uses is the engine's 409, which names the container."""
    query = load_query(request, ImageDeleteQuery)
    ref = load_path(request, ImageRef)["image_id"]
    if not scope_of(request).unscoped:
        check_labelled(request, "image", ref, (await docker(request).images.inspect(ref))["Config"].get("Labels"))
    deleted = await docker(request).images.delete(ref, force=query["force"], noprune=query["noprune"])
    return ok(_DELETED.dump(deleted))
