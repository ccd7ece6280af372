"""Container schemas: the list query, and the engine's list and inspect payloads in moorage's shape.

Ports are shown in the shape `POST /containers` takes them, keyed "80/tcp", so what a caller reads
back can be compared with what it sent.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from marshmallow import Schema, fields, validate

from moorage.containers.bindwatch import PolicyStops
from moorage.containers.ownership import POLICY_LABEL
from moorage.engine.shapes import inspected_name, listed_exit_code, listed_health, listed_name, restart_policy
from moorage.schemas.common import PageQuery, StrictSchema, docker_time
from moorage.schemas.fields import WHITESPACE, matches

# The first character of a label filter: not "=" and not whitespace.
_LABEL_START = f"[^={WHITESPACE}]"
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTHS = ("starting", "healthy", "unhealthy")
# Docker's rule for container names; ids are hex, so one pattern admits both references. Unanchored:
# use it with `fields.matches`, which matches the whole string.
CONTAINER_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"
CONTAINER_NAME_RULE = "letters, digits, _ . - (starting with a letter or digit)"

# A `label` filter of a list query: KEY or KEY=VALUE.
LABEL_FILTER = matches(_LABEL_START + r"[^=\x00-\x1f]{0,254}(=[^\x00-\x1f]{0,1024})?", "KEY or KEY=VALUE")

PortMap = dict[str, list[dict[str, Any]]]


class ContainerListQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(STATUSES))
    health = fields.String(
        validate=validate.OneOf((*HEALTHS, "none")), metadata={"description": "none: no healthcheck"}
    )
    name = fields.String(validate=matches(r"[a-zA-Z0-9_.-]{1,128}", "letters, digits, _ . - only (a part of a name)"))
    label = fields.List(fields.String(validate=LABEL_FILTER))


class ContainerRef(StrictSchema):
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


def networks(endpoints: Mapping[str, Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Every network the container is on, by name, with its addresses as `docker inspect` has them (none yet for a
    container that has not run: the engine gives them at start) and its aliases (on a user-defined network, the
    engine adds the container's short id)."""
    return [
        {
            "name": name,
            "network_id": endpoint.get("NetworkID") or None,
            "ipv4_address": endpoint.get("IPAddress") or None,
            "ipv6_address": endpoint.get("GlobalIPv6Address") or None,
            "gateway": endpoint.get("Gateway") or None,
            "mac_address": endpoint.get("MacAddress") or None,
            "aliases": list(endpoint.get("Aliases") or ()),
        }
        for name, endpoint in sorted((endpoints or {}).items())
    ]


def summary(c: Mapping[str, Any]) -> dict[str, Any]:
    """One item of `GET /containers` from the engine's list payload.

    Built by hand, not dumped by marshmallow: dumping cost 9 us a container, most of what a large list
    cost beyond the engine's own time. ContainerSummarySchema is its contract (the OpenAPI document and
    the tests hold it to that).
    """
    return {
        "id": c["Id"],
        "name": listed_name(c),
        "status": c["State"],
        "status_text": c["Status"],
        "health": listed_health(c),
        "exit_code": listed_exit_code(c),
        "image": c["Image"],
        "image_id": c["ImageID"],
        "created_at": docker_time(c["Created"]),
        "ports": ports_from_list(c["Ports"]),
        "labels": shown(c["Labels"]),
        "redacted": [],
    }


def shown(labels: Mapping[str, str] | None) -> Mapping[str, str]:
    """A container's labels but this daemon's mark (ownership.py): a viewer who read it could build an image that
    carries it, and containers made elsewhere from that image would pass for moorage's."""
    if not labels:
        return {}
    if POLICY_LABEL not in labels:
        return labels
    return {key: value for key, value in labels.items() if key != POLICY_LABEL}


