"""The create-time host-safety policy: what a create request may ask of the host.

Access to the Docker socket is root on the host, so by default a container gets nothing that
reaches the host: no privileges, no added capabilities, none of the host's namespaces, no
devices, no bind outside an allowed root. The policy reads the parsed `CreateRequest`, never
client JSON, and decides each field that touches the host: a `Decision` names the field by the request's own
path, the rule that decided it and why. The denied ones are the 403's errors and a dry run answers them all,
so that the two can never disagree. A rule `policy.<key>` is that key of [policy]; `moorage.<name>` is fixed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from moorage.containers.model import (
    VOLUME_NAME,
    BindVolume,
    ContainerUpdate,
    CreateRequest,
    Healthcheck,
    RestartPolicy,
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
# Rules named in more than one place: the fixed ones (moorage.) and two keys of [policy].
_FORBIDDEN = "moorage.forbidden_paths"
_VOLUME_NAME = "moorage.volume_name"
PLAIN_VOLUMES = "moorage.plain_volumes"
_NO_NEW_PRIVILEGES = "moorage.no_new_privileges"
_PATHS = "policy.allowed_host_paths"
_HEALTHCHECK = "policy.min_healthcheck_interval"
# Each request field that can name a namespace, and the flag that lets it join the host's.
_NAMESPACE_FLAGS = (
    ("network", "allow_host_network"),
    ("network_mode", "allow_host_network"),
    ("pid_mode", "allow_host_pid"),
    ("ipc_mode", "allow_host_ipc"),
    ("uts_mode", "allow_host_uts"),
    ("userns_mode", "allow_host_userns"),
)


class Verdict(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    DEFAULTED = "defaulted"  # the policy gave the value: the request left it out
    UNKNOWN = "unknown"  # a dry run cannot tell without what it does not fetch (an image it would pull)


@dataclass(frozen=True)
class Decision:
    """What the policy decided of one field, by which rule and why."""

    field: str
    decision: Verdict
    rule: str
    reason: str

    @property
    def error(self) -> FieldError:
        return {"field": self.field, "message": self.reason, "rule": self.rule}


def _allowed(field: str, rule: str, reason: str) -> Decision:
    return Decision(field, Verdict.ALLOWED, rule, reason)


def _denied(field: str, rule: str, reason: str) -> Decision:
    return Decision(field, Verdict.DENIED, rule, reason)


def judged(field: str, rule: str, problem: str | None, fine: str) -> Decision:
    """Denied for `problem`, or allowed for the reason `fine`."""
    return _denied(field, rule, problem) if problem else _allowed(field, rule, fine)


def denials(decisions: Iterable[Decision]) -> list[FieldError]:
    """The denied decisions as the 403's errors: field, message and rule."""
    return [decision.error for decision in decisions if decision.decision is Verdict.DENIED]


def looked_up(fields: Iterable[str], violations: list[FieldError], rule: str, fine: str) -> list[Decision]:
    """The decisions of a rule judged by looking in the engine: each of `fields` denied for its violations (whose
    own rule they carry), or allowed for the reason `fine`."""
    decisions = []
    for field in fields:
        found = [v for v in violations if v["field"] == field]
        decisions += [_denied(field, v.get("rule", rule), v["message"]) for v in found] or [_allowed(field, rule, fine)]
    return decisions


def within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def forbidden_path(path: str, extra: tuple[str, ...] = ()) -> str | None:
    """The system path that `path` is, lies under or contains, if any."""
    return next((f for f in FORBIDDEN_PATHS + extra if within(path, f) or within(f, path)), None)


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
    """Why a bind of `path` is refused, or None."""
    return bind_judgement(path, policy)[1]


