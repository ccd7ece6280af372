"""The one function that writes the engine's `POST /containers/create` body, from the validated model.

Nothing from the client is passed through: each key is written here from a typed field, and only
keys of a fixed whitelist can be written at all. The engine reads keys case-insensitively with the
last duplicate winning (moby#41868), so a body it is handed must hold exactly what was reviewed.
Call `policy.check` first: this builds what was asked for, it does not judge it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address
from typing import Any, TypeVar

from moorage.containers.model import (
    BindVolume,
    ContainerUpdate,
    CreateRequest,
    Device,
    Healthcheck,
    NamedVolume,
    NetworkAttachment,
    normalize_capability,
)
from moorage.containers.ownership import CREATE_LABEL, POLICY_LABEL
from moorage.settings import PolicySettings

CONFIG_KEYS = frozenset({
    "Image", "Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "Hostname", "ExposedPorts",
    "Healthcheck", "Tty", "HostConfig", "NetworkingConfig",
})  # fmt: skip
HOST_CONFIG_KEYS = frozenset({
    "PortBindings", "Mounts", "RestartPolicy", "Memory", "MemoryReservation", "NanoCpus", "NetworkMode", "PidsLimit",
    "Privileged", "CapAdd", "Devices", "Sysctls", "Runtime", "SecurityOpt", "PidMode", "IpcMode", "UTSMode",
    "UsernsMode",
})  # fmt: skip
HEALTHCHECK_KEYS = frozenset({"Test", "Interval", "Timeout", "StartPeriod", "Retries"})
# Set on every container: no setuid binary or file capability can raise its privileges.
SECURITY_OPT = ("no-new-privileges:true",)

_Number = TypeVar("_Number", int, float)


def _keys(allowed: frozenset[str], **values: Any) -> dict[str, Any]:
    """The whitelisted keys that have a value; an absent one leaves the engine's (or the image's) default."""
    if stray := values.keys() - allowed:
        raise ValueError(f"not in the engine-body whitelist: {sorted(stray)}")
    return {key: value for key, value in values.items() if value is not None}


def _strings(mapping: Mapping[str, str]) -> dict[str, str]:
    return {str(key): str(value) for key, value in mapping.items()}


def _list(items: tuple[str, ...] | None) -> list[str] | None:
    return None if items is None else list(items)


def _limit(asked: _Number | None, default: _Number | None, maximum: _Number | None) -> _Number | None:
    # Without a default, the maximum applies: an unlimited container would exceed it.
    return asked or default or maximum


def _nano_cpus(cpus: float | None) -> int | None:
    return None if cpus is None else round(cpus * 1e9)


def _healthcheck(check: Healthcheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return _keys(
        HEALTHCHECK_KEYS,
        Test=_list(check.test),
        Interval=check.interval,
        Timeout=check.timeout,
        StartPeriod=check.start_period,
        Retries=check.retries,
    )


def _mount(volume: BindVolume | NamedVolume) -> dict[str, Any]:
    """A `Mounts` item, not a `Binds` string: the bind's source is the path the policy checked."""
    if isinstance(volume, BindVolume):
        kind, source = "bind", os.path.normpath(volume.host_path)
    else:
        kind, source = "volume", volume.volume
    return {"Type": kind, "Source": source, "Target": volume.container_path, "ReadOnly": bool(volume.read_only)}


def _device(device: Device) -> dict[str, str]:
    return {
        "PathOnHost": device.path_on_host,
        "PathInContainer": device.path_in_container,
        "CgroupPermissions": device.cgroup_permissions,
    }


