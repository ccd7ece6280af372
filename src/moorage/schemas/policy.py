"""The policy's own answers: a dry run's decisions and engine request, and GET /policy's policy in force."""

from __future__ import annotations

from dataclasses import fields as fields_of
from typing import Any

from marshmallow import Schema, fields, validate

from moorage.containers.policy import FORBIDDEN_PATHS, Verdict
from moorage.containers.spec import SECURITY_OPT
from moorage.schemas.common import StrictSchema
from moorage.settings import PolicySettings


class DryRunQuery(StrictSchema):
    dry_run = fields.Boolean(
        load_default=False,
        metadata={"description": "decide and answer what would be done (200), and do nothing: no pull, no write"},
    )


class DecisionSchema(Schema):
    field = fields.String(required=True, metadata={"description": "the request's field, as a 400 or 403 names it"})
    decision = fields.String(required=True, validate=validate.OneOf([v.value for v in Verdict]))
    rule = fields.String(
        required=True,
        metadata={"description": "policy.<key>: that key of [policy] decided it; moorage.<name>: a fixed rule"},
    )
    reason = fields.String(required=True)


class DryRunSchema(Schema):
    """A dry run's answer: a 403 of the real call is `allowed: false`, its errors the denied decisions."""

    allowed = fields.Boolean(required=True)
    decisions = fields.List(fields.Nested(DecisionSchema), required=True)
    engine_request = fields.Dict(
        required=True,
        allow_none=True,
        metadata={"description": "what the engine would be sent (null when refused): the call's name and body"},
    )


class EngineCreateSchema(Schema):
    name = fields.String(required=True, allow_none=True)
    body = fields.Dict(required=True, metadata={"description": "the engine's POST /containers/create body"})
    redacted = fields.List(
        fields.String(validate=validate.OneOf(("environment", "labels"))),
        metadata={
            "description": "a recreate's only: what of the old container's body was withheld from a key that may "
            "not read secrets (Env then holds the names only, a secret label's value is null)"
        },
    )


class DryRunCreateSchema(DryRunSchema):
    engine_request = fields.Nested(EngineCreateSchema, required=True, allow_none=True)


def _names() -> fields.List:
    return fields.List(fields.String(), required=True)


class PolicyTableSchema(Schema):
    """[policy] as config.toml takes it: memory in bytes, min_healthcheck_interval as a duration."""

    allowed_host_paths = _names()
    allow_privileged = fields.Boolean(required=True)
    allowed_capabilities = _names()
    allow_host_network = fields.Boolean(required=True)
    allow_host_pid = fields.Boolean(required=True)
    allow_host_ipc = fields.Boolean(required=True)
    allow_host_uts = fields.Boolean(required=True)
    allow_host_userns = fields.Boolean(required=True)
    allow_devices = fields.Boolean(required=True)
    allowed_sysctls = _names()
    allowed_runtimes = _names()
    allowed_volume_drivers = _names()
    allow_volume_driver_opts = fields.Boolean(required=True)
    allowed_network_drivers = _names()
    default_memory = fields.Integer(required=True, allow_none=True)
    max_memory = fields.Integer(required=True, allow_none=True)
    default_pids_limit = fields.Integer(required=True, allow_none=True)
    max_pids_limit = fields.Integer(required=True, allow_none=True)
    default_cpus = fields.Float(required=True, allow_none=True)
    max_cpus = fields.Float(required=True, allow_none=True)
    min_healthcheck_interval = fields.String(required=True, metadata={"description": 'e.g. "1s"; "0s": none'})
    allowed_host_ips = _names()
    allow_privileged_ports = fields.Boolean(required=True)


class FixedRulesSchema(Schema):
    forbidden_paths = fields.List(
        fields.String(), required=True, metadata={"description": "never bound, nor anything under or above them"}
    )
    protected_paths = fields.List(
        fields.String(), required=True, metadata={"description": "the same for moorage's state and the socket"}
    )
    security_opt = fields.List(fields.String(), required=True, metadata={"description": "set on every container"})


class PolicyInForceSchema(Schema):
    policy = fields.Nested(PolicyTableSchema, required=True)
    fixed = fields.Nested(FixedRulesSchema, required=True)


_NOT_CONFIG = frozenset({"protected_paths"})  # derived by Settings, not read from [policy]
_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def _duration(nanoseconds: int) -> str:
    """Nanoseconds as config.toml's duration text, in the largest unit that holds them whole."""
    unit = next(unit for unit in ("s", "ms", "us", "ns") if nanoseconds % _UNITS[unit] == 0)
    return f"{nanoseconds // _UNITS[unit]}{unit}"


def policy_in_force(policy: PolicySettings) -> dict[str, Any]:
    """GET /policy's data: each key of [policy] with its value in force (sets sorted), and the fixed rules."""
    table: dict[str, Any] = {}
    for key in (f.name for f in fields_of(policy) if f.name not in _NOT_CONFIG):
        value = getattr(policy, key)
        table[key] = (
            sorted(value) if isinstance(value, frozenset) else list(value) if isinstance(value, tuple) else value
        )
    table["min_healthcheck_interval"] = _duration(policy.min_healthcheck_interval)
    fixed = {
        "forbidden_paths": list(FORBIDDEN_PATHS),
        "protected_paths": list(policy.protected_paths),
        "security_opt": list(SECURITY_OPT),
    }
    return {"policy": table, "fixed": fixed}