def bind_judgement(path: str, policy: PolicySettings) -> tuple[str, str | None]:
    """The rule that decides a bind of `path`, and why it is refused (None: allowed). The literal path is judged
    against the forbidden paths and the allowed roots before anything is looked up, and only a path under an
    allowed root is looked at: a refusal says nothing about what exists outside them or where a symlink leads.
    The literal path must then be the real one, so that what is checked is what the engine mounts. The engine
    resolves the path again at each start, so provision.py also keeps writable binds from nesting and
    re-checks binds at start."""
    if not os.path.isabs(path):
        return _PATHS, "must be an absolute path"
    if "\x00" in path:
        return _PATHS, "must not contain a NUL character"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return _PATHS, "must be valid Unicode"
    if ".." in path.split("/"):
        return _PATHS, "must not contain '..'"
    # Normalised without a look at the file system. A leading "//" survives that (POSIX leaves it to the
    # system), and the engine and the nesting check would not read it alike: refused.
    literal = os.path.normpath(path)
    if literal.startswith("//"):
        return _PATHS, "must not begin with //"
    if found := forbidden_path(literal, policy.protected_paths):
        return _FORBIDDEN, f"{literal} is or contains {found}, which is never allowed"
    if not any(within(literal, root) for root in policy.allowed_host_paths):
        allowed = ", ".join(policy.allowed_host_paths) or "none"
        return _PATHS, f"must lie under an allowed host path (allowed: {allowed})"
    return _PATHS, _walk_problem(literal)


def _volumes(req: CreateRequest, policy: PolicySettings) -> Iterator[Decision]:
    for index, volume in enumerate(req.volumes):
        if isinstance(volume, BindVolume):
            rule, problem = bind_judgement(volume.host_path, policy)
            yield judged(f"volumes.{index}.host_path", rule, problem, "under an allowed host path, with no symlink")
        else:
            plain = re.fullmatch(VOLUME_NAME, volume.volume)
            problem = None if plain else "must be a plain volume name"
            yield judged(f"volumes.{index}.volume", _VOLUME_NAME, problem, "a named volume, not a host path")


def _privileges(req: CreateRequest, policy: PolicySettings) -> Iterator[Decision]:
    refused = req.privileged and not policy.allow_privileged
    problem = "privileged containers are not allowed" if refused else None
    yield judged("privileged", "policy.allow_privileged", problem, "privileged" if req.privileged else "not privileged")
    if not req.cap_add:
        yield _allowed("cap_add", "policy.allowed_capabilities", "no capability added to the engine's default set")
    for index, name in enumerate(req.cap_add):
        capability = normalize_capability(name)
        refused = capability == "ALL" or capability not in policy.allowed_capabilities
        problem = f"capability {capability} is not allowed" if refused else None
        yield judged(f"cap_add.{index}", "policy.allowed_capabilities", problem, f"capability {capability} is allowed")
    for index, option in enumerate(req.security_opt):
        problem = None if option in NO_NEW_PRIVILEGES else "only no-new-privileges is allowed"
        yield judged(f"security_opt.{index}", _NO_NEW_PRIVILEGES, problem, "no-new-privileges, which is always set")
    if not req.security_opt:
        yield Decision("security_opt", Verdict.DEFAULTED, _NO_NEW_PRIVILEGES, "no-new-privileges, always set")
    if req.runtime is None:
        yield _allowed("runtime", "policy.allowed_runtimes", "the engine's default runtime")
    else:
        problem = None if req.runtime in policy.allowed_runtimes else f"runtime {req.runtime} is not allowed"
        yield judged("runtime", "policy.allowed_runtimes", problem, f"runtime {req.runtime} is allowed")


def _host_access(req: CreateRequest, policy: PolicySettings) -> Iterator[Decision]:
    for field, flag in _NAMESPACE_FLAGS:
        mode = getattr(req, field)
        if mode is None:
            continue
        shares = _joins_host(mode)
        problem = None
        if shares and not getattr(policy, flag):
            problem = f"{mode} is not allowed: it shares a namespace with the host or a container"
        fine = f"{mode} shares a namespace, which the policy allows" if shares else f"{mode}: not the host's"
        yield judged(field, f"policy.{flag}", problem, fine)
    for field, flag in _NAMESPACE_FLAGS[2:]:
        if getattr(req, field) is None:
            yield _allowed(field, f"policy.{flag}", "the container's own namespace (the engine's default)")
    if not (req.network or req.network_mode or req.networks):
        yield _allowed("network", "policy.allow_host_network", "the default bridge network")
    if not req.devices:
        yield _allowed("devices", "policy.allow_devices", "no device")
    for index in range(len(req.devices)):
        problem = None if policy.allow_devices else "devices are not allowed"
        yield judged(f"devices.{index}", "policy.allow_devices", problem, "devices are allowed")
    if not req.sysctls:
        yield _allowed("sysctls", "policy.allowed_sysctls", "no sysctl")
    for name in req.sysctls:
        problem = None if name in policy.allowed_sysctls else f"sysctl {name} is not allowed"
        yield judged(f"sysctls.{name}", "policy.allowed_sysctls", problem, f"sysctl {name} is allowed")


