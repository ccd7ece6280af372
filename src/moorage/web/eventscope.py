"""Which engine events a scoped caller may see: those of objects its scope admits, judged by the object itself.

An event carries a container's labels among its attributes, but mixed with the event's own (`name`, `image`,
`exitCode`...), and a volume's or network's not at all: each object is inspected once per stream and its verdict
kept, judged again after a rename. An object already gone (a replayed `since` window, a `destroy`) is judged by
what the event says of it. A network's or volume's event that names a container (connect, mount) is seen only
when that container is seen too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from moorage.engine.client import engine_json
from moorage.engine.shapes import event_labels
from moorage.selectors import Scope

# Verdicts kept per stream, beyond which the oldest are dropped (a stream watching a host that churns).
_KEPT = 4096
_INSPECT = {
    "container": "containers/{}/json",
    "image": "images/{}/json",
    "volume": "volumes/{}",
    "network": "networks/{}",
}


class EventScope:
    def __init__(self, scope: Scope, docker: aiodocker.Docker) -> None:
        self._scope = scope
        self._docker = docker
        self._verdicts: dict[tuple[str, str], bool] = {}

    async def admits(self, event: Mapping[str, Any]) -> bool:
        if self._scope.unscoped:
            return True
        kind, actor = event.get("Type", ""), event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if kind not in _INSPECT:
            return False  # the daemon's own events, plugins: of the whole host
        seen = await self._judged(kind, actor.get("ID", ""), attributes, again=event.get("Action") == "rename")
        if seen and kind in ("network", "volume") and attributes.get("container"):
            seen = await self._judged("container", attributes["container"], {}, again=False)
        if event.get("Action") in ("destroy", "delete"):
            self._verdicts.pop((kind, actor.get("ID", "")), None)
        return seen

    async def _judged(self, kind: str, ref: str, attributes: Mapping[str, str], *, again: bool) -> bool:
        key = (kind, ref)
        if again or key not in self._verdicts:
            if len(self._verdicts) >= _KEPT:
                self._verdicts.pop(next(iter(self._verdicts)))
            self._verdicts[key] = await self._judge(kind, ref, attributes)
        return self._verdicts[key]

    async def _judge(self, kind: str, ref: str, attributes: Mapping[str, str]) -> bool:
        try:
            found = await engine_json(self._docker, _INSPECT[kind].format(ref))
        except DockerError as err:
            if err.status != 404:
                raise
            return self._by_attributes(kind, attributes)
        if kind == "container":
            return self._scope.admits(found["Config"].get("Labels"), found["Name"])
        labels = found["Config"].get("Labels") if kind == "image" else found.get("Labels")
        return self._scope.labels_admit(labels)

    def _by_attributes(self, kind: str, attributes: Mapping[str, str]) -> bool:
        """An object that is gone, judged by its event: a container's and an image's carry their labels."""
        if kind not in ("container", "image"):
            return False
        return self._scope.admits(event_labels(attributes), attributes.get("name", "") if kind == "container" else None)