def _host_config(req: CreateRequest, policy: PolicySettings) -> dict[str, Any]:
    restart = req.restart_policy  # None: the engine's default, "no"
    return _keys(
        HOST_CONFIG_KEYS,
        PortBindings={
            port: [{"HostIp": b.host_ip or "", "HostPort": str(b.host_port or "")} for b in bindings]
            for port, bindings in req.ports.items()
        },
        Mounts=[_mount(volume) for volume in req.volumes],
        RestartPolicy=restart and {"Name": restart.name, "MaximumRetryCount": restart.maximum_retry_count},
        Memory=_limit(req.memory, policy.default_memory, policy.max_memory),
        MemoryReservation=req.memory_reservation,
        NanoCpus=_nano_cpus(_limit(req.cpus, policy.default_cpus, policy.max_cpus)),
        NetworkMode=req.network_mode or req.network or (req.networks[0].name if req.networks else None),
        PidsLimit=_limit(req.pids_limit, policy.default_pids_limit, policy.max_pids_limit),
        Privileged=req.privileged is True,
        CapAdd=[f"CAP_{normalize_capability(name)}" for name in req.cap_add] or None,
        Devices=[_device(device) for device in req.devices] or None,
        Sysctls=_strings(req.sysctls) or None,
        Runtime=req.runtime,
        SecurityOpt=list(SECURITY_OPT),
        PidMode=req.pid_mode,
        IpcMode=req.ipc_mode,
        UTSMode=req.uts_mode,
        UsernsMode=req.userns_mode,
    )


def engine_create_body(req: CreateRequest, policy: PolicySettings, *, mark: str, create_id: str) -> dict[str, Any]:
    """The engine's create body for a request the policy has passed, with the policy's default limits, labelled
    as this daemon's (`mark`) and as this one create (`create_id`): see moorage.ownership."""
    return _keys(
        CONFIG_KEYS,
        Image=req.image,
        Cmd=_list(req.command),
        Entrypoint=_list(req.entrypoint),
        Env=[f"{key}={value}" for key, value in _strings(req.environment).items()],
        WorkingDir=req.working_dir,
        User=req.user,
        # Last, so that a client's label of that name cannot stand in for it.
        Labels={**_strings(req.labels), POLICY_LABEL: mark, CREATE_LABEL: create_id},
        Hostname=req.hostname,
        ExposedPorts={port: {} for port in req.ports},
        Healthcheck=_healthcheck(req.healthcheck),
        Tty=False,
        HostConfig=_host_config(req, policy),
        NetworkingConfig=_networking(req),
    )


def endpoint_config(aliases: Iterable[str], ipv4_address: IPv4Address | None) -> dict[str, Any]:
    """A container's endpoint on a network, as create's EndpointsConfig and a connect take it."""
    endpoint: dict[str, Any] = {}
    if aliases := list(aliases):
        endpoint["Aliases"] = aliases
    if ipv4_address is not None:
        endpoint["IPAMConfig"] = {"IPv4Address": str(ipv4_address)}
    return endpoint


def _endpoint(attachment: NetworkAttachment) -> dict[str, Any]:
    return endpoint_config(attachment.aliases, attachment.ipv4_address)


def _networking(req: CreateRequest) -> dict[str, Any] | None:
    """The first network's endpoint, with the aliases the container answers to on it (`docker run
    --network-alias`) and its fixed address (`--ip`). Only one: API 1.41 takes one endpoint at create, so the
    others are connected after it (`engine_connect_bodies`)."""
    if req.networks:
        first = req.networks[0]
        return {"EndpointsConfig": {first.name: endpoint}} if (endpoint := _endpoint(first)) else None
    if not req.network_aliases or req.network is None:
        return None
    return {"EndpointsConfig": {req.network: endpoint_config(req.network_aliases, None)}}


def engine_connect_bodies(req: CreateRequest, container_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Each network after the first with its `POST /networks/{name}/connect` body, in the request's order."""
    return [
        (attachment.name, {"Container": container_id, "EndpointConfig": _endpoint(attachment)})
        for attachment in req.networks[1:]
    ]


def engine_update_body(update: ContainerUpdate) -> dict[str, Any]:
    """The engine's body for a container's update: only what the update gives, so the rest stays as it is."""
    restart = update.restart_policy
    body = {
        "Memory": update.memory,
        "MemoryReservation": update.memory_reservation,
        "NanoCpus": _nano_cpus(update.cpus),
        "PidsLimit": update.pids_limit,
        "RestartPolicy": restart and {"Name": restart.name, "MaximumRetryCount": restart.maximum_retry_count},
    }
    return {key: value for key, value in body.items() if value is not None}
