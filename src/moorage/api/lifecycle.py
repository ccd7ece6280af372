"""Container lifecycle: start, stop, restart, pause, unpause, kill, each answering with the state after it;
and waiting for a container to stop or go.

Starting a running container or stopping a stopped one is not an error: the engine answers 304
and moorage answers 200 with the unchanged state, so scripts can converge without checking first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiodocker.containers import DockerContainer
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.binds import recheck
from moorage.errors import EngineTimeout
from moorage.schemas.common import StrictSchema
from moorage.schemas.containers import ContainerDetailSchema, ContainerRef, detail
from moorage.schemas.lifecycle import KillQuery, NoQuery, StopQuery, WaitedSchema, WaitQuery
from moorage.settings import Permission
from moorage.web.operations import ENGINE, STREAM, documented
from moorage.web.requests import load_query
from moorage.web.responses import JSON, ok
from moorage.web.roles import requires
from moorage.web.scoping import container_ref
from moorage.web.secrets import shown
from moorage.web.state import SETTINGS, docker, live, policy_stops, stream_slot, streams

routes = web.RouteTableDef()


# An action gets the container, its loaded query and the engine call's timeout.
Action = Callable[[DockerContainer, dict[str, Any], aiohttp.ClientTimeout], Awaitable[None]]

# The engine resolves bind sources again when it starts a container.
STARTS = {"start", "restart"}
ACTIONS: dict[str, tuple[type[StrictSchema], Action]] = {
    "start": (NoQuery, lambda c, q, t: c.start()),
    "stop": (StopQuery, lambda c, q, t: c.stop(t=q["timeout"], timeout=t)),
    "restart": (StopQuery, lambda c, q, t: c.restart(t=q["timeout"], timeout=t)),
    "pause": (NoQuery, lambda c, q, t: c.pause()),
    "unpause": (NoQuery, lambda c, q, t: c.unpause()),
    "kill": (KillQuery, lambda c, q, t: c.kill(signal=q["signal"], timeout=t)),
}


def grace_timeout(request: web.Request, seconds: int) -> aiohttp.ClientTimeout:
    """The engine waits up to `seconds` for the container before it answers: allow for that, and no more."""
    return aiohttp.ClientTimeout(total=seconds + request.config_dict[SETTINGS].docker.timeout)


def action_handler(
    name: str, schema: type[StrictSchema], action: Action
) -> Callable[[web.Request], Awaitable[web.Response]]:
    @requires(Permission.CONTAINERS_LIFECYCLE)
    @documented(
        f"{name.capitalize()} a container",
        tag="containers",
        path=ContainerRef,
        query=schema,
        data=ContainerDetailSchema,
        errors=(404, 409, *ENGINE),
    )
    async def handle(request: web.Request) -> web.Response:
        query = load_query(request, schema)
        container = docker(request).containers.container(await container_ref(request))
        if name in STARTS:
            await recheck(container, live(request))
        await action(container, query, grace_timeout(request, query.get("timeout", 0)))
        inspected = await container.show()
        return ok(shown(request, detail(inspected, policy_stops(request))))

    # The operationId: a verb on its resource.
    handle.__name__ = handle.__qualname__ = f"{name}_container"
    return handle


for _name, (_schema, _action) in ACTIONS.items():
    routes.post(f"{API_PREFIX}/containers/{{container_id}}/{_name}", name=f"container-{_name}")(
        action_handler(_name, _schema, _action)
    )


@routes.post(f"{API_PREFIX}/containers/{{container_id}}/wait")
@requires(Permission.CONTAINERS_READ)
@documented(
    "Wait for a container to stop, exit again or be removed",
    tag="containers",
    path=ContainerRef,
    query=WaitQuery,
    data=WaitedSchema,
    errors=(404, *STREAM),
)
async def wait_container(request: web.Request) -> web.Response:
    """Like `docker wait`, with a condition and a limit: past `timeout` seconds a 504, and the container is left
    as it was. The wait holds an engine connection as long as it lasts, so it counts as one of the caller's
    streams ([server] max_streams_per_key), and ends when its client leaves or moorage stops."""
    ref = await container_ref(request)
    query = load_query(request, WaitQuery)
    condition, seconds = query["condition"], query["timeout"]
    with stream_slot(request, JSON):
        # The engine answers the head at once and the body when the condition is met (moby's postContainersWait).
        async with streams(request).request("POST", f"/containers/{ref}/wait", {"condition": condition}) as engine:
            try:
                async with asyncio.timeout(seconds):
                    waited = orjson.loads(await engine.read())
            except TimeoutError:
                raise EngineTimeout(
                    f"container {ref} did not reach {condition} within {seconds} s; it is left as it was",
                    errors=[{"field": "timeout", "message": f"{seconds} s passed first"}],
                ) from None
    return ok({"exit_code": waited["StatusCode"], "condition": condition})