def _maximum(field: str, value: float | None, maximum: float | None, rule: str) -> Decision | None:
    """The decision on a limit that is asked: within the maximum or not; None when it is not asked."""
    if value is None:
        return None
    # Written so that NaN, which compares false with everything, is refused too.
    if maximum is not None and not value <= maximum:
        return _denied(field, rule, f"must be at most {maximum}")
    within = f"within the maximum {maximum}" if maximum is not None else "no maximum is set"
    return _allowed(field, rule, f"{value}, {within}")


def _limit(field: str, value: float | None, default: float | None, maximum: float | None) -> Decision:
    """A create's limit: asked (judged against the maximum), else the policy's default, else its maximum, as
    spec.py sets them (a limit asked as 0 is one left out)."""
    if value and (decided := _maximum(field, value, maximum, f"policy.max_{field}")):
        return decided
    if default is not None:
        return Decision(field, Verdict.DEFAULTED, f"policy.default_{field}", f"{default}, the policy's default")
    if maximum is not None:
        reason = f"{maximum}, the policy's maximum (it sets no default)"
        return Decision(field, Verdict.DEFAULTED, f"policy.max_{field}", reason)
    return _allowed(field, f"policy.max_{field}", "unlimited: the policy sets neither a default nor a maximum")


def _restart(restart: RestartPolicy | None, unset: str) -> Decision:
    reason = unset if restart is None else f"{restart.name}: the policy does not limit restart policies"
    return _allowed("restart_policy", "moorage.restart_policy", reason)


def refusal(violations: list[FieldError]) -> Forbidden:
    """The 403 for a request the policy refuses, naming each field (and the rule, where the policy's)."""
    fields = ", ".join(v["field"] for v in violations)
    return Forbidden(f"refused by the host-safety policy: {fields}", errors=violations)


def decide_update(update: ContainerUpdate, policy: PolicySettings) -> list[Decision]:
    """Every field of a live update (PATCH) decided: what it asks within the policy's maxima (a memory
    reservation within max_memory too, since a container may use that much whatever its limit)."""
    asked = [
        ("memory", update.memory, policy.max_memory, "policy.max_memory"),
        ("memory_reservation", update.memory_reservation, policy.max_memory, "policy.max_memory"),
        ("cpus", update.cpus, policy.max_cpus, "policy.max_cpus"),
        ("pids_limit", update.pids_limit, policy.max_pids_limit, "policy.max_pids_limit"),
    ]
    decisions = [
        _maximum(field, value, maximum, rule) or _allowed(field, rule, "left as it is")
        for field, value, maximum, rule in asked
    ]
    return [*decisions, _restart(update.restart_policy, "left as it is")]


def _limits(req: CreateRequest, policy: PolicySettings) -> Iterator[Decision]:
    yield _limit("memory", req.memory, policy.default_memory, policy.max_memory)
    reservation = _maximum("memory_reservation", req.memory_reservation, policy.max_memory, "policy.max_memory")
    yield reservation or _allowed("memory_reservation", "policy.max_memory", "none")
    yield _limit("cpus", req.cpus, policy.default_cpus, policy.max_cpus)
    yield _limit("pids_limit", req.pids_limit, policy.default_pids_limit, policy.max_pids_limit)
    yield _restart(req.restart_policy, "no: the engine's default")
    # The engine starts the next probe an interval after the last one ends, so the interval alone bounds the
    # rate of execs: a short timeout or start_period makes none more. 0 leaves the image's or the engine's.
    interval = req.healthcheck.interval if req.healthcheck else None
    if interval and interval < policy.min_healthcheck_interval:
        least = f"{policy.min_healthcheck_interval / 1e9:g}s"
        problem = f"must be 0 (the image's or the engine's default) or at least {least}"
        yield _denied("healthcheck.interval", _HEALTHCHECK, problem)
    elif interval:
        yield _allowed("healthcheck.interval", _HEALTHCHECK, f"every {interval / 1e9:g}s, no faster than the minimum")


