"""A container's create body, in moorage's own API form, rebuilt from what the engine says of it.

Recreate loads this body with the create schema and judges it with the create policy, so the new
container is one that POST /containers could have made. What the container's image supplied is left
out, so that the new image's defaults (its command, environment, labels, healthcheck) apply. A
setting moorage's create cannot express is refused, naming it: a recreate never drops one silently.
Networks are carried over whole: each one the container is on, with its aliases and its fixed IPv4 address.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moorage.containers.ownership import CREATE_LABEL, POLICY_LABEL
from moorage.containers.spec import SECURITY_OPT
from moorage.errors import Conflict, FieldError

# HostConfig keys the body below expresses (or, Binds and Mounts, reads from the inspect's Mounts; MemorySwap,
# which follows Memory), and those that say how the container was asked for rather than what it is.
_EXPRESSED_HOST = frozenset({
    "PortBindings", "RestartPolicy", "Memory", "MemoryReservation", "NanoCpus", "PidsLimit", "NetworkMode",
    "Privileged", "CapAdd", "Devices", "Sysctls", "Runtime", "SecurityOpt", "PidMode", "IpcMode", "UTSMode",
    "UsernsMode", "Binds", "Mounts", "MemorySwap",
})  # fmt: skip
_HOW_ASKED = frozenset({"ContainerIDFile", "ConsoleSize"})
# Config keys that are settings the create body does not take; compared with the image's where it has one.
_UNEXPRESSED_CONFIG = ("Domainname", "Tty", "OpenStdin", "StdinOnce", "StopSignal", "StopTimeout", "MacAddress",
                       "NetworkDisabled", "Shell")  # fmt: skip
# The engine's own names for its default modes, which a create leaves unset.
_DEFAULT_MODES = {"", "private", "shareable", "default", "bridge"}
_OWN_LABELS = {POLICY_LABEL, CREATE_LABEL}


def _unexpressible(field: str, value: Any) -> FieldError:
    return {"field": field, "message": f"is set ({value!r}) and a create cannot express it: recreate would drop it"}


def unexpressed(inspected: Mapping[str, Any], image_config: Mapping[str, Any]) -> list[FieldError]:
    """The settings of the container outside its HostConfig that the create body cannot carry over (its
    HostConfig is compared whole with the new container's: `host_differences`)."""
    host, config = inspected["HostConfig"], inspected["Config"]
    found = [
        _unexpressible(f"Config.{key}", config[key])
        for key in _UNEXPRESSED_CONFIG
        if config.get(key) and config.get(key) != image_config.get(key)
    ]
    exposed = (config.get("ExposedPorts") or {}).keys() - (image_config.get("ExposedPorts") or {}).keys()
    if unpublished := sorted(exposed - (host.get("PortBindings") or {}).keys()):
        found.append(_unexpressible("Config.ExposedPorts", unpublished))  # `docker run --expose`: a create publishes
    memory, swap = host.get("Memory") or 0, host.get("MemorySwap") or 0
    if swap not in (0, -1, 2 * memory):  # a create with a memory limit gets twice as much swap
        found.append(_unexpressible("HostConfig.MemorySwap", swap))
    for name, endpoint in (inspected["NetworkSettings"].get("Networks") or {}).items():
        fixed = {key for key, value in (endpoint.get("IPAMConfig") or {}).items() if value}
        if fixed - {"IPv4Address", "LinkLocalIPs"} or endpoint.get("Links"):
            found.append(_unexpressible(f"NetworkSettings.Networks.{name}", "a fixed IPv6 address or links"))
    found += [
        _unexpressible(f"Mounts.{mount.get('Destination')}", mount.get("Type"))
        for mount in inspected.get("Mounts") or ()
        if mount.get("Type") not in ("bind", "volume")
    ]
    return found


def host_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """The HostConfig settings the new container, made from the rebuilt body, does not have as the old one does.
    Compared with a container the same engine made, rather than with a list of defaults: what the daemon gives
    every container (its log options, its shm size) is the same on both, what `docker run` set differs."""
    keys = (old.keys() | new.keys()) - _EXPRESSED_HOST - _HOW_ASKED
    return [
        {
            "field": f"HostConfig.{key}",
            "message": f"is {old.get(key)!r}, which a create cannot express (it would be {new.get(key)!r}): "
            "recreate would drop it",
        }
        for key in sorted(keys)
        if (old.get(key) or None) != (new.get(key) or None)  # [] from the CLI, null from the API: both unset
    ]


def _own(value: Any, image_value: Any) -> Any:
    """The container's value unless it is the image's: that one the new image supplies."""
    return None if not value or value == image_value else value


def _pairs(items: list[str] | None) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items or ())


def _binding(binding: Mapping[str, str]) -> str | int | None:
    address, port = binding.get("HostIp") or "", binding.get("HostPort") or ""
    if not address:
        return int(port) if port else None
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _ports(host: Mapping[str, Any]) -> dict[str, Any]:
    ports: dict[str, Any] = {}
    for port, bindings in (host.get("PortBindings") or {}).items():
        hosts = [_binding(b) for b in bindings or ()]
        ports[port] = hosts[0] if len(hosts) == 1 else (hosts or None)
    return ports


