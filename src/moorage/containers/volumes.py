"""Named volumes: the policy on a new one, the engine's list filters, and who uses one.

A local volume with `type=none`, `o=bind` and `device=/some/path` is a bind mount in disguise (the
Portainer bypass): whoever mounts the volume mounts that host path. So a new volume's driver must be
allowed, driver options need their own flag, and a `device` that is a host path must pass the same
rules as a bind (bind_judgement). A container moorage creates still may not use a volume with options
(policy.check_existing_volume), so the nesting rule of binds.py is never bypassed through one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import aiodocker

from moorage.containers.diskusage import engine_disk_usage
from moorage.containers.policy import Decision, bind_judgement, judged
from moorage.engine.client import engine_json
from moorage.engine.shapes import Seen, all_seen, listed_name
from moorage.settings import PolicySettings


def volume_decisions(driver: str, options: Mapping[str, str], policy: PolicySettings) -> list[Decision]:
    """The policy's decision on each field of a new volume that reaches the host (`driver`, `driver_opts`,
    `driver_opts.device` when it names a host path)."""
    allowed = ", ".join(sorted(policy.allowed_volume_drivers)) or "none"
    problem = (
        None
        if driver in policy.allowed_volume_drivers
        else f"volume driver {driver} is not allowed (allowed: {allowed})"
    )
    decisions = [judged("driver", "policy.allowed_volume_drivers", problem, f"volume driver {driver} is allowed")]
    refused = options and not policy.allow_volume_driver_opts
    problem = "driver options are not allowed" if refused else None
    fine = "driver options are allowed" if options else "none"
    decisions.append(judged("driver_opts", "policy.allow_volume_driver_opts", problem, fine))
    if not refused and (device := options.get("device")) is not None and _reaches_host(options):
        rule, problem = bind_judgement(device, policy)
        problem = problem and f"mounts a host path like a bind: {problem}"
        decisions.append(judged("driver_opts.device", rule, problem, "a host path under an allowed host path"))
    return decisions


def _reaches_host(options: Mapping[str, str]) -> bool:
    """Whether the local driver would mount something of the host's file system at `device`: a bind
    (`type=none`, `o=bind`), or a block device or file given by its path. A tmpfs or a network file system
    names no host path."""
    mount_options = {option.strip() for option in options.get("o", "").split(",")}
    if mount_options & {"bind", "rbind"} or options.get("type", "none") in ("", "none"):
        return True
    return options.get("device", "").startswith("/")


async def volume_users(docker: aiodocker.Docker, name: str, seen: Seen = all_seen) -> list[dict[str, str]]:
    """The containers (any state) that mount the volume, as {id, name}, by name; those of the engine's list items
    `seen` keeps (a scoped caller's)."""
    found = seen(await engine_json(docker, "containers/json", {"all": "1", "filters": json.dumps({"volume": [name]})}))
    users = [{"id": c["Id"], "name": listed_name(c)} for c in found if _mounts(c.get("Mounts"), name)]
    return sorted(users, key=lambda user: user["name"])


def _mounts(mounts: Iterable[Mapping[str, Any]] | None, name: str) -> bool:
    """The engine's `volume` filter also matches a mount's destination: only a mount of the volume itself counts."""
    return any(m.get("Type") == "volume" and m.get("Name") == name for m in mounts or ())


async def volume_size(docker: aiodocker.Docker, name: str) -> int | None:
    """The volume's size in bytes as `docker system df -v` shows it; None where the engine does not tell (a
    driver other than local). `type=volume` spares newer engines the rest; Docker 20.10 ignores it."""
    usage = await engine_disk_usage(docker, {"type": "volume"})
    for volume in usage.get("Volumes") or ():
        if volume["Name"] == name:
            size = (volume.get("UsageData") or {}).get("Size", -1)
            return size if size >= 0 else None
    return None
