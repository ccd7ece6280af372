"""Container schemas: the list query, and the engine's list and inspect payloads in moorage's shape.

Ports are shown in the shape `POST /containers` takes them, keyed "80/tcp", so what a caller reads
back can be compared with what it sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from marshmallow import Schema, fields, validate

from .common import DockerTime, PageQuery, RequestSchema
from .fields import matches

STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
# Docker's rule for container names; ids are hex, so one pattern admits both references. Unanchored:
# use it with `fields.matches`, which matches the whole string.
CONTAINER_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"

PortMap = dict[str, list[dict[str, Any]]]


class ContainerListQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(STATUSES))
    name = fields.String(validate=matches(r"[a-zA-Z0-9_.-]{1,128}", "letters, digits, _ . - only (a part of a name)"))
    label = fields.List(
        fields.String(validate=matches(r"[^=\s][^=\x00-\x1f]{0,254}(=[^\x00-\x1f]{0,1024})?", "KEY or KEY=VALUE"))
    )


class ContainerRef(RequestSchema):
    """A container id, short id or name in the path; anything else never reaches the engine's URL."""

    container_id = fields.String(required=True, validate=matches(CONTAINER_NAME, "not a container id or name"))


def _binding(host_ip: str | None, host_port: str | int | None) -> dict[str, Any]:
    return {"host_ip": host_ip or None, "host_port": int(host_port) if host_port else None}


def ports_from_list(entries: Iterable[Mapping[str, Any]] | None) -> PortMap:
    """The list payload's `Ports` ([{PrivatePort, PublicPort, IP, Type}]) keyed by "port/proto"."""
    ports: PortMap = {}
    for entry in entries or ():
        bindings = ports.setdefault(f"{entry['PrivatePort']}/{entry['Type']}", [])
        if entry.get("PublicPort"):
            bindings.append(_binding(entry.get("IP"), entry["PublicPort"]))
    return ports


def ports_from_inspect(mapping: Mapping[str, Any] | None) -> PortMap:
    """Inspect's `{"80/tcp": [{HostIp, HostPort}] | null}`; an empty HostPort means "any free port"."""
    return {
        port: [_binding(b.get("HostIp"), b.get("HostPort")) for b in bindings or ()]
        for port, bindings in (mapping or {}).items()
    }


def environment(env: Iterable[str] | None) -> dict[str, str]:
    pairs = (item.partition("=") for item in env or ())
    return {key: value for key, _, value in pairs}


def restart_policy(policy: Mapping[str, Any] | None) -> str:
    """As `docker run --restart` spells it: no, always, unless-stopped, on-failure[:N]."""
    name = (policy or {}).get("Name") or "no"
    retries = (policy or {}).get("MaximumRetryCount") or 0
    return f"{name}:{retries}" if name == "on-failure" and retries else name


def volumes(mounts: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Mounts in the shape of the create request's `volumes`, with their type."""
    out = []
    for mount in mounts or ():
        kind = mount.get("Type", "bind")
        item: dict[str, Any] = {"type": kind}
        if kind == "bind":
            item["host_path"] = mount.get("Source")
        elif kind == "volume":
            item["volume"] = mount.get("Name")
        item["container_path"] = mount.get("Destination")
        item["read_only"] = not mount.get("RW", True)
        out.append(item)
    return out


class ContainerSummarySchema(Schema):
    """One item of `GET /containers`, dumped from the engine's list payload."""

    id = fields.String(attribute="Id")
    name = fields.Function(lambda c: (c["Names"] or [""])[0].lstrip("/"))
    status = fields.String(attribute="State")
    status_text = fields.String(attribute="Status")
    image = fields.String(attribute="Image")
    image_id = fields.String(attribute="ImageID")
    created_at = DockerTime(attribute="Created")
    ports = fields.Function(lambda c: ports_from_list(c["Ports"]))
    labels = fields.Function(lambda c: c["Labels"] or {})


class HealthSchema(Schema):
    status = fields.String(attribute="Status")
    failing_streak = fields.Integer(attribute="FailingStreak")


class StateSchema(Schema):
    status = fields.String(attribute="Status")
    running = fields.Boolean(attribute="Running")
    paused = fields.Boolean(attribute="Paused")
    restarting = fields.Boolean(attribute="Restarting")
    oom_killed = fields.Boolean(attribute="OOMKilled")
    dead = fields.Boolean(attribute="Dead")
    pid = fields.Integer(attribute="Pid")
    exit_code = fields.Integer(attribute="ExitCode")
    error = fields.Function(lambda s: s.get("Error") or None)
    started_at = DockerTime(attribute="StartedAt")
    finished_at = DockerTime(attribute="FinishedAt")
    health = fields.Function(lambda s: HealthSchema().dump(s["Health"]) if s.get("Health") else None)


class ContainerDetailSchema(Schema):
    """`GET /containers/{id}`: the list item's fields plus configuration and state, from inspect."""

    id = fields.String(attribute="Id")
    name = fields.Function(lambda c: c["Name"].lstrip("/"))
    status = fields.String(attribute="State.Status")
    image = fields.String(attribute="Config.Image")
    image_id = fields.String(attribute="Image")
    created_at = DockerTime(attribute="Created")
    ports = fields.Function(lambda c: ports_from_inspect(c["NetworkSettings"].get("Ports")))
    labels = fields.Function(lambda c: c["Config"].get("Labels") or {})
    command = fields.List(fields.String(), attribute="Config.Cmd", allow_none=True)
    entrypoint = fields.List(fields.String(), attribute="Config.Entrypoint", allow_none=True)
    environment = fields.Function(lambda c: environment(c["Config"].get("Env")))
    working_dir = fields.Function(lambda c: c["Config"].get("WorkingDir") or None)
    user = fields.Function(lambda c: c["Config"].get("User") or None)
    hostname = fields.String(attribute="Config.Hostname")
    tty = fields.Boolean(attribute="Config.Tty")
    volumes = fields.Function(lambda c: volumes(c.get("Mounts")))
    port_bindings = fields.Function(lambda c: ports_from_inspect(c["HostConfig"].get("PortBindings")))
    restart_policy = fields.Function(lambda c: restart_policy(c["HostConfig"].get("RestartPolicy")))
    restart_count = fields.Integer(attribute="RestartCount")
    network_mode = fields.String(attribute="HostConfig.NetworkMode")
    memory = fields.Function(lambda c: c["HostConfig"].get("Memory") or None)
    cpus = fields.Function(lambda c: (c["HostConfig"].get("NanoCpus") or 0) / 1e9 or None)
    state = fields.Nested(StateSchema, attribute="State")
