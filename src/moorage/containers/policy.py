"""The create-time host-safety policy: what a create request may ask of the host.

Access to the Docker socket is root on the host, so by default a container gets nothing that
reaches the host: no privileges, no added capabilities, none of the host's namespaces, no
devices, no bind outside an allowed root. The policy reads the parsed `CreateRequest`, never
client JSON, and names every violation with the request's own field path; the caller answers 403.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Iterator, Mapping
from typing import Any

from moorage.containers.model import (
    VOLUME_NAME,
    BindVolume,
    ContainerUpdate,
    CreateRequest,
    Healthcheck,
    normalize_capability,
)
from moorage.errors import FieldError, Forbidden
from moorage.settings import PolicySettings

# Binding any of these, anything under them or any directory above them gives the host away. The
# socket paths are under /run and /var/run already; they are named for the reader who greps.
FORBIDDEN_PATHS = (
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
    "/run", "/run/docker.sock", "/sbin", "/sys", "/usr", "/var/lib/containerd", "/var/lib/docker",
    "/var/lib/moorage", "/var/run", "/var/run/docker.sock",
)  # fmt: skip
NO_NEW_PRIVILEGES = frozenset({"no-new-privileges", "no-new-privileges:true"})
# Each request field that can name a namespace, and the flag that lets it join the host's.
_NAMESPACE_FLAGS = (
    ("network", "allow_host_network"),
    ("network_mode", "allow_host_network"),
    ("pid_mode", "allow_host_pid"),
    ("ipc_mode", "allow_host_ipc"),
    ("uts_mode", "allow_host_uts"),
    ("userns_mode", "allow_host_userns"),
)


def within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def forbidden_path(path: str, extra: tuple[str, ...] = ()) -> str | None:
    """The system path that `path` is, lies under or contains, if any."""
    return next((f for f in FORBIDDEN_PATHS + extra if within(path, f) or within(f, path)), None)


def _violation(field: str, message: str) -> FieldError:
    return {"field": field, "message": message}


def _joins_host(mode: str) -> bool:
    """Whether a mode shares a namespace: the host's, or another container's (which may be the host's)."""
    lowered = mode.strip().lower()
    return lowered == "host" or lowered.startswith("container:")


def _walk_problem(path: str) -> str | None:
    """Why `path` is not itself a real, reachable path, looking at one component at a time and never past a
    symlink, so that nothing a symlink points at (existing or not) can change the answer."""
    parts = [part for part in path.split("/") if part]
    for depth in range(len(parts) + 1):
        prefix = "/" + "/".join(parts[:depth])
        try:
            mode = os.lstat(prefix).st_mode
        except FileNotFoundError:
            return "does not exist: moorage vouches only for a path that it can see"
        except OSError:  # not a directory on the way, or one moorage may not search
            return "moorage cannot look into every part of it (each must be a directory that it may read)"
        if stat.S_ISLNK(mode):
            return "must not go through a symlink: the engine, as root, would follow it"
    return None


def bind_problem(path: str, policy: PolicySettings) -> str | None:
    """Why a bind of `path` is refused, or None. The literal path is judged against the forbidden paths and the
    allowed roots before anything is looked up, and only a path under an allowed root is looked at: a refusal
    says nothing about what exists outside them or where a symlink leads. The literal path must then be the
    real one, so that what is checked is what the engine mounts. The engine resolves the path again at each
    start, so provision.py also keeps writable binds from nesting and re-checks binds at start."""
    if not os.path.isabs(path):
        return "must be an absolute path"
    if "\x00" in path:
        return "must not contain a NUL character"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode"
    if ".." in path.split("/"):
        return "must not contain '..'"
    # Normalised without a look at the file system. A leading "//" survives that (POSIX leaves it to the
    # system), and the engine and the nesting check would not read it alike: refused.
    literal = os.path.normpath(path)
    if literal.startswith("//"):
        return "must not begin with //"
    if found := forbidden_path(literal, policy.protected_paths):
        return f"{literal} is or contains {found}, which is never allowed"
    if not any(within(literal, root) for root in policy.allowed_host_paths):
        allowed = ", ".join(policy.allowed_host_paths) or "none"
        return f"must lie under an allowed host path (allowed: {allowed})"
    return _walk_problem(literal)


def _volumes(req: CreateRequest, policy: PolicySettings) -> Iterator[FieldError]:
    for index, volume in enumerate(req.volumes):
        if isinstance(volume, BindVolume):
            if problem := bind_problem(volume.host_path, policy):
                yield _violation(f"volumes.{index}.host_path", problem)
        elif not re.fullmatch(VOLUME_NAME, volume.volume):
            yield _violation(f"volumes.{index}.volume", "must be a plain volume name")


def _privileges(req: CreateRequest, policy: PolicySettings) -> Iterator[FieldError]:
    if req.privileged and not policy.allow_privileged:
        yield _violation("privileged", "privileged containers are not allowed")
    for index, name in enumerate(req.cap_add):
        capability = normalize_capability(name)
        if capability == "ALL" or capability not in policy.allowed_capabilities:
            yield _violation(f"cap_add.{index}", f"capability {capability} is not allowed")
    for index, option in enumerate(req.security_opt):
        if option not in NO_NEW_PRIVILEGES:
            yield _violation(f"security_opt.{index}", "only no-new-privileges is allowed")
    if req.runtime is not None and req.runtime not in policy.allowed_runtimes:
        yield _violation("runtime", f"runtime {req.runtime} is not allowed")


def _host_access(req: CreateRequest, policy: PolicySettings) -> Iterator[FieldError]:
    for field, flag in _NAMESPACE_FLAGS:
        mode = getattr(req, field)
        if mode is not None and _joins_host(mode) and not getattr(policy, flag):
            yield _violation(field, f"{mode} is not allowed: it shares a namespace with the host or a container")
    if not policy.allow_devices:
        yield from (_violation(f"devices.{i}", "devices are not allowed") for i in range(len(req.devices)))
    for name in req.sysctls:
        if name not in policy.allowed_sysctls:
            yield _violation(f"sysctls.{name}", f"sysctl {name} is not allowed")


def _maxima(limits: CreateRequest | ContainerUpdate, policy: PolicySettings) -> Iterator[FieldError]:
    """The limits a create or an update asks, within the policy's maxima: a memory reservation within
    max_memory too, since a container may use that much whatever its limit."""
    asked = [
        ("memory", limits.memory, policy.max_memory),
        ("pids_limit", limits.pids_limit, policy.max_pids_limit),
        ("cpus", limits.cpus, policy.max_cpus),
    ]
    if isinstance(limits, ContainerUpdate):
        asked.append(("memory_reservation", limits.memory_reservation, policy.max_memory))
    for field, value, maximum in asked:
        # Written so that NaN, which compares false with everything, is refused too.
        if value is not None and maximum is not None and not value <= maximum:
            yield _violation(field, f"must be at most {maximum}")


def refusal(violations: list[FieldError]) -> Forbidden:
    """The 403 for a request the policy refuses, naming each field."""
    fields = ", ".join(v["field"] for v in violations)
    return Forbidden(f"refused by the host-safety policy: {fields}", errors=violations)


def check_update(update: ContainerUpdate, policy: PolicySettings) -> list[FieldError]:
    """Every violation of the policy by a live update (PATCH), each with its field; empty when it may be made."""
    return list(_maxima(update, policy))


def _limits(req: CreateRequest, policy: PolicySettings) -> Iterator[FieldError]:
    yield from _maxima(req, policy)
    # The engine starts the next probe an interval after the last one ends, so the interval alone bounds the
    # rate of execs: a short timeout or start_period makes none more. 0 leaves the image's or the engine's.
    interval = req.healthcheck.interval if req.healthcheck else None
    if interval and interval < policy.min_healthcheck_interval:
        least = f"{policy.min_healthcheck_interval / 1e9:g}s"
        yield _violation("healthcheck.interval", f"must be 0 (the image's or the engine's default) or at least {least}")


def image_healthcheck_violations(
    req: CreateRequest, image: Mapping[str, Any], policy: PolicySettings
) -> list[FieldError]:
    """The image's own HEALTHCHECK, which the engine uses for every part the request leaves out (a zero interval
    included): judged as the request's would be, once the image is here. Docker 25+ also probes every
    StartInterval during the start period; the request cannot give one, so it is always the image's."""
    own = req.healthcheck or Healthcheck()
    inherited = (image.get("Config") or {}).get("Healthcheck") or {}
    test = own.test or inherited.get("Test") or ()
    if list(test)[:1] == ["NONE"]:
        return []
    least = f"{policy.min_healthcheck_interval / 1e9:g}s"
    violations = []
    interval = own.interval or inherited.get("Interval") or 0
    if interval and interval < policy.min_healthcheck_interval:
        message = f"the image's healthcheck runs every {_ms(interval)}: give an interval of at least {least}"
        violations.append(_violation("healthcheck.interval", message))
    start_interval = inherited.get("StartInterval") or 0
    if (own.start_period or inherited.get("StartPeriod")) and 0 < start_interval < policy.min_healthcheck_interval:
        message = (
            f"the image's healthcheck start interval is too fast: it runs every {_ms(start_interval)} during its"
            f" start period, and at least {least} is allowed; use another image or disable the healthcheck"
            ' (test: ["NONE"])'
        )
        violations.append(_violation("healthcheck.start_interval", message))
    return violations


def _ms(nanoseconds: int) -> str:
    return f"{nanoseconds / 1e6:g}ms"


def _host_ip_problem(host_ip: str | None, allowed: frozenset[str]) -> str | None:
    """Why a binding's host address is refused, or None; an empty `allowed` allows any address."""
    listed = ", ".join(sorted(allowed))
    if host_ip is None:
        if not allowed or "0.0.0.0" in allowed:
            return None
        return f"an omitted host_ip means every address (0.0.0.0 and ::), which is not allowed: give one of {listed}"
    try:
        address = str(ipaddress.ip_address(host_ip))
    except ValueError:
        return "must be an IP address"
    if allowed and address not in allowed:
        return f"{address} is not an allowed host address (allowed: {listed})"
    return None


def _ports(req: CreateRequest, policy: PolicySettings) -> Iterator[FieldError]:
    """Named as ports.80/tcp.0.host_ip: the port key as loaded, then the binding's place in its list."""
    for port, bindings in req.ports.items():
        for index, binding in enumerate(bindings):
            if problem := _host_ip_problem(binding.host_ip, policy.allowed_host_ips):
                yield _violation(f"ports.{port}.{index}.host_ip", problem)
            # None or 0: any free port, which the engine takes from the unprivileged range.
            if binding.host_port and binding.host_port < 1024 and not policy.allow_privileged_ports:
                yield _violation(
                    f"ports.{port}.{index}.host_port", f"host port {binding.host_port} is privileged (below 1024)"
                )


def check(req: CreateRequest, policy: PolicySettings) -> list[FieldError]:
    """Every violation of the policy, each with the request's field path; empty when it may be created."""
    rules = (_volumes, _privileges, _host_access, _limits, _ports)
    return [violation for rule in rules for violation in rule(req, policy)]


def check_existing_volume(inspect: Mapping[str, Any], field: str) -> list[FieldError]:
    """An existing volume the request names. A local volume with a `device=` or `o=bind` option is a
    bind mount in disguise (the Portainer bypass), so any driver option is refused, as is any driver
    but local."""
    driver, options = inspect.get("Driver"), inspect.get("Options") or {}
    found = []
    if driver != "local":
        found.append(_violation(field, f"volume driver {driver} is not allowed, only local"))
    if options:
        found.append(_violation(field, f"a volume with driver options ({', '.join(sorted(options))}) is not allowed"))
    return found