def image_healthcheck_decisions(
    req: CreateRequest, image: Mapping[str, Any] | None, policy: PolicySettings
) -> list[Decision]:
    """The image's own HEALTHCHECK, which the engine uses for every part the request leaves out (a zero interval
    included): judged as the request's would be, once the image is here (None: it is not, and a dry run pulls
    nothing). Docker 25+ also probes every StartInterval during the start period; the request cannot give one,
    so it is always the image's."""
    own = req.healthcheck or Healthcheck()
    if image is None:
        if own.test and list(own.test)[:1] == ["NONE"]:
            return [_allowed("healthcheck", _HEALTHCHECK, "disabled")]
        reason = "the image is not on this host, and a dry run pulls nothing: its own healthcheck is judged then"
        return [Decision("healthcheck", Verdict.UNKNOWN, _HEALTHCHECK, reason)]
    inherited = (image.get("Config") or {}).get("Healthcheck") or {}
    test = own.test or inherited.get("Test") or ()
    if list(test)[:1] == ["NONE"]:
        return [_allowed("healthcheck", _HEALTHCHECK, "disabled")]
    least = f"{policy.min_healthcheck_interval / 1e9:g}s"
    decisions = []
    interval = own.interval or inherited.get("Interval") or 0
    if interval and interval < policy.min_healthcheck_interval:
        message = f"the image's healthcheck runs every {_ms(interval)}: give an interval of at least {least}"
        decisions.append(_denied("healthcheck.interval", _HEALTHCHECK, message))
    start_interval = inherited.get("StartInterval") or 0
    if (own.start_period or inherited.get("StartPeriod")) and 0 < start_interval < policy.min_healthcheck_interval:
        message = (
            f"the image's healthcheck start interval is too fast: it runs every {_ms(start_interval)} during its"
            f" start period, and at least {least} is allowed; use another image or disable the healthcheck"
            ' (test: ["NONE"])'
        )
        decisions.append(_denied("healthcheck.start_interval", _HEALTHCHECK, message))
    fine = "probes no faster than the minimum" if test else "none"
    return decisions or [_allowed("healthcheck", _HEALTHCHECK, fine)]


def image_healthcheck_violations(
    req: CreateRequest, image: Mapping[str, Any], policy: PolicySettings
) -> list[FieldError]:
    return denials(image_healthcheck_decisions(req, image, policy))


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


def _ports(req: CreateRequest, policy: PolicySettings) -> Iterator[Decision]:
    """Named as ports.80/tcp.0.host_ip: the port key as loaded, then the binding's place in its list."""
    if not req.ports:
        yield _allowed("ports", "policy.allowed_host_ips", "none published")
    for port, bindings in req.ports.items():
        for index, binding in enumerate(bindings):
            problem = _host_ip_problem(binding.host_ip, policy.allowed_host_ips)
            address = binding.host_ip or "every address"
            yield judged(f"ports.{port}.{index}.host_ip", "policy.allowed_host_ips", problem, f"{address} is allowed")
            # None or 0: any free port, which the engine takes from the unprivileged range.
            problem = None
            if binding.host_port and binding.host_port < 1024 and not policy.allow_privileged_ports:
                problem = f"host port {binding.host_port} is privileged (below 1024)"
            chosen = f"host port {binding.host_port}" if binding.host_port else "a free host port"
            yield judged(f"ports.{port}.{index}.host_port", "policy.allow_privileged_ports", problem, chosen)


def decide(req: CreateRequest, policy: PolicySettings) -> list[Decision]:
    """Every field of a create that touches the host, decided from the request alone (the engine's look-ups and
    the image's healthcheck are decided by provision.py)."""
    rules = (_volumes, _privileges, _host_access, _limits, _ports)
    return [decision for rule in rules for decision in rule(req, policy)]


def check(req: CreateRequest, policy: PolicySettings) -> list[FieldError]:
    """Every violation of the policy, each with the request's field path; empty when it may be created."""
    return denials(decide(req, policy))


def _violation(field: str, message: str) -> FieldError:
    return {"field": field, "message": message, "rule": PLAIN_VOLUMES}


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
