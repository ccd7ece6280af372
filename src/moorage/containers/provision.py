"""Creating a container: the policy, named volumes, the image, create, then start; all or nothing.

A request that fails at any step leaves nothing behind, so that a retry with the same name works.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError
from aiodocker.networks import DockerNetwork
from aiodocker.volumes import DockerVolume

from moorage.background import to_the_end
from moorage.containers.binds import BindLedger, nesting_violations
from moorage.containers.model import CreateRequest, NamedVolume, PullPolicy
from moorage.containers.ownership import policy_mark
from moorage.containers.policy import check, check_existing_volume, image_healthcheck_violations, refusal
from moorage.containers.spec import engine_create_body
from moorage.engine.errors import start_failure
from moorage.errors import BadGateway, FieldError, NotFound
from moorage.images.pulls import PullHub
from moorage.images.registries import pull_auth
from moorage.settings import PolicySettings, Registry, Settings

_LOGGER = logging.getLogger(__name__)
# Networks that are never the host's; "host" itself is refused by the policy before any lookup.
_PLAIN_NETWORKS = {"bridge", "none", "default", "host"}
# The engine's words for a host port that is taken (userland proxy, then its own port allocator).


async def provision_container(
    docker: aiodocker.Docker, hub: PullHub, req: CreateRequest, settings: Settings, ledger: BindLedger
) -> str:
    """Create (and start, when asked) the container; its full id."""
    # What the request itself asks is judged first; only a request that passes is looked up in the engine,
    # so that a refused one costs no engine call and no walk of the engine's binds.
    if violations := check(req, settings.policy):
        raise refusal(violations)
    violations = await named_volume_violations(docker, req) + await nesting_violations(docker, req)
    violations += await host_network_violations(docker, req, settings.policy)
    if violations:
        raise refusal(violations)
    image = await ensure_image(docker, hub, req.image, req.pull, settings.registries)
    if violations := image_healthcheck_violations(req, image, settings.policy):
        raise refusal(violations)
    # The nesting check again, with the create, under the ledger's lock: the one above names every
    # violation at once and spares a doomed request its pull, this one sees creates that ran meanwhile.
    create_id = uuid.uuid4().hex
    mark = policy_mark(settings.server.state_dir)
    body = engine_create_body(req, settings.policy, mark=mark, create_id=create_id)
    async with ledger.adding(docker, req, create_id, settings.docker.timeout):
        container = await docker.containers.create(body, name=req.name)
    if req.start:
        try:
            await container.start()
        except BaseException as err:
            # Whatever ended the start (the engine's error, a timeout, a lost connection, a shutdown), the
            # container is removed, to the end: a half-done rollback would leave it Created.
            await to_the_end(_remove(container))
            if isinstance(err, DockerError):
                raise start_failure(err) from err
            raise
    return container.id


async def _remove(container: DockerContainer) -> None:
    try:
        await container.delete(force=True, v=True)
    except Exception as err:  # the start's error is the answer; this one is only logged
        _LOGGER.error("container %s was not removed after its start failed: %r", container.id[:12], err)


async def named_volume_violations(docker: aiodocker.Docker, req: CreateRequest) -> list[FieldError]:
    """An existing volume may be a bind in disguise (local driver, `device=`/`o=bind`); a new one is made plain."""
    found: list[FieldError] = []
    for index, volume in enumerate(req.volumes):
        if not isinstance(volume, NamedVolume):
            continue
        try:
            inspected = await DockerVolume(docker, volume.volume).show()
        except DockerError as err:
            if err.status != 404:
                raise
            continue
        found += check_existing_volume(inspected, f"volumes.{index}.volume")
    return found


async def host_network_violations(
    docker: aiodocker.Docker, req: CreateRequest, policy: PolicySettings
) -> list[FieldError]:
    """A network given by id or id prefix may still be the host's: the policy judges names, so look it up."""
    found: list[FieldError] = []
    for field in ("network", "network_mode"):
        name = getattr(req, field)
        if policy.allow_host_network or not name or name.lower() in _PLAIN_NETWORKS or ":" in name:
            continue  # "host" and "container:..." are the policy's own check
        try:
            inspected = await DockerNetwork(docker, name).show()
        except DockerError as err:
            if err.status != 404:
                raise
            continue  # the create answers the unknown network
        if inspected.get("Driver") == "host":
            found.append({"field": field, "message": f"{name} is the host's network, which is not allowed"})
    return found


async def ensure_image(
    docker: aiodocker.Docker, hub: PullHub, image: str, pull: PullPolicy, registries: tuple[Registry, ...]
) -> dict[str, Any]:
    """Pull as `docker run --pull` would, sharing the pull with other callers; a 404 names the image. The
    image's inspect, for what the policy judges of the image itself (its healthcheck)."""
    if pull is not PullPolicy.ALWAYS:
        try:
            return dict(await docker.images.inspect(image))
        except DockerError as err:
            if err.status != 404:
                raise
        if pull is PullPolicy.NEVER:
            raise NotFound(
                f"image {image} is not on this host and pull is never",
                errors=[{"field": "image", "message": "not present"}],
            )
    try:
        await hub.pull(image, pull_auth(image, registries))
    except (NotFound, BadGateway) as err:
        raise NotFound(
            f"image {image} could not be pulled: {err.message}",
            errors=[{"field": "image", "message": "cannot be found or pulled"}],
        ) from err
    return dict(await docker.images.inspect(image))