def detail(c: Mapping[str, Any], stops: PolicyStops | None) -> dict[str, Any]:
    """`GET /containers/{id}` from inspect: the summary's fields plus configuration and state (built like
    `summary`; ContainerDetailSchema is its contract), and why moorage stopped it, if it did (bindwatch.py; None
    for a container made just now)."""
    policy_stop = stops.get(c["Id"]) if stops is not None else None
    config, host, state = c["Config"], c["HostConfig"], c["State"]
    health = state.get("Health")
    return {
        "id": c["Id"],
        "name": inspected_name(c),
        "status": state["Status"],
        "image": config["Image"],
        "image_id": c["Image"],
        "created_at": docker_time(c["Created"]),
        "ports": ports_from_inspect(c["NetworkSettings"].get("Ports")),
        "labels": shown(config.get("Labels")),
        "command": config.get("Cmd"),
        "entrypoint": config.get("Entrypoint"),
        "environment": environment(config.get("Env")),
        "working_dir": config.get("WorkingDir") or None,
        "user": config.get("User") or None,
        "hostname": config["Hostname"],
        "tty": config["Tty"],
        "volumes": volumes(c.get("Mounts")),
        "port_bindings": ports_from_inspect(host.get("PortBindings")),
        "restart_policy": restart_policy(host.get("RestartPolicy")),
        "restart_count": c["RestartCount"],
        "network_mode": host["NetworkMode"],
        "networks": networks(c["NetworkSettings"].get("Networks")),
        "memory": host.get("Memory") or None,
        "cpus": (host.get("NanoCpus") or 0) / 1e9 or None,
        "state": {
            "status": state["Status"],
            "running": state["Running"],
            "paused": state["Paused"],
            "restarting": state["Restarting"],
            "oom_killed": state["OOMKilled"],
            "dead": state["Dead"],
            "pid": state["Pid"],
            "exit_code": state["ExitCode"],
            "error": state.get("Error") or None,
            "started_at": docker_time(state.get("StartedAt")),
            "finished_at": docker_time(state.get("FinishedAt")),
            "health": {"status": health["Status"], "failing_streak": health["FailingStreak"]} if health else None,
        },
        "policy_stop": dict(policy_stop) if policy_stop else None,
        "redacted": [],
    }


def _labels_without_secrets(
    labels: Mapping[str, str] | None, secret_labels: Sequence[str]
) -> dict[str, str | None] | None:
    """The labels with the values of those `secret_labels` names (names or globs) null; None when none is secret."""
    secret = {name for name in labels or () if any(fnmatch.fnmatchcase(name, pattern) for pattern in secret_labels)}
    if not secret:
        return None
    return {name: None if name in secret else value for name, value in (labels or {}).items()}


def without_secrets(item: Mapping[str, Any], secret_labels: Sequence[str]) -> dict[str, Any]:
    """A summary or detail as a key that may not read secrets sees it: every environment value null (the names
    stay: they say what the container is configured with), and the values of the labels `secret_labels` names
    (`[auth] secret_labels`: names or globs); `redacted` names what was withheld."""
    out = dict(item)
    hidden = []
    if item.get("environment"):
        out["environment"] = dict.fromkeys(item["environment"])
        hidden.append("environment")
    if (labels := _labels_without_secrets(item["labels"], secret_labels)) is not None:
        out["labels"] = labels
        hidden.append("labels")
    out["redacted"] = hidden
    return out


