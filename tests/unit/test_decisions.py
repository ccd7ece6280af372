"""The policy explains itself: every field of a create that touches the host gets a decision, each denied one
names its rule, the 403's errors are the denied decisions, and GET /policy shows the policy in force."""

from __future__ import annotations

from dataclasses import fields as fields_of
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from moorage.config.policy import PolicySchema
from moorage.containers.explain import merged
from moorage.containers.model import ContainerUpdate
from moorage.containers.policy import (
    Decision,
    Verdict,
    check,
    decide,
    decide_update,
    denials,
    image_healthcheck_decisions,
)
from moorage.schemas.create import ContainerCreateSchema
from moorage.schemas.policy import PolicyTableSchema
from moorage.settings import PolicySettings

from ..helpers import app_client, key_headers
from .test_policy import MIB, bind, create_bodies, policies, request

# Every field of a create that reaches the host, and always gets a decision (the request's own fields, when
# given, are decided by their items: volumes.0.host_path, cap_add.0, ports.80/tcp.0.host_ip...).
ALWAYS_DECIDED = {
    "privileged", "cap_add", "security_opt", "runtime", "network", "pid_mode", "ipc_mode", "uts_mode",
    "userns_mode", "devices", "sysctls", "memory", "memory_reservation", "cpus", "pids_limit", "restart_policy",
    "ports",
}  # fmt: skip
_CONFIG_KEYS = set(PolicySchema().fields)
HEALTHCHECK = "policy.min_healthcheck_interval"


def fields_decided(decisions: list[Decision]) -> set[str]:
    return {decision.field for decision in decisions}


def test_a_plain_create_has_a_decision_on_every_field_that_touches_the_host() -> None:
    decisions = decide(request(), PolicySettings())
    assert fields_decided(decisions) == ALWAYS_DECIDED
    assert not denials(decisions)


def test_each_item_a_create_asks_is_decided() -> None:
    asked = request(
        volumes=[{"host_path": "/srv/x", "container_path": "/x"}, {"volume": "db", "container_path": "/db"}],
        cap_add=["CHOWN"],
        security_opt=["no-new-privileges"],
        devices=["/dev/fuse"],
        sysctls={"net.ipv4.ip_forward": "1"},
        ports={"80": [8080, "127.0.0.1:"]},
        network_mode="none",
        pid_mode="host",
        healthcheck={"test": "true", "interval": "30s"},
        restart_policy="always",
    )
    found = fields_decided(decide(asked, PolicySettings()))
    items = {
        "volumes.0.host_path", "volumes.1.volume", "cap_add.0", "security_opt.0", "devices.0",
        "sysctls.net.ipv4.ip_forward", "ports.80/tcp.0.host_ip", "ports.80/tcp.0.host_port",
        "ports.80/tcp.1.host_ip", "ports.80/tcp.1.host_port", "network_mode", "pid_mode", "healthcheck.interval",
    }  # fmt: skip
    assert found == items | ALWAYS_DECIDED - {"cap_add", "security_opt", "devices", "sysctls", "ports", "network"}


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({"privileged": True}, "privileged", "policy.allow_privileged"),
        ({"cap_add": ["CHOWN"]}, "cap_add.0", "policy.allowed_capabilities"),
        ({"network": "host"}, "network", "policy.allow_host_network"),
        ({"network_mode": "container:web"}, "network_mode", "policy.allow_host_network"),
        ({"pid_mode": "host"}, "pid_mode", "policy.allow_host_pid"),
        ({"ipc_mode": "host"}, "ipc_mode", "policy.allow_host_ipc"),
        ({"uts_mode": "host"}, "uts_mode", "policy.allow_host_uts"),
        ({"userns_mode": "host"}, "userns_mode", "policy.allow_host_userns"),
        ({"devices": ["/dev/fuse"]}, "devices.0", "policy.allow_devices"),
        ({"sysctls": {"kernel.x": "1"}}, "sysctls.kernel.x", "policy.allowed_sysctls"),
        ({"runtime": "runsc"}, "runtime", "policy.allowed_runtimes"),
        ({"security_opt": ["seccomp=unconfined"]}, "security_opt.0", "moorage.no_new_privileges"),
        ({"volumes": bind("/srv/x")}, "volumes.0.host_path", "policy.allowed_host_paths"),
        ({"volumes": bind("/etc")}, "volumes.0.host_path", "moorage.forbidden_paths"),
        ({"memory": "1g"}, "memory", "policy.max_memory"),
        ({"memory_reservation": "1g"}, "memory_reservation", "policy.max_memory"),
        ({"cpus": 4}, "cpus", "policy.max_cpus"),
        ({"pids_limit": 5000}, "pids_limit", "policy.max_pids_limit"),
        ({"healthcheck": {"test": "true", "interval": "10ms"}}, "healthcheck.interval", HEALTHCHECK),
        ({"ports": {"80": "10.0.0.1:8080"}}, "ports.80/tcp.0.host_ip", "policy.allowed_host_ips"),
        ({"ports": {"80": "127.0.0.1:80"}}, "ports.80/tcp.0.host_port", "policy.allow_privileged_ports"),
    ],
)  # fmt: skip
def test_a_denied_field_names_its_rule(fields: dict[str, Any], field: str, rule: str) -> None:
    policy = PolicySettings(
        max_memory=512 * MIB, max_cpus=2.0, max_pids_limit=1000, allowed_host_ips=frozenset({"127.0.0.1"})
    )
    found = denials(decide(request(**fields), policy))
    assert [(error["field"], error["rule"]) for error in found] == [(field, rule)]
    assert found == check(request(**fields), policy)


