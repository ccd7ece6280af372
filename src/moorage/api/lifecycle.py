"""Container lifecycle: start, stop, restart, pause, unpause, kill. Each answers with the state after it.

Starting a running container or stopping a stopped one is not an error: the engine answers 304
and moorage answers 200 with the unchanged state, so scripts can converge without checking first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiodocker.containers import DockerContainer
from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.binds import recheck
from moorage.schemas.common import StrictSchema
from moorage.schemas.containers import ContainerDetailSchema, ContainerRef, detail
from moorage.schemas.lifecycle import KillQuery, NoQuery, StopQuery
from moorage.settings import Role
from moorage.web.operations import ENGINE, documented
from moorage.web.requests import load_path, load_query
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.state import POLICY_STOPS, SETTINGS, docker, live

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
    @requires(Role.OPERATOR)
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
        container = docker(request).containers.container(load_path(request, ContainerRef)["container_id"])
        if name in STARTS:
            await recheck(container, live(request))
        await action(container, query, grace_timeout(request, query.get("timeout", 0)))
        inspected = await container.show()
        return ok(detail(inspected, request.config_dict[POLICY_STOPS].get(inspected["Id"])))

    # The operationId: a verb on its resource.
    handle.__name__ = handle.__qualname__ = f"{name}_container"
    return handle


for _name, (_schema, _action) in ACTIONS.items():
    routes.post(f"{API_PREFIX}/containers/{{container_id}}/{_name}", name=f"container-{_name}")(
        action_handler(_name, _schema, _action)
    )
