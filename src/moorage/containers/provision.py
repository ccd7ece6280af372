"""Creating a container: the policy, named volumes, the image, create, then start; all or nothing.

A request that fails at any step leaves nothing behind, so that a retry with the same name works.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError
from aiodocker.networks import DockerNetwork
from aiodocker.volumes import DockerVolume

from moorage.background import to_the_end
from moorage.containers.binds import NESTING, BindLedger, nesting_violations
from moorage.containers.model import BindVolume, CreateRequest, NamedVolume, PullPolicy
from moorage.containers.networks import address_failure, change_failure, endpoint_problems
from moorage.containers.ownership import policy_mark
from moorage.containers.policy import (
    PLAIN_VOLUMES,
    Decision,
    check,
    check_existing_volume,
    denials,
    image_healthcheck_violations,
    looked_up,
    refusal,
)
from moorage.containers.spec import engine_connect_bodies, engine_create_body
from moorage.engine.client import engine_post
from moorage.engine.errors import start_failure
from moorage.errors import BadGateway, BadRequest, FieldError, NotFound
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
    if violations := denials(await engine_decisions(docker, req, settings.policy)):
        raise refusal(violations)
    req = await resolved_networks(docker, req)
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
    try:
        await _connect(docker, req, container.id)
        if req.start:
            await _start(container, req)
    except BaseException:
        # Whatever ended a connect or the start (the engine's error, a timeout, a lost connection, a shutdown),
        # the container is removed, to the end: a half-done rollback would leave it Created.
        await to_the_end(_remove(container))
        raise
    return container.id


async def _connect(docker: aiodocker.Docker, req: CreateRequest, container_id: str) -> None:
    """The networks after the first, which the create could not take (API 1.41: one endpoint at create)."""
    for index, (network, body) in enumerate(engine_connect_bodies(req, container_id), start=1):
        try:
            await engine_post(docker, f"networks/{network}/connect", body)
        except DockerError as err:
            raise change_failure(err, f"networks.{index}.") from err


async def _start(container: DockerContainer, req: CreateRequest) -> None:
    try:
        await container.start()
    except DockerError as err:
        # The engine gives a fixed address at start: one taken, or one it cannot give, is that field's failure.
        fixed = [f"networks.{index}.ipv4_address" for index, net in enumerate(req.networks) if net.ipv4_address]
        raise (address_failure(err, fixed) or start_failure(err)) from err


async def _remove(container: DockerContainer) -> None:
    try:
        await container.delete(force=True, v=True)
    except Exception as err:  # the start's error is the answer; this one is only logged
        _LOGGER.error("container %s was not removed after its connect or start failed: %r", container.id[:12], err)


async def engine_decisions(docker: aiodocker.Docker, req: CreateRequest, policy: PolicySettings) -> list[Decision]:
    """The rules judged by looking in the engine (reads only): existing volumes, binds that nest with another
    container's, networks given by an id that may be the host's."""
    volumes = [f"volumes.{i}.volume" for i, volume in enumerate(req.volumes) if isinstance(volume, NamedVolume)]
    binds = [f"volumes.{i}.host_path" for i, volume in enumerate(req.volumes) if isinstance(volume, BindVolume)]
    networks = [field for field, _ in _network_fields(req)]
    found = await named_volume_violations(docker, req)
    decisions = looked_up(volumes, found, PLAIN_VOLUMES, "a plain local volume, or a new one made plain")
    found = await nesting_violations(docker, req)
    decisions += looked_up(binds, found, NESTING, "nests with no other container's bind")
    found = await host_network_violations(docker, req, policy)
    return decisions + looked_up(networks, found, "policy.allow_host_network", "not the host's network")


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


def _network_fields(req: CreateRequest) -> list[tuple[str, str]]:
    """Each field that names a network, with the name it gives."""
    named = [(field, getattr(req, field)) for field in ("network", "network_mode") if getattr(req, field)]
    return named + [(f"networks.{index}.name", attachment.name) for index, attachment in enumerate(req.networks)]


async def _network(docker: aiodocker.Docker, name: str) -> dict[str, Any] | None:
    """The network's inspect; None when there is none of that name or id."""
    try:
        return dict(await DockerNetwork(docker, name).show())
    except DockerError as err:
        if err.status != 404:
            raise
        return None


async def host_network_violations(
    docker: aiodocker.Docker, req: CreateRequest, policy: PolicySettings
) -> list[FieldError]:
    """A network given by id or id prefix may still be the host's: the policy judges names, so look it up."""
    found: list[FieldError] = []
    for field, name in _network_fields(req):
        if policy.allow_host_network or name.lower() in _PLAIN_NETWORKS or ":" in name:
            continue  # "host" and "container:..." are the policy's own check
        inspected = await _network(docker, name)
        if inspected is not None and inspected.get("Driver") == "host":  # unknown: answered below or by the create
            message = f"{name} is the host's network, which is not allowed"
            found.append({"field": field, "message": message, "rule": "policy.allow_host_network"})
    return found


async def resolved_networks(docker: aiodocker.Docker, req: CreateRequest) -> CreateRequest:
    """The request with each of its `networks` by the name the engine knows it by (one given by id is then the
    same in the container's NetworkMode and its endpoints), once each network is known to take what the request
    asks of it: an unknown network is a 404, an endpoint the engine would refuse a 400, each naming the field."""
    unknown: list[FieldError] = []
    problems: list[FieldError] = []
    resolved = []
    seen: set[str] = set()
    for index, attachment in enumerate(req.networks):
        field = f"networks.{index}."
        network = await _network(docker, attachment.name)
        if network is None:
            unknown.append({"field": f"{field}name", "message": f"no network {attachment.name}"})
            continue
        if network["Id"] in seen:
            problems.append({"field": f"{field}name", "message": "is a network given before, by another name or id"})
        seen.add(network["Id"])
        problems += endpoint_problems(network, bool(attachment.aliases), attachment.ipv4_address, field)
        resolved.append(replace(attachment, name=network["Name"]))
    if unknown:
        raise NotFound(f"no such network: {', '.join(e['field'] for e in unknown)}", errors=unknown)
    if problems:
        raise BadRequest(f"invalid request body: {', '.join(e['field'] for e in problems)}", errors=problems)
    return replace(req, networks=tuple(resolved))


async def local_image(docker: aiodocker.Docker, image: str, pull: PullPolicy) -> dict[str, Any] | None:
    """The image's inspect if it is on this host; None if not and `pull` lets a create pull it, else a 404."""
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
    return None


async def ensure_image(
    docker: aiodocker.Docker, hub: PullHub, image: str, pull: PullPolicy, registries: tuple[Registry, ...]
) -> dict[str, Any]:
    """Pull as `docker run --pull` would, sharing the pull with other callers; a 404 names the image. The
    image's inspect, for what the policy judges of the image itself (its healthcheck)."""
    if pull is not PullPolicy.ALWAYS and (found := await local_image(docker, image, pull)) is not None:
        return found
    try:
        await hub.pull(image, pull_auth(image, registries))
    except (NotFound, BadGateway) as err:
        raise NotFound(
            f"image {image} could not be pulled: {err.message}",
            errors=[{"field": "image", "message": "cannot be found or pulled"}],
        ) from err
    return dict(await docker.images.inspect(image))