@pytest.mark.parametrize(
    ("policy", "verdict", "rule", "reason"),
    [
        (PolicySettings(default_memory=256 * MIB), "defaulted", "policy.default_memory", "268435456"),
        (PolicySettings(max_memory=1024 * MIB), "defaulted", "policy.max_memory", "1073741824"),
        (PolicySettings(), "allowed", "policy.max_memory", "unlimited"),
    ],
)  # fmt: skip
def test_a_limit_left_out_is_the_policy_s_default_or_maximum(
    policy: PolicySettings, verdict: str, rule: str, reason: str
) -> None:
    [memory] = [decision for decision in decide(request(), policy) if decision.field == "memory"]
    assert (memory.decision, memory.rule) == (verdict, rule) and reason in memory.reason
    [asked] = [decision for decision in decide(request(memory="512m"), policy) if decision.field == "memory"]
    assert asked.decision == "allowed"


def test_an_update_decides_its_limits_and_restart_policy() -> None:
    decisions = decide_update(ContainerUpdate(memory=2048 * MIB, cpus=1.0), PolicySettings(max_memory=1024 * MIB))
    assert fields_decided(decisions) == {"memory", "memory_reservation", "cpus", "pids_limit", "restart_policy"}
    assert [(e["field"], e["rule"]) for e in denials(decisions)] == [("memory", "policy.max_memory")]


def test_without_the_image_its_healthcheck_is_unknown() -> None:
    [unknown] = image_healthcheck_decisions(request(), None, PolicySettings())
    assert (unknown.field, unknown.decision) == ("healthcheck", "unknown")
    disabled = image_healthcheck_decisions(request(healthcheck={"test": ["NONE"]}), None, PolicySettings())
    assert [decision.decision for decision in disabled] == ["allowed"]


def test_a_look_up_s_denial_replaces_the_allowance_of_the_same_rule() -> None:
    by_name = Decision("network", Verdict.ALLOWED, "policy.allow_host_network", "ab12")
    by_id = Decision("network", Verdict.DENIED, "policy.allow_host_network", "ab12 is the host's network")
    nesting = Decision("volumes.0.host_path", Verdict.ALLOWED, "moorage.bind_nesting", "nests with none")
    assert merged([by_name], [by_id, nesting]) == [by_id, nesting]
    assert merged([by_id], [by_name]) == [by_id]