def _volumes(mounts: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Binds by their source, and volumes, named or anonymous, by name: the new container mounts the same data."""
    volumes = []
    for mount in mounts:
        source = {"host_path": mount["Source"]} if mount["Type"] == "bind" else {"volume": mount["Name"]}
        volumes.append({**source, "container_path": mount["Destination"], "read_only": not mount.get("RW", True)})
    return volumes


def _healthcheck(check: Mapping[str, Any] | None, image_check: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not check or check == image_check:
        return None
    seconds = {
        key: check[name] / 1e9
        for key, name in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"))
        if check.get(name)
    }
    retries = {"retries": check["Retries"]} if check.get("Retries") else {}
    return {**({"test": check["Test"]} if check.get("Test") else {}), **seconds, **retries}


def _endpoint(name: str, endpoint: Mapping[str, Any], own_aliases: set[str]) -> dict[str, Any]:
    """An item of `networks`: what was asked of the endpoint, not what the engine gave it (its own address, and the
    aliases it gives every container on a user-defined network, `own_aliases`)."""
    aliases = [alias for alias in endpoint.get("Aliases") or () if alias not in own_aliases]
    fixed = (endpoint.get("IPAMConfig") or {}).get("IPv4Address")
    return {"name": name, **({"aliases": aliases} if aliases else {}), **({"ipv4_address": fixed} if fixed else {})}


def _network(inspected: Mapping[str, Any]) -> dict[str, Any]:
    """The container's networks, the one of its NetworkMode first (the create's), then the others it was connected
    to, by name; or its mode."""
    mode = inspected["HostConfig"].get("NetworkMode") or ""
    if mode in ("host", "none") or ":" in mode:
        return {"network_mode": mode}
    endpoints = inspected["NetworkSettings"].get("Networks") or {}
    if not endpoints:  # disconnected from every network
        return {} if mode in _DEFAULT_MODES else {"network": mode}
    first = "bridge" if mode in _DEFAULT_MODES else mode
    if first not in endpoints and first == mode:
        # A mode given by id, and the endpoints are by name. A container that never ran has no NetworkID to tell it
        # by: its networks are then in the order of their names.
        first = next((name for name, e in endpoints.items() if (e.get("NetworkID") or "").startswith(mode)), first)
    names = sorted(endpoints, key=lambda name: (name != first, name))
    # Its short id and its hostname: the new container gets its own of both.
    own = {inspected["Id"][:12], inspected["Config"].get("Hostname") or ""}
    items = [_endpoint(name, endpoints[name], own) for name in names]
    return {} if items == [{"name": "bridge"}] else {"networks": items}


def _restart(policy: Mapping[str, Any] | None) -> str | None:
    name = (policy or {}).get("Name") or "no"
    if name == "no":
        return None
    retries = policy.get("MaximumRetryCount") if policy else 0
    return f"{name}:{retries}" if name == "on-failure" and retries else name


def _mode(value: str | None) -> str | None:
    return None if not value or value in _DEFAULT_MODES else value


def create_body(inspected: Mapping[str, Any], image_config: Mapping[str, Any], image: str) -> dict[str, Any]:
    """The create body that makes this container again from `image`; `image_config` is its current image's
    Config, whose defaults are left to the new image."""
    host, config = inspected["HostConfig"], inspected["Config"]
    mode = host.get("NetworkMode") or ""
    own_cmd = config.get("Cmd") if config.get("Entrypoint") != image_config.get("Entrypoint") else None
    environment = _pairs(config.get("Env"))
    image_environment = _pairs(image_config.get("Env"))
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if k not in _OWN_LABELS}
    image_labels = image_config.get("Labels") or {}
    body: dict[str, Any] = {
        "name": inspected["Name"].lstrip("/"),
        "image": image,
        "ports": _ports(host),
        "environment": {k: v for k, v in environment.items() if image_environment.get(k) != v},
        "labels": {k: v for k, v in labels.items() if image_labels.get(k) != v},
        "volumes": _volumes(inspected.get("Mounts") or []),
        "command": own_cmd or _own(config.get("Cmd"), image_config.get("Cmd")),
        "entrypoint": _own(config.get("Entrypoint"), image_config.get("Entrypoint")),
        "working_dir": _own(config.get("WorkingDir"), image_config.get("WorkingDir")),
        "user": _own(config.get("User"), image_config.get("User")),
        # A host's or another container's network gives the container that one's hostname too.
        "hostname": _own(config.get("Hostname"), inspected["Id"][:12]) if ":" not in mode and mode != "host" else None,
        "healthcheck": _healthcheck(config.get("Healthcheck"), image_config.get("Healthcheck")),
        "restart_policy": _restart(host.get("RestartPolicy")),
        "memory": host.get("Memory") or None,
        "memory_reservation": host.get("MemoryReservation") or None,
        "cpus": (host.get("NanoCpus") or 0) / 1e9 or None,
        "pids_limit": host.get("PidsLimit") if (host.get("PidsLimit") or 0) > 0 else None,
        "privileged": bool(host.get("Privileged")),
        "cap_add": list(host.get("CapAdd") or ()),
        "devices": [
            f"{d['PathOnHost']}:{d['PathInContainer']}:{d.get('CgroupPermissions') or 'rwm'}"
            for d in host.get("Devices") or ()
        ],
        "sysctls": dict(host.get("Sysctls") or {}),
        "runtime": _own(host.get("Runtime"), "runc"),
        "security_opt": [opt for opt in host.get("SecurityOpt") or () if opt not in SECURITY_OPT],
        "pid_mode": _mode(host.get("PidMode")),
        "ipc_mode": _mode(host.get("IpcMode")),
        "uts_mode": _mode(host.get("UTSMode")),
        "userns_mode": _mode(host.get("UsernsMode")),
        **_network(inspected),
    }
    return {key: value for key, value in body.items() if value not in (None, [], {})}


def refuse_unexpressed(found: list[FieldError], container: str) -> Conflict:
    fields = ", ".join(item["field"] for item in found)
    return Conflict(f"container {container} has settings a recreate cannot carry over: {fields}", errors=found)
