"""What a scoped caller's container create may reach, and the 403 for what would take an object out of its scope.

A key with a selector must not reach, through a create, what it cannot see: another app's volume mounted, its
network joined, its container's namespaces shared. Each is looked up and judged as a read of it would be; an
object outside the scope is answered as one that is not there, so that a create reveals no more than a list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from moorage.containers.model import CreateRequest, NamedVolume
from moorage.engine.client import engine_json
from moorage.errors import FieldError, Forbidden, NotFound
from moorage.selectors import Scope

# The engine's own networks and modes: they carry no labels, and every container may use them (the policy judges
# "host").
_SHARED_NETWORKS = {"bridge", "default", "none", "host"}
_CONTAINER_MODES = ("network_mode", "pid_mode", "ipc_mode")


def container_admitted(scope: Scope, inspected: Mapping[str, Any]) -> bool:
    return scope.admits(inspected["Config"].get("Labels"), inspected["Name"])


def outside(field: str, message: str) -> Forbidden:
    return Forbidden(f"{field}: outside the caller's scope: {message}", errors=[{"field": field, "message": message}])


def image_outside(scope: Scope, labels: Mapping[str, str] | None) -> Forbidden:
    """The 403 for a container whose image's labels (the body's over them) take it out of the caller's scope."""
    unmet = ", ".join(requirement.text() for requirement in scope.unmet(labels or {}))
    return outside("image", f"the image's labels do not meet {unmet}")


async def check_reach(docker: aiodocker.Docker, req: CreateRequest, scope: Scope) -> None:
    """A 404 naming each volume, network or container the create names that is not in the caller's scope (or not
    there: a scoped caller's named volume is created first, with POST /volumes, so that it carries the scope's
    labels)."""
    if scope.unscoped:
        return
    found: list[FieldError] = []
    for index, volume in enumerate(req.volumes):
        if isinstance(volume, NamedVolume) and not await _labels_in(docker, f"volumes/{volume.volume}", scope):
            found.append(_unseen(f"volumes.{index}.volume", "volume", volume.volume))
    networks = [("network", req.network), *((f"networks.{i}.name", n.name) for i, n in enumerate(req.networks))]
    if req.network_mode and ":" not in req.network_mode:
        networks.append(("network_mode", req.network_mode))
    for field, name in networks:
        if name and name.lower() not in _SHARED_NETWORKS and not await _labels_in(docker, f"networks/{name}", scope):
            found.append(_unseen(field, "network", name))
    for mode in _CONTAINER_MODES:
        kind, _, ref = (getattr(req, mode) or "").partition(":")
        if kind == "container" and not await _container_in(docker, ref, scope):
            found.append(_unseen(mode, "container", ref))
    if found:
        raise NotFound(f"not in the caller's scope: {', '.join(e['field'] for e in found)}", errors=found)


def _unseen(field: str, kind: str, name: str) -> FieldError:
    return {"field": field, "message": f"no such {kind} in the caller's scope: {name}"}


async def _inspected(docker: aiodocker.Docker, path: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await engine_json(docker, path)
    except DockerError as err:
        if err.status != 404:
            raise
        return None
    return found


async def _labels_in(docker: aiodocker.Docker, path: str, scope: Scope) -> bool:
    inspected = await _inspected(docker, path)
    return inspected is not None and scope.labels_admit(inspected.get("Labels"))


async def _container_in(docker: aiodocker.Docker, ref: str, scope: Scope) -> bool:
    inspected = await _inspected(docker, f"containers/{ref}/json")
    return inspected is not None and container_admitted(scope, inspected)
