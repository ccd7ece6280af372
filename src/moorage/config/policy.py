"""`[policy]` of config.toml: what an operator may allow, checked as the file is read."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from marshmallow import ValidationError, fields, post_load, validates_schema
from marshmallow.validate import Range

from moorage.config.defaults import defaults_from
from moorage.containers.policy import forbidden_path
from moorage.schemas.common import StrictSchema
from moorage.schemas.create import CPUS, Capability
from moorage.schemas.fields import Duration, MemorySize, StrictBool
from moorage.settings import PolicySettings


def _allowed_root(value: str) -> None:
    if not os.path.isabs(value) or os.path.normpath(value) != value:
        raise ValidationError("must be an absolute path without . or .. or a trailing /")
    if found := forbidden_path(value):
        raise ValidationError(f"can never be allowed: it is or contains {found}")


def _ip_address(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError("must be an IPv4 or IPv6 address") from None
    if "%" in value:  # a zone: the create schema refuses one in host_ip, so it could never match
        raise ValidationError("must be an address without a zone")


def _no_all(names: list[str]) -> None:
    if "ALL" in names:
        raise ValidationError("ALL is never allowed: list the capabilities one by one")


@defaults_from(PolicySettings)
class PolicySchema(StrictSchema):
    allowed_host_paths = fields.List(fields.String(validate=_allowed_root))
    allow_privileged = StrictBool()
    # Loaded as the request's cap_add is, so that "cap_all" is caught as ALL.
    allowed_capabilities = fields.List(Capability(), validate=_no_all)
    allow_host_network = StrictBool()
    allow_host_pid = StrictBool()
    allow_host_ipc = StrictBool()
    allow_host_uts = StrictBool()
    allow_host_userns = StrictBool()
    allow_devices = StrictBool()
    allowed_sysctls = fields.List(fields.String())
    allowed_runtimes = fields.List(fields.String())
    allowed_volume_drivers = fields.List(fields.String())
    allow_volume_driver_opts = StrictBool()
    allowed_network_drivers = fields.List(fields.String())
    default_memory = MemorySize(allow_none=True)
    max_memory = MemorySize(allow_none=True)
    default_pids_limit = fields.Integer(strict=True, allow_none=True, validate=Range(min=1))
    max_pids_limit = fields.Integer(strict=True, allow_none=True, validate=Range(min=1))
    default_cpus = fields.Float(allow_none=True, validate=CPUS)
    max_cpus = fields.Float(allow_none=True, validate=CPUS)
    min_healthcheck_interval = Duration()
    allowed_host_ips = fields.List(fields.String(validate=_ip_address))
    allow_privileged_ports = StrictBool()

    @validates_schema
    def defaults_within_maxima(self, data: dict[str, Any], **_: Any) -> None:
        for kind in ("memory", "pids_limit", "cpus"):
            default, maximum = data[f"default_{kind}"], data[f"max_{kind}"]
            if default is not None and maximum is not None and default > maximum:
                raise ValidationError(f"must not exceed max_{kind}", f"default_{kind}")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> PolicySettings:
        named = (
            "allowed_capabilities", "allowed_sysctls", "allowed_runtimes", "allowed_volume_drivers",
            "allowed_network_drivers",
        )  # fmt: skip
        sets = {name: frozenset(data[name]) for name in named}
        sets["allowed_host_ips"] = frozenset(str(ipaddress.ip_address(ip)) for ip in data["allowed_host_ips"])
        return PolicySettings(**{**data, **sets, "allowed_host_paths": tuple(data["allowed_host_paths"])})
