"""The Docker engine client: one for the application's life (opened and closed by app.engine_ctx)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiodocker
import aiohttp
import orjson
from aiodocker.types import SENTINEL, Sentinel


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


async def engine_post(docker: aiodocker.Docker, path: str, body: Mapping[str, Any]) -> Any:
    """POST a JSON body to an engine path aiodocker has no helper for (a container's update), through the same
    client as engine_json."""
    headers = {"Content-Type": "application/json"}
    async with docker._query(path, method="POST", data=orjson.dumps(body), headers=headers) as response:
        return orjson.loads(await response.read() or b"null")