def engine_body_without_secrets(
    body: Mapping[str, Any], secret_labels: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """The engine's create body (a recreate's dry run shows the one it would send) without the same secrets: its
    `Env` the names only, the secret labels' values null; and what was withheld."""
    out = dict(body)
    hidden = []
    if body.get("Env"):
        out["Env"] = [item.partition("=")[0] for item in body["Env"]]
        hidden.append("environment")
    if (labels := _labels_without_secrets(body.get("Labels") or {}, secret_labels)) is not None:
        out["Labels"] = labels
        hidden.append("labels")
    return out, hidden


class PortBindingSchema(Schema):
    host_ip = fields.String(required=True, allow_none=True)
    host_port = fields.Integer(required=True, allow_none=True)


def _port_map(**kwargs: Any) -> fields.Dict:
    """`{"80/tcp": [{host_ip, host_port}]}`, the shape POST /containers takes."""
    return fields.Dict(keys=fields.String(), values=fields.List(fields.Nested(PortBindingSchema)), **kwargs)


# What an answer withheld from a key that may not read secrets.
REDACTED = fields.List(
    fields.String(validate=validate.OneOf(("environment", "labels"))),
    required=True,
    metadata={"description": "what was withheld: environment values, secret labels' values"},
)


class ContainerSummarySchema(Schema):
    """One item of `GET /containers`: the contract `summary` fulfils."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    status_text = fields.String(required=True, metadata={"description": "as `docker ps` shows it: Up 5 minutes"})
    health = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(HEALTHS),
        metadata={"description": "null: no healthcheck"},
    )
    exit_code = fields.Integer(
        required=True, allow_none=True, metadata={"description": "an exited or restarting container's last exit code"}
    )
    image = fields.String(required=True)
    image_id = fields.String(required=True)
    created_at = fields.DateTime(required=True, allow_none=True)
    ports = _port_map(required=True)
    labels = fields.Dict(
        keys=fields.String(),
        values=fields.String(allow_none=True),
        required=True,
        metadata={"description": "null: a secret label's value, withheld (see redacted)"},
    )
    redacted = REDACTED


class MountSchema(Schema):
    type = fields.String(required=True, metadata={"description": "bind, volume or tmpfs"})
    host_path = fields.String(metadata={"description": "binds only"})
    volume = fields.String(metadata={"description": "named volumes only"})
    container_path = fields.String(required=True)
    read_only = fields.Boolean(required=True)


class EndpointSchema(Schema):
    name = fields.String(required=True)
    network_id = fields.String(required=True, allow_none=True, metadata={"description": "null until it first runs"})
    ipv4_address = fields.String(required=True, allow_none=True)
    ipv6_address = fields.String(required=True, allow_none=True)
    gateway = fields.String(required=True, allow_none=True)
    mac_address = fields.String(required=True, allow_none=True)
    aliases = fields.List(fields.String(), required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    failing_streak = fields.Integer(required=True)


class StateSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    running = fields.Boolean(required=True)
    paused = fields.Boolean(required=True)
    restarting = fields.Boolean(required=True)
    oom_killed = fields.Boolean(required=True)
    dead = fields.Boolean(required=True)
    pid = fields.Integer(required=True)
    exit_code = fields.Integer(required=True)
    error = fields.String(required=True, allow_none=True)
    started_at = fields.DateTime(required=True, allow_none=True)
    finished_at = fields.DateTime(required=True, allow_none=True)
    health = fields.Nested(HealthSchema, required=True, allow_none=True)


class PolicyStopSchema(Schema):
    at = fields.DateTime(required=True)
    reason = fields.String(required=True, metadata={"description": "each bind that no longer passed, and why"})
    restart_policy = fields.String(
        required=True, metadata={"description": "the restart policy it had; moorage set it to no"}
    )


class ContainerDetailSchema(Schema):
    """`GET /containers/{id}`: the contract `detail` fulfils."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    image = fields.String(required=True)
    image_id = fields.String(required=True)
    created_at = fields.DateTime(required=True, allow_none=True)
    ports = _port_map(required=True, metadata={"description": "published ports of a running container"})
    labels = fields.Dict(
        keys=fields.String(),
        values=fields.String(allow_none=True),
        required=True,
        metadata={"description": "null: a secret label's value, withheld (see redacted)"},
    )
    command = fields.List(fields.String(), required=True, allow_none=True)
    entrypoint = fields.List(fields.String(), required=True, allow_none=True)
    environment = fields.Dict(
        keys=fields.String(),
        values=fields.String(allow_none=True),
        required=True,
        metadata={"description": "values null for a key that may not read secrets (see redacted)"},
    )
    working_dir = fields.String(required=True, allow_none=True)
    user = fields.String(required=True, allow_none=True)
    hostname = fields.String(required=True)
    tty = fields.Boolean(required=True)
    volumes = fields.List(fields.Nested(MountSchema), required=True)
    port_bindings = _port_map(required=True, metadata={"description": "as configured at create"})
    restart_policy = fields.String(
        required=True, metadata={"description": "no, always, unless-stopped, on-failure[:N]"}
    )
    restart_count = fields.Integer(required=True)
    network_mode = fields.String(required=True)
    networks = fields.List(
        fields.Nested(EndpointSchema),
        required=True,
        metadata={"description": "every network it is on, by name, with its addresses once it runs"},
    )
    memory = fields.Integer(required=True, allow_none=True, metadata={"description": "bytes; null: no limit"})
    cpus = fields.Float(required=True, allow_none=True, metadata={"description": "null: no limit"})
    state = fields.Nested(StateSchema, required=True)
    policy_stop = fields.Nested(
        PolicyStopSchema,
        required=True,
        allow_none=True,
        metadata={
            "description": "set when moorage killed the container because the engine started it (a restart "
            "policy, dockerd's restart) with a bind that no longer passed the policy; null otherwise"
        },
    )
    redacted = REDACTED
