"""The validated create request: frozen dataclasses in moorage's own shape.

`schemas.create` loads a POST /containers body into a `CreateRequest`; the policy judges that
model and enginespec builds the engine's request from it alone, so client JSON never reaches
the socket. Frozen, with tuples for lists, so nothing can change between the check and the build.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address
from typing import Any

from moorage.errors import FieldError


class PullPolicy(StrEnum):
    MISSING = "missing"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class PortBinding:
    """The host side of a published port; None means every address, or a free port."""

    host_ip: str | None = None
    host_port: int | None = None


@dataclass(frozen=True)
class BindVolume:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class NamedVolume:
    volume: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0


@dataclass(frozen=True)
class Healthcheck:
    """Durations in nanoseconds as the engine takes them; None leaves the image's value."""

    test: tuple[str, ...] | None = None
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    retries: int | None = None


@dataclass(frozen=True)
class Device:
    path_on_host: str
    path_in_container: str
    cgroup_permissions: str = "rwm"


@dataclass(frozen=True)
class NetworkAttachment:
    """One network of a create's `networks`: its name (or id), the aliases the container answers to on it, and
    the address it is fixed at (None: one the engine picks)."""

    name: str
    aliases: tuple[str, ...] = ()
    ipv4_address: IPv4Address | None = None


@dataclass(frozen=True)
class CreateRequest:
    """A validated create body. Maps are keyed as the client keyed them (ports normalized to "80/tcp")."""

    image: str
    name: str | None = None
    ports: Mapping[str, tuple[PortBinding, ...]] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[BindVolume | NamedVolume, ...] = ()
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    restart_policy: RestartPolicy | None = None
    memory: int | None = None
    memory_reservation: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    network: str | None = None
    network_aliases: tuple[str, ...] = ()
    networks: tuple[NetworkAttachment, ...] = ()
    hostname: str | None = None
    healthcheck: Healthcheck | None = None
    start: bool = False
    pull: PullPolicy = PullPolicy.MISSING
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    network_mode: str | None = None
    pid_mode: str | None = None
    ipc_mode: str | None = None
    uts_mode: str | None = None
    userns_mode: str | None = None
    devices: tuple[Device, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    runtime: str | None = None
    security_opt: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerUpdate:
    """What `docker update` changes on a live container, and moorage's PATCH with it: None leaves it as it is."""

    memory: int | None = None
    memory_reservation: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    restart_policy: RestartPolicy | None = None

    def conflicts(self, host_config: Mapping[str, Any]) -> list[FieldError]:
        """What the update contradicts in itself or in the container's HostConfig as it will be: the engine
        (20.10) takes a reservation above the memory limit on an update, which no container can use."""
        limit = self.memory or host_config.get("Memory") or 0
        if self.memory_reservation is not None and limit and self.memory_reservation > limit:
            return [{"field": "memory_reservation", "message": f"must not be above the memory limit ({limit})"}]
        return []


# A named volume as the engine takes one; anything else in `volumes` is a path.
VOLUME_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]+"


def normalize_capability(name: str) -> str:
    """ "cap_net_admin" and "NET_ADMIN" are one capability to the engine: compare and send one form."""
    return name.upper().removeprefix("CAP_")
