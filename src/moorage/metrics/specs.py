"""What a running container was configured with, as cAdvisor reports it: its cgroup as `id`, its image, its labels,
its limits (0 when unlimited, not the host's RAM that the engine's stats show) and when it started."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from moorage.engine.shapes import inspected_name
from moorage.timestamps import rfc3339_ns

# The kernel's CFS period when a container sets none, and the shares of a container that sets none.
DEFAULT_CPU_PERIOD = 100_000
DEFAULT_CPU_SHARES = 1024


@dataclass(frozen=True)
class Cgroups:
    """How the engine lays out its containers' cgroups (`docker info`: CgroupDriver)."""

    driver: str = "cgroupfs"

    def path(self, container_id: str, parent: str) -> str:
        """The container's cgroup, as cAdvisor's `id` label names it."""
        if self.driver == "systemd":
            return f"{_slice_path(parent or 'system.slice')}/docker-{container_id}.scope"
        return f"/{(parent or 'docker').strip('/')}/{container_id}"


def _slice_path(slice_name: str) -> str:
    """systemd nests `a-b.slice` inside `a.slice`: the path of `a-b.slice` is `/a.slice/a-b.slice`."""
    parts = slice_name.removesuffix(".slice").split("-")
    return "".join("/" + "-".join(parts[: n + 1]) + ".slice" for n in range(len(parts)))


@dataclass(frozen=True)
class ContainerSpec:
    id: str
    name: str
    cgroup: str
    image: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    memory_limit: int = 0
    cpu_period: int = DEFAULT_CPU_PERIOD
    cpu_quota: int = 0
    cpu_shares: int = DEFAULT_CPU_SHARES
    started_at: float = 0.0
    created_at: float = 0.0


def container_spec(inspected: Mapping[str, Any], cgroups: Cgroups) -> ContainerSpec:
    """The spec of an inspected container. `--cpus` is a quota over the default period, as the engine sets it."""
    host = inspected.get("HostConfig") or {}
    config = inspected.get("Config") or {}
    period = host.get("CpuPeriod") or DEFAULT_CPU_PERIOD
    quota = host.get("CpuQuota") or 0
    if not quota and host.get("NanoCpus"):
        quota = host["NanoCpus"] * period // 1_000_000_000
    return ContainerSpec(
        id=inspected["Id"],
        name=inspected_name(inspected),
        cgroup=cgroups.path(inspected["Id"], host.get("CgroupParent") or ""),
        image=config.get("Image") or "",
        labels=config.get("Labels") or {},
        memory_limit=host.get("Memory") or 0,
        cpu_period=period,
        cpu_quota=quota,
        cpu_shares=host.get("CpuShares") or DEFAULT_CPU_SHARES,
        started_at=_epoch((inspected.get("State") or {}).get("StartedAt")),
        created_at=_epoch(inspected.get("Created")),
    )


def _epoch(moment: str | None) -> float:
    """Unix seconds of an engine time; 0 for none (a container never started) or one not in UTC."""
    try:
        return max(0.0, rfc3339_ns(moment) / 1e9) if moment else 0.0
    except ValueError:
        return 0.0
