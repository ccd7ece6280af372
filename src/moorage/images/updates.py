"""Whether a container's image has a newer build at its registry: the digest the registry gives for the
container's reference (the engine's distribution inspect, with the registry's credentials), beside the digest of
the image the container runs. Nothing is pulled."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiodocker

from moorage.engine.client import engine_json
from moorage.engine.errors import as_api_error
from moorage.engine.shapes import Seen, all_seen, listed_name
from moorage.errors import ApiError, Conflict
from moorage.images.references import with_default_tag
from moorage.images.registries import pull_auth
from moorage.settings import Registry, UpdatesSettings
from moorage.timestamps import rfc3339

_LOGGER = logging.getLogger(__name__)


def repository_of(reference: str) -> str:
    """`registry/repo` of `registry/repo:tag`: the tag is after the last colon that follows the last slash."""
    head, slash, last = reference.rpartition("/")
    return f"{head}{slash}{last.split(':', 1)[0]}"


def local_digest(image: Mapping[str, Any], repository: str) -> str | None:
    """The digest by which the registry knows the image the container runs (its RepoDigests entry for the
    repository), or None when it never came from or went to that registry."""
    for entry in image.get("RepoDigests") or ():
        name, _, digest = str(entry).partition("@")
        if name == repository:
            return digest
    return None


def checked_reference(inspected: Mapping[str, Any]) -> str:
    """The reference whose registry can tell of a newer build of the container's image; 409 when there is none."""
    reference = str(inspected["Config"]["Image"])
    if "@" in reference:
        raise Conflict(f"the container runs {reference}, pinned by digest: its reference has no newer build")
    if reference.startswith("sha256:") or reference == inspected["Image"]:
        raise Conflict("the container was made from an image id, not a reference: there is no registry to ask")
    return with_default_tag(reference)


async def remote_digest(docker: aiodocker.Docker, reference: str, registries: Iterable[Registry]) -> str:
    """The registry's digest for `reference` now, through the engine (its proxy and TLS settings)."""
    auth = pull_auth(repository_of(reference), registries)
    headers = {"X-Registry-Auth": auth} if auth else None
    return str((await engine_json(docker, f"distribution/{reference}/json", headers=headers))["Descriptor"]["digest"])


async def answer(
    docker: aiodocker.Docker, inspected: Mapping[str, Any], reference: str, remote: str, checked_at: float
) -> dict[str, Any]:
    image = await engine_json(docker, f"images/{inspected['Image']}/json")
    local = local_digest(image, repository_of(reference))
    return {
        "image": reference,
        "local_digest": local,
        "remote_digest": remote,
        # None: the image never came from that registry (built here, say), so which build it is cannot be told.
        "update_available": None if local is None else local != remote,
        "checked_at": rfc3339(checked_at),
    }


async def image_update(
    docker: aiodocker.Docker, inspected: Mapping[str, Any], registries: Iterable[Registry]
) -> dict[str, Any]:
    """The container's image check, asked of the registry now: its reference, the two digests, whether they
    differ."""
    reference = checked_reference(inspected)
    return await answer(docker, inspected, reference, await remote_digest(docker, reference, registries), time.time())


class UpdateChecks:
    """The check of every container (GET /image-updates): a bounded number of containers checked at once, and a
    registry's digest of a reference kept for `cache_seconds`, so that a dashboard polling the list does not ask
    every registry each time. One container's failure is its item's error, not the list's."""

    def __init__(self, settings: UpdatesSettings) -> None:
        self._ttl = settings.cache_seconds
        self._checks = asyncio.Semaphore(settings.concurrency)
        self._remote: dict[str, tuple[float, str]] = {}  # reference: (when it was asked, the digest)

    async def _remote_digest(
        self, docker: aiodocker.Docker, reference: str, registries: Iterable[Registry]
    ) -> tuple[str, float]:
        kept = self._remote.get(reference)
        if kept is not None and time.time() - kept[0] < self._ttl:
            return kept[1], kept[0]
        asked = time.time()
        digest = await remote_digest(docker, reference, registries)
        self._remote[reference] = (asked, digest)
        return digest, asked

    async def _item(
        self, docker: aiodocker.Docker, listed: Mapping[str, Any], registries: Iterable[Registry]
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"id": listed["Id"], "name": listed_name(listed), "check": None, "error": None}
        try:
            async with self._checks:
                inspected = await engine_json(docker, f"containers/{listed['Id']}/json")
                reference = checked_reference(inspected)
                digest, asked = await self._remote_digest(docker, reference, registries)
                item["check"] = await answer(docker, inspected, reference, digest, asked)
        except Exception as err:  # one container's or registry's failure is its item's, named with its status
            failure = as_api_error(err)
            if type(failure) is ApiError:  # not the engine's nor the request's: a bug, for the log
                _LOGGER.exception("the image check of container %s failed", listed["Id"][:12])
            item["error"] = {"code": failure.status, "message": failure.message}
        return item

    async def check_all(
        self, docker: aiodocker.Docker, registries: Iterable[Registry], seen: Seen = all_seen
    ) -> list[dict[str, Any]]:
        """Every container of the engine's list that `seen` keeps (a scoped caller's), checked."""
        now = time.time()
        self._remote = {ref: kept for ref, kept in self._remote.items() if now - kept[0] < self._ttl}
        containers = seen(await engine_json(docker, "containers/json", {"all": "1"}))
        return list(await asyncio.gather(*(self._item(docker, c, registries) for c in containers)))
