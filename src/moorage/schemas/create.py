"""The body of POST /containers, loaded into a frozen `CreateRequest` (moorage.models).

Every value is parsed here into a type of known form, so that the policy judges, and enginespec
builds the engine's request from, the model alone: client JSON never reaches the socket. The
options the policy governs (privileged, cap_add, host modes, ...) are accepted here so that the
policy, not a 400, answers them. Any other field is unknown and refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from moorage.containers.model import (
    VOLUME_NAME,
    BindVolume,
    CreateRequest,
    Device,
    Healthcheck,
    NamedVolume,
    NetworkAttachment,
    PullPolicy,
    RestartPolicy,
    normalize_capability,
)
from moorage.schemas.common import KeyedDict, StrictSchema
from moorage.schemas.containers import CONTAINER_NAME, CONTAINER_NAME_RULE
from moorage.schemas.fields import (
    INT64_MAX,
    MAX_ARGS,
    MAX_COMMAND_TEXT,
    Argv,
    CappedList,
    Duration,
    JsonSchema,
    MemorySize,
    StrictBool,
    Text,
    absolute_path,
    anchored,
    arguments,
    matches,
    valid_text,
)
from moorage.schemas.ports import Ports
from moorage.schemas.references import reference

_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"
USER = rf"{_NAME}(?::{_NAME})?"
USER_RULE = "name or uid, optionally :group or :gid"
ENV_NAME = matches(r"[^=]+", "a non-empty name without =")
_HOSTNAME_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_RESTART = re.compile(r"(no|always|unless-stopped)|on-failure(?::([0-9]{1,9}))?")
# What DeviceField's parse takes, for the document: absolute paths, the container's optional, permissions of rwm.
_DEVICE = r"/[^:\x00]*(?::(?:/[^:\x00]*)?(?::[rwm]*)?)?"

# The engine's own floor; less could also round to NanoCpus 0, which means unlimited.
CPUS = validate.Range(0.01, INT64_MAX / 1e9)

# How many items the list and map fields of one create take: far beyond any real container, and small enough
# that the policy's and the nesting rule's work on a request stays small (moorage.binds).
MAX_VOLUMES = 128
MAX_MAP_ENTRIES = 1024  # environment, labels
MAX_SYSCTLS = 64
MAX_CAPABILITIES = 64  # Linux has about 41
MAX_DEVICES = 64
MAX_SECURITY_OPTS = 16
MAX_ALIASES = 32
MAX_NETWORKS = 16
# The engine's modes, which share a namespace rather than join a network: network_mode's, not networks'.
_NAMESPACE_MODES = ("host", "none")

_CAPABILITY = matches(r"[A-Za-z][A-Za-z0-9_]{0,63}", "not a capability name such as NET_ADMIN")


def _container_path(value: str) -> None:
    absolute_path(value)
    if value.strip("/") == "":
        raise ValidationError("cannot be the container's root")


class HealthTest(fields.Field[tuple[str, ...]]):
    """Compose's rule: a string runs with the shell; a list is ["NONE"], ["CMD", ...] or ["CMD-SHELL", s]."""

    json_schema: ClassVar[JsonSchema] = {
        "anyOf": [
            {"type": "string", "maxLength": MAX_COMMAND_TEXT},
            {"type": "array", "prefixItems": [{"const": "NONE"}], "minItems": 1, "maxItems": 1},
            {
                "type": "array",
                "prefixItems": [{"const": "CMD"}],
                "items": {"type": "string"},
                "minItems": 2,
                "maxItems": MAX_ARGS,
            },
            {
                "type": "array",
                "prefixItems": [{"const": "CMD-SHELL"}, {"type": "string", "maxLength": MAX_COMMAND_TEXT}],
                "minItems": 2,
                "maxItems": 2,
            },
        ]
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = ["CMD-SHELL", value]
        test = arguments(value)
        kind, argc = (test[0], len(test)) if test else ("", 0)
        if not ((kind == "NONE" and argc == 1) or (kind == "CMD" and argc > 1) or (kind == "CMD-SHELL" and argc == 2)):
            raise ValidationError('a command string, or ["NONE"], ["CMD", arg, ...] or ["CMD-SHELL", command]')
        if kind == "CMD-SHELL" and len(test[1]) > MAX_COMMAND_TEXT:
            raise ValidationError(f"a shell command of at most {MAX_COMMAND_TEXT} characters")
        return test


class DeviceField(fields.Field[Device]):
    """`docker run --device` syntax: HOST[:CONTAINER[:PERMISSIONS]], permissions out of "rwm"."""

    json_schema: ClassVar[JsonSchema] = {"type": "string", "pattern": anchored(_DEVICE)}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Device:
        host, _, rest = valid_text(value).partition(":")
        inside, _, permissions = rest.partition(":")
        device = Device(host, inside or host, permissions or "rwm")
        absolute_path(device.path_on_host)
        absolute_path(device.path_in_container)
        if not set(device.cgroup_permissions) <= set("rwm"):
            raise ValidationError('permissions are made of "r", "w" and "m"')
        return device


class Capability(Text):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = valid_text(value)
        _CAPABILITY(text)
        return normalize_capability(text)


def _mode(*values: str) -> matches:
    """One of the literal modes; "container:NAME" and "NAME" stand for any container or network name."""
    names = {"container:NAME": f"container:{_NAME}", "NAME": _NAME}
    return matches("|".join(names.get(v, re.escape(v)) for v in values), "must be one of: " + ", ".join(values))


def text_map(key_rule: Callable[[str], Any], max_entries: int = MAX_MAP_ENTRIES) -> KeyedDict:
    return KeyedDict(keys=Text(validate=key_rule), values=Text(), max_entries=max_entries)


class VolumeSchema(StrictSchema):
    host_path = Text(validate=absolute_path)
    volume = Text(validate=matches(VOLUME_NAME, "not a volume name: letters, digits, _ . - (two or more)"))
    container_path = Text(required=True, validate=_container_path)
    read_only = StrictBool(load_default=False)

    @validates_schema
    def one_source(self, data: dict[str, Any], **_: Any) -> None:
        if ("host_path" in data) == ("volume" in data):
            raise ValidationError("give exactly one of host_path and volume")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> BindVolume | NamedVolume:
        return BindVolume(**data) if "host_path" in data else NamedVolume(**data)


def _network_name(value: str) -> None:
    if value.lower() in _NAMESPACE_MODES or value.lower().startswith("container:"):
        raise ValidationError(f"{value} is a mode, not a network: give it as network_mode")
    matches(_NAME, "not a network name or id")(value)


class NetworkAttachmentSchema(StrictSchema):
    """An item of `networks`, as `docker network connect [--alias] [--ip]` takes it."""

    name = Text(required=True, validate=_network_name)
    aliases = CappedList(Text(validate=matches(_NAME, "not a network alias")), MAX_ALIASES)
    ipv4_address = fields.IPv4()

    @validates_schema
    def user_defined(self, data: dict[str, Any], **_: Any) -> None:
        # The engine refuses both on the default bridge (an id of it is looked up: provision.py).
        if data.get("name") != "bridge":
            return
        for field in ("aliases", "ipv4_address"):
            if data.get(field):
                raise ValidationError("needs a user-defined network: the default bridge takes none", field)

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> NetworkAttachment:
        return NetworkAttachment(data["name"], tuple(data.get("aliases", ())), data.get("ipv4_address"))


class HealthcheckSchema(StrictSchema):
    test = HealthTest()
    interval = Duration()
    timeout = Duration()
    start_period = Duration()
    retries = fields.Integer(strict=True, validate=validate.Range(0, 2**31 - 1))

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> Healthcheck:
        return Healthcheck(**data)


class RestartPolicyField(fields.Field[RestartPolicy]):
    json_schema: ClassVar[JsonSchema] = {"type": "string", "pattern": anchored(_RESTART.pattern)}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> RestartPolicy:
        found = _RESTART.fullmatch(valid_text(value))
        if not found:
            raise ValidationError("must be no, always, unless-stopped or on-failure[:N]")
        return RestartPolicy(found[1] or "on-failure", int(found[2] or 0))


class ContainerLimits(StrictSchema):
    """What a create and a live update (PATCH) both take, in the same forms."""

    restart_policy = RestartPolicyField()
    memory = MemorySize()
    memory_reservation = MemorySize()
    cpus = fields.Float(validate=CPUS)
    pids_limit = fields.Integer(strict=True, validate=validate.Range(1, INT64_MAX))


class ContainerCreateSchema(ContainerLimits):
    """POST /containers. Modes are checked for form here; whether the host allows them is the policy's call."""

    name = Text(validate=matches(CONTAINER_NAME, CONTAINER_NAME_RULE))
    image = Text(required=True, validate=reference)
    ports = Ports()
    environment = text_map(ENV_NAME)
    volumes = CappedList(fields.Nested(VolumeSchema), MAX_VOLUMES)
    command = Argv()
    entrypoint = Argv()
    working_dir = Text(validate=absolute_path)
    user = Text(validate=matches(USER, USER_RULE))
    labels = text_map(validate.Length(min=1))
    network = Text(validate=_mode("NAME", "container:NAME"))
    network_aliases = CappedList(Text(validate=matches(_NAME, "not a network alias")), MAX_ALIASES)
    networks = CappedList(fields.Nested(NetworkAttachmentSchema), MAX_NETWORKS)
    hostname = Text(
        validate=[validate.Length(max=64), matches(rf"{_HOSTNAME_LABEL}(?:\.{_HOSTNAME_LABEL})*", "not a hostname")]
    )
    healthcheck = fields.Nested(HealthcheckSchema)
    start = StrictBool(load_default=False)
    pull = fields.Enum(PullPolicy, by_value=True, load_default=PullPolicy.MISSING)
    privileged = StrictBool(load_default=False)
    cap_add = CappedList(Capability(), MAX_CAPABILITIES)
    network_mode = Text(validate=_mode("NAME", "container:NAME"))
    pid_mode = Text(validate=_mode("host", "container:NAME"))
    ipc_mode = Text(validate=_mode("none", "private", "shareable", "host", "container:NAME"))
    uts_mode = Text(validate=_mode("host"))
    userns_mode = Text(validate=_mode("host"))
    devices = CappedList(DeviceField(), MAX_DEVICES)
    sysctls = text_map(matches(r"[a-zA-Z0-9_][a-zA-Z0-9_./-]*", "not a sysctl name"), MAX_SYSCTLS)
    runtime = Text(validate=matches(_NAME, "not a runtime name"))
    security_opt = CappedList(Text(), MAX_SECURITY_OPTS)

    @validates_schema
    def one_network(self, data: dict[str, Any], **_: Any) -> None:
        # Both name the engine's single NetworkMode.
        if "network" in data and "network_mode" in data:
            raise ValidationError("give network or network_mode, not both", "network_mode")

    @validates_schema
    def networks_alone(self, data: dict[str, Any], **_: Any) -> None:
        # networks names the engine's NetworkMode (its first) and every endpoint: nothing else may.
        if "networks" not in data:
            return
        if given := [field for field in ("network", "network_aliases", "network_mode") if field in data]:
            raise ValidationError(f"give networks or {', '.join(given)}, not both", "networks")
        if not data["networks"]:
            raise ValidationError("give at least one network, or leave networks out for the default bridge", "networks")

    @validates_schema
    def each_network_once(self, data: dict[str, Any], **_: Any) -> None:
        seen: set[str] = set()
        for index, attachment in enumerate(data.get("networks", ())):
            if attachment.name in seen:
                raise ValidationError("is given twice: each network once", f"networks.{index}.name")
            seen.add(attachment.name)

    @validates_schema
    def aliases_on_a_network(self, data: dict[str, Any], **_: Any) -> None:
        # The engine resolves aliases only on a user-defined network: elsewhere it refuses them at start.
        network = data.get("network", "")
        if data.get("network_aliases") and (network in ("", "bridge", "default") or ":" in network):
            raise ValidationError("aliases need a user-defined network in network", "network_aliases")

    @validates_schema
    def reservation_within_memory(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("memory_reservation", 0) > data.get("memory", INT64_MAX):
            raise ValidationError("must not be above memory", "memory_reservation")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> CreateRequest:
        # Tuples, so that the frozen model holds no list that could be changed after the policy's check.
        frozen: dict[str, Any] = {key: tuple(v) if isinstance(v, list) else v for key, v in data.items()}
        return CreateRequest(**frozen)


def networks_asked(req: CreateRequest) -> dict[str, Any]:
    """A create's `networks` as the client gave them, for its audit (a created container has no address yet, and
    the engine's are not what was asked); nothing when it gave none."""
    if not req.networks:
        return {}
    asked = [
        {
            "name": attachment.name,
            "aliases": list(attachment.aliases),
            "ipv4_address": None if attachment.ipv4_address is None else str(attachment.ipv4_address),
        }
        for attachment in req.networks
    ]
    return {"networks": asked}
