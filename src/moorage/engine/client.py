"""The Docker engine client: one for the application's life (opened and closed by app.engine_ctx)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiodocker
import aiohttp
import orjson
from aiodocker.exceptions import DockerError
from aiodocker.types import SENTINEL, Sentinel

from moorage.engine.errors import DOCKER_UNREACHABLE


class BoundedDocker(aiodocker.Docker):
    """aiodocker's client, with every call bounded by its timeout unless the caller gives another.

    aiodocker 0.27 lets the calls it counts as long-running (container delete, stop, kill, wait, logs,
    stats...) run without any limit by default, so a wedged engine would hold a `DELETE /containers/{id}`
    for ever. moorage reads no stream through aiodocker (logs, events, stats and pulls go through
    EngineStreams), so none of its calls needs that.
    """

    def _resolve_long_running_timeout(
        self, timeout: float | aiohttp.ClientTimeout | Sentinel | None
    ) -> aiohttp.ClientTimeout:
        return self._timeout if timeout is SENTINEL else super()._resolve_long_running_timeout(timeout)


def engine_connector(url: str, limit: int) -> aiohttp.BaseConnector:
    """A pool of at most `limit` connections to the engine at `url` (0: unbounded)."""
    if url.startswith("unix://"):
        return aiohttp.UnixConnector(url.removeprefix("unix://"), limit=limit)
    return aiohttp.TCPConnector(limit=limit)


def pooled_docker(url: str, limit: int, timeout: aiohttp.ClientTimeout) -> BoundedDocker:
    """A client with a pool of its own of at most `limit` connections (aiodocker's own pool is aiohttp's default,
    100). Given a connector, aiodocker composes its URLs from `url` alone: a socket's path is no host. Close its
    connector after it (aiodocker leaves one it was given open)."""
    host = "unix://localhost" if url.startswith("unix://") else url
    return BoundedDocker(url=host, connector=engine_connector(url, limit), timeout=timeout)


async def engine_json(
    docker: aiodocker.Docker,
    path: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """GET an engine path through aiodocker's client (its timeout, its DockerError), parsed with orjson.

    For the hot reads: aiodocker's helpers parse with `json` and wrap each list item in an object, which
    was most of what a 500-container list cost moorage beyond the engine's own time.
    """
    async with docker._query(path, params=params, headers=headers) as response:
        return orjson.loads(await response.read())


async def engine_post(
    docker: aiodocker.Docker,
    path: str,
    body: Mapping[str, Any],
    params: Mapping[str, str] | None = None,
    seconds: float | None = None,
) -> Any:
    """POST a JSON body to an engine path aiodocker has no helper for (a container's update, a prune with its
    filters in `params`), through the same client as engine_json; given `seconds`, bounded by them in place of the
    client's timeout."""
    headers = {"Content-Type": "application/json"}
    data = orjson.dumps(body)
    timeout = SENTINEL if seconds is None else aiohttp.ClientTimeout(total=seconds)
    query = docker._query(path, method="POST", params=params, data=data, headers=headers, timeout=timeout)
    async with query as response:
        return orjson.loads(await response.read() or b"null")


async def engine_head(
    docker: aiodocker.Docker, path: str, params: Mapping[str, str] | None = None
) -> Mapping[str, str]:
    """The headers of a HEAD of an engine path (a path's stat in a container's archive API), with the client's
    session and timeout. Not through aiodocker's query: it parses an error's body as JSON when the engine says
    it is, and a HEAD's 404 has none. An error is aiodocker's DockerError, without a message."""
    await docker._check_version()
    try:
        async with docker.session.request(
            "HEAD", docker._canonicalize_url(path), params=params, timeout=docker._timeout
        ) as response:
            if response.status >= 400:
                raise DockerError(response.status, "")
            return dict(response.headers)
    except aiohttp.ClientConnectionError as err:
        raise DockerError(
            DOCKER_UNREACHABLE, f"Cannot connect to Docker Engine via {docker.docker_host} [{err}]"
        ) from err


async def engine_put(
    docker: aiodocker.Docker, path: str, params: Mapping[str, str], data: Any, content_type: str
) -> None:
    """PUT a body that is not JSON (a tar of a container's archive API) to an engine path, through the same
    client as engine_json."""
    async with docker._query(path, method="PUT", params=params, data=data, headers={"Content-Type": content_type}):
        pass
