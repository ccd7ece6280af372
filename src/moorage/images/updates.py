"""Whether a container's image has a newer build at its registry: the digest the registry gives for the
container's reference (the engine's distribution inspect, with the registry's credentials), beside the digest of
the image the container runs. Nothing is pulled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiodocker

from moorage.engine.client import engine_json
from moorage.errors import Conflict
from moorage.images.references import with_default_tag
from moorage.images.registries import pull_auth
from moorage.settings import Registry
from moorage.timestamps import rfc3339


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


async def image_update(
    docker: aiodocker.Docker, inspected: Mapping[str, Any], registries: Iterable[Registry]
) -> dict[str, Any]:
    """The container's image check: its reference, the two digests and whether they differ."""
    reference = str(inspected["Config"]["Image"])
    if "@" in reference:
        raise Conflict(f"the container runs {reference}, pinned by digest: its reference has no newer build")
    if reference.startswith("sha256:") or reference == inspected["Image"]:
        raise Conflict("the container was made from an image id, not a reference: there is no registry to ask")
    reference = with_default_tag(reference)
    repository = repository_of(reference)
    image = await engine_json(docker, f"images/{inspected['Image']}/json")
    auth = pull_auth(repository, registries)
    remote = await engine_json(
        docker, f"distribution/{reference}/json", headers={"X-Registry-Auth": auth} if auth else None
    )
    local, remote_digest = local_digest(image, repository), remote["Descriptor"]["digest"]
    return {
        "image": reference,
        "local_digest": local,
        "remote_digest": remote_digest,
        # None: the image never came from that registry (built here, say), so which build it is cannot be told.
        "update_available": None if local is None else local != remote_digest,
        "checked_at": rfc3339(),
    }