def test_every_rule_is_a_key_of_the_policy_or_a_fixed_one(tmp_path: Path) -> None:
    """Over random bodies and policies: the 403's errors are the denied decisions, and a rule named
    policy.<key> names a key of [policy] (the operator can change it), any other is moorage.<name>."""
    root = str(tmp_path)

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def rules_are_named(data: st.DataObject) -> None:
        body, policy = data.draw(create_bodies(root)), data.draw(policies(root))
        try:
            req = ContainerCreateSchema().load(body)
        except ValidationError:
            return
        decisions = decide(req, policy)
        assert denials(decisions) == check(req, policy)
        # A field left out is decided whole; one given, by its items (`networks` by the engine's look-up).
        assert ALWAYS_DECIDED - {"network"} <= {decision.field.split(".")[0] for decision in decisions}
        for decision in decisions:
            kind, _, name = decision.rule.partition(".")
            assert (kind == "policy" and name in _CONFIG_KEYS) or kind == "moorage", decision
            assert decision.reason

    rules_are_named()


def test_the_policy_schema_shows_every_key_of_the_config() -> None:
    assert set(PolicyTableSchema().fields) == _CONFIG_KEYS


async def test_get_policy_shows_the_policy_in_force_as_the_config_takes_it(aiohttp_client: Any, tmp_path: Path) -> None:
    section = {
        "allowed_host_paths": [str(tmp_path)],
        "allowed_capabilities": ["NET_BIND_SERVICE", "CHOWN"],
        "max_memory": "1g",
        "default_cpus": 0.5,
        "min_healthcheck_interval": "1500ms",
    }
    client = await app_client(aiohttp_client, tmp_path, policy=section)
    resp = await client.get("/api/v1/policy", headers=key_headers("admin-key"))
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    assert set(data["policy"]) == _CONFIG_KEYS
    shown = data["policy"]
    assert shown["allowed_capabilities"] == ["CHOWN", "NET_BIND_SERVICE"] and shown["max_memory"] == 1024 * MIB
    assert shown["min_healthcheck_interval"] == "1500ms" and shown["default_cpus"] == 0.5
    # What it shows is a [policy] section that loads as the policy in force.
    assert PolicySchema().load(shown) == PolicySchema().load(section)
    assert "/var/run/docker.sock" in data["fixed"]["forbidden_paths"]
    assert str(tmp_path / "state") in data["fixed"]["protected_paths"]
    for name in ("viewer-key", "operator-key"):
        assert (await client.get("/api/v1/policy", headers=key_headers(name))).status == 403


DRY_RUN_ROUTES = [
    ("POST", "/api/v1/containers", {"image": "x"}),
    ("PATCH", "/api/v1/containers/x1", {"pids_limit": 10}),
    ("POST", "/api/v1/containers/x1/recreate", {}),
    ("POST", "/api/v1/volumes", {"name": "x1"}),
    ("POST", "/api/v1/networks", {"name": "x1"}),
]


@pytest.mark.parametrize(("method", "path", "body"), DRY_RUN_ROUTES)
@pytest.mark.parametrize("value", ["maybe", "", "2"])
async def test_a_bad_dry_run_is_a_400_naming_it(
    aiohttp_client: Any, tmp_path: Path, method: str, path: str, body: dict[str, Any], value: str
) -> None:
    """Before the engine is asked anything: the app's engine is one that is not there."""
    client = await app_client(aiohttp_client, tmp_path, docker={"url": f"unix://{tmp_path}/absent.sock"})
    resp = await client.request(method, path, params={"dry_run": value}, json=body, headers=key_headers("admin-key"))
    assert resp.status == 400
    assert [error["field"] for error in (await resp.json())["errors"]] == ["dry_run"]


def test_the_policy_settings_are_all_shown_or_derived() -> None:
    assert {f.name for f in fields_of(PolicySettings)} == _CONFIG_KEYS | {"protected_paths"}
