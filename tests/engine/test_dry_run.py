"""The policy explains itself, against the real engine: a dry run's `allowed` is the real call's (a 403 or not), its
denials name the 403's fields and rules, its `engine_request` is what the engine then gets, and a dry run changes
nothing: no container, no pull, no volume, no network, no update, no recreate."""

from __future__ import annotations

import http.client
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage.app import create_app
from moorage.containers.ownership import CREATE_LABEL
from moorage.schemas.policy import policy_in_force
from moorage.settings import PolicySettings

from ..helpers import (
    TEST_IMAGE,
    TEST_LABEL,
    Daemon,
    MakeContainer,
    assert_error,
    daemon_config,
    docker_cli,
    inspected,
    make_settings,
    plain_key,
)
from ..unit.test_policy import create_bodies, make_root, policy_variants

ABSENT_IMAGE = "127.0.0.1:5000/moorage-test/never-pushed:dry-run"
# The keys of the engine's create body that the engine keeps in the container's Config, as it was sent.
_CONFIG_COMPARED = ("Image", "Cmd", "Entrypoint", "WorkingDir", "User", "Hostname", "Healthcheck")


def policy_toml(policy: PolicySettings) -> str:
    """[policy] as GET /policy shows it, written as config.toml: what it shows loads back as the same policy."""
    table = policy_in_force(policy)["policy"]
    return "[policy]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items() if value is not None)


def post(daemon: Daemon, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
    try:
        headers = {"X-API-Key": plain_key("test-admin"), "Content-Type": "application/json"}
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _given(value: Any) -> Any:
    """A value with what the engine leaves out of an inspect (zero, empty, false) left out, at every depth."""
    if isinstance(value, dict):
        return {key: kept for key, item in value.items() if (kept := _given(item)) not in (None, False, 0, "", [], {})}
    if isinstance(value, list):
        return [_given(item) for item in value]
    return value


def _plain(volume: dict[str, Any]) -> bool:
    """A named volume the engine would make at the create ("../etc" is refused first)."""
    return "volume" in volume and "/" not in volume["volume"]


def assert_received(sent: dict[str, Any], container: dict[str, Any]) -> None:
    """The container as `docker inspect` shows it holds each thing of the engine request the dry run answered."""
    config, host = container["Config"], container["HostConfig"]
    for key in _CONFIG_COMPARED:
        if key in sent:
            assert _given({key: config.get(key)}) == _given({key: sent[key]}), key
    assert set(sent["Env"]) <= set(config["Env"])  # the image's PATH comes on top
    # The create id is each create's own (the dry run made one too): the rest of the labels is what was sent.
    labels, expected = dict(config["Labels"]), dict(sent["Labels"])
    assert labels.pop(CREATE_LABEL) != expected.pop(CREATE_LABEL)
    assert labels == expected
    for key, value in sent["HostConfig"].items():
        assert _given({key: host.get(key)}) == _given({key: value}), (key, host.get(key), value)


@pytest.fixture
def daemons(spawn_daemon: Any, tmp_path: Path) -> tuple[str, list[Daemon]]:
    """A daemon for each of the unit tests' policies (the reckless one's binds under the root too: a config
    cannot allow /), and the root their binds are allowed under."""
    root = make_root(tmp_path / "allowed")
    variants = [replace(policy, allowed_host_paths=(root,)) for policy in policy_variants(root)]
    started = [
        spawn_daemon(daemon_config(tmp_path / f"d{index}", more=policy_toml(policy)))
        for index, policy in enumerate(variants)
    ]
    return root, started


def test_a_dry_run_is_what_the_real_create_does(daemons: tuple[str, list[Daemon]], case_label: str) -> None:
    root, started = daemons
    volumes = f"moorage-test-dry-{case_label}"
    outcomes: Counter[str] = Counter()

    def labelled(body: dict[str, Any]) -> dict[str, Any]:
        """The test image, never pulled; the test's label; named volumes of the test's own, removed after."""
        named = [
            {**volume, "volume": f"{volumes}-{volume['volume']}"} if _plain(volume) else volume
            for volume in body.get("volumes", [])
        ]
        return {**body, "image": TEST_IMAGE, "pull": "never", "volumes": named, "labels": {TEST_LABEL: case_label}}

    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(create_bodies(root), st.sampled_from(range(len(started))))
    def dry_run_foretells(drawn: dict[str, Any], which: int) -> None:
        body, daemon = labelled(drawn), started[which]
        dry_status, dry = post(daemon, "/api/v1/containers?dry_run=true", body)
        status, real = post(daemon, "/api/v1/containers", body)
        try:
            if dry_status != 200:  # a 400 or 404 of the request itself (an unknown network), the real call's too
                assert (status, dry_status) == (dry_status, real["code"]), (dry, real)
                outcomes["refused alike"] += 1
                return
            answer = dry["data"]
            assert answer["allowed"] is (status != 403), (body, answer, real)
            denied = {(d["field"], d["rule"]) for d in answer["decisions"] if d["decision"] == "denied"}
            if status == 403:
                outcomes["denied"] += 1
                assert {(error["field"], error["rule"]) for error in real["errors"]} <= denied
                return
            assert not denied and answer["engine_request"] is not None
            if status == 201:
                outcomes["created"] += 1
                assert_received(answer["engine_request"]["body"], inspected(real["data"]["id"]))
            else:
                outcomes[f"engine {status}"] += 1  # an engine's own refusal (a runtime it lacks): not the policy's
        finally:
            for container in docker_cli("ps", "-aq", "--filter", f"label={TEST_LABEL}={case_label}").split():
                docker_cli("rm", "-f", "-v", container)

    try:
        dry_run_foretells()
    finally:
        for volume in docker_cli("volume", "ls", "-q", "--filter", f"name={volumes}").split():
            docker_cli("volume", "rm", volume)
    # Not vacuous: bodies were created and bodies were denied.
    assert outcomes["created"] and outcomes["denied"], outcomes


# --- what a dry run leaves as it was ---------------------------------------------------------------------------


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, allowed_root: Path) -> TestClient:
    policy = {"allowed_host_paths": [str(allowed_root)], "max_memory": "512m", "default_pids_limit": 100}
    settings = make_settings(tmp_path, {"test-admin": "admin"}, policy=policy)
    made: TestClient = await aiohttp_client(create_app(settings), headers={"X-API-Key": plain_key("test-admin")})
    return made


@pytest.fixture
async def sweep(case_label: str) -> AsyncIterator[str]:
    """The test's label; whatever carries it is removed after."""
    yield case_label
    for container in docker_cli("ps", "-aq", "--filter", f"label={TEST_LABEL}={case_label}").split():
        docker_cli("rm", "-f", "-v", container)


def exists(kind: str, name: str) -> bool:
    """Whether the engine has an image, volume or network of that name."""
    return subprocess.run(["docker", kind, "inspect", name], capture_output=True, check=False).returncode == 0


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]


def decided(answer: dict[str, Any], field: str) -> list[tuple[str, str]]:
    return [(d["decision"], d["rule"]) for d in answer["decisions"] if d["field"] == field]


async def test_a_dry_run_creates_and_pulls_nothing_and_is_audited_as_one(
    client: TestClient, sweep: str, tmp_path: Path, allowed_root: Path
) -> None:
    volume = f"moorage-test-dry-{sweep}"
    body = {
        "image": ABSENT_IMAGE,
        "labels": {TEST_LABEL: sweep},
        "volumes": [
            {"host_path": str(allowed_root / "data"), "container_path": "/data"},
            {"volume": volume, "container_path": "/v"},
        ],
    }
    resp = await client.post("/api/v1/containers", params={"dry_run": "true"}, json=body)
    assert resp.status == 200, await resp.text()
    answer = (await resp.json())["data"]
    assert answer["allowed"] is True
    # The image is not here and is not pulled: what it would set is not known.
    assert decided(answer, "healthcheck") == [("unknown", "policy.min_healthcheck_interval")]
    assert decided(answer, "memory") == [("defaulted", "policy.max_memory")]
    assert decided(answer, "pids_limit") == [("defaulted", "policy.default_pids_limit")]
    assert set(decided(answer, "volumes.0.host_path")) == {
        ("allowed", "policy.allowed_host_paths"),
        ("allowed", "moorage.bind_nesting"),
    }
    sent = answer["engine_request"]["body"]
    assert sent["HostConfig"]["Memory"] == 512 * 1024 * 1024 and sent["HostConfig"]["PidsLimit"] == 100
    assert docker_cli("ps", "-aq", "--filter", f"label={TEST_LABEL}={sweep}") == ""
    assert not exists("image", ABSENT_IMAGE) and not exists("volume", volume)
    [line] = [line for line in audit_lines(tmp_path) if line["path"] == "/api/v1/containers"]
    assert line["result"] == 200 and line["detail"] == {"name": None, "dry_run": True, "allowed": True, "denied": []}


async def test_a_network_given_by_the_host_s_id_is_denied_alike(client: TestClient, sweep: str) -> None:
    """The name is allowed; the engine's look-up finds it is the host's: the dry run and the 403 say so."""
    host_id = docker_cli("network", "inspect", "host", "--format", "{{.Id}}")[:12]
    body = {"image": TEST_IMAGE, "network": host_id, "labels": {TEST_LABEL: sweep}}
    resp = await client.post("/api/v1/containers", params={"dry_run": "1"}, json=body)
    answer = (await resp.json())["data"]
    assert answer["allowed"] is False and answer["engine_request"] is None
    assert decided(answer, "network") == [("denied", "policy.allow_host_network")]
    real = await client.post("/api/v1/containers", json=body)
    assert real.status == 403
    errors = (await real.json())["errors"]
    assert [(error["field"], error["rule"]) for error in errors] == [("network", "policy.allow_host_network")]


async def test_a_dry_run_update_changes_nothing(client: TestClient, make_container: MakeContainer) -> None:
    made = await make_container(cmd=["sleep", "600"])
    path = f"/api/v1/containers/{made['Id']}"
    too_much = await client.patch(path, params={"dry_run": "true"}, json={"memory": "1g"})
    answer = (await too_much.json())["data"]
    assert answer["allowed"] is False and decided(answer, "memory") == [("denied", "policy.max_memory")]
    real = await client.patch(path, json={"memory": "1g"})
    assert real.status == 403 and (await real.json())["errors"][0]["rule"] == "policy.max_memory"
    resp = await client.patch(path, params={"dry_run": "true"}, json={"memory": "256m", "pids_limit": 50})
    answer = (await resp.json())["data"]
    assert answer["allowed"] is True
    assert answer["engine_request"] == {"id": made["Id"], "body": {"Memory": 256 * 1024 * 1024, "PidsLimit": 50}}
    assert inspected(made["Id"])["HostConfig"]["Memory"] == 0


async def test_a_dry_run_recreate_touches_nothing(client: TestClient, make_container: MakeContainer) -> None:
    made = await make_container(cmd=["sleep", "600"], start=True)
    resp = await client.post(f"/api/v1/containers/{made['Id']}/recreate", params={"dry_run": "true"}, json={})
    assert resp.status == 200, await resp.text()
    answer = (await resp.json())["data"]
    assert answer["allowed"] is True
    name = inspected(made["Id"])["Name"].lstrip("/")
    assert answer["engine_request"]["name"].startswith(f"{name}-new-")
    assert answer["engine_request"]["body"]["Image"] == TEST_IMAGE
    after = inspected(made["Id"])
    assert after["State"]["Running"] and docker_cli("ps", "-aq", "--filter", f"name={name}-new-") == ""


async def test_volume_and_network_dry_runs_create_nothing(client: TestClient, case_label: str) -> None:
    name = f"moorage-test-dry-{case_label}"
    resp = await client.post("/api/v1/volumes?dry_run=true", json={"name": name, "driver_opts": {"type": "tmpfs"}})
    answer = (await resp.json())["data"]
    assert answer["allowed"] is False
    assert decided(answer, "driver_opts") == [("denied", "policy.allow_volume_driver_opts")]
    resp = await client.post("/api/v1/volumes?dry_run=true", json={"name": name, "labels": {TEST_LABEL: case_label}})
    answer = (await resp.json())["data"]
    assert answer["allowed"] is True and answer["engine_request"]["body"]["Name"] == name
    resp = await client.post("/api/v1/networks?dry_run=true", json={"name": name, "driver": "macvlan"})
    answer = (await resp.json())["data"]
    assert decided(answer, "driver") == [("denied", "policy.allowed_network_drivers")]
    real = await client.post("/api/v1/networks", json={"name": name, "driver": "macvlan"})
    assert (await real.json())["errors"][0]["rule"] == "policy.allowed_network_drivers"
    resp = await client.post("/api/v1/networks?dry_run=true", json={"name": name, "labels": {TEST_LABEL: case_label}})
    assert (await resp.json())["data"]["allowed"] is True
    assert not exists("volume", name) and not exists("network", name)
    # A name taken: the dry run's 409 is the real create's.
    taken = f"{name}-taken"
    docker_cli("network", "create", "--label", f"{TEST_LABEL}={case_label}", taken)
    try:
        for query in ("?dry_run=true", ""):
            resp = await client.post(f"/api/v1/networks{query}", json={"name": taken})
            assert resp.status == 409, await resp.text()
            body = await resp.json()
            assert_error(body, 409)
            assert [error["field"] for error in body["errors"]] == ["name"]
    finally:
        docker_cli("network", "rm", taken)


def test_the_daemons_policy_is_what_get_policy_shows(daemons: tuple[str, list[Daemon]]) -> None:
    """Each daemon was configured with what GET /policy showed of a policy: it shows the same again."""
    root, started = daemons
    for daemon, policy in zip(started, policy_variants(root), strict=True):
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
        conn.request("GET", "/api/v1/policy", headers={"X-API-Key": plain_key("test-admin")})
        shown = json.loads(conn.getresponse().read())["data"]["policy"]
        conn.close()
        assert shown == policy_in_force(replace(policy, allowed_host_paths=(root,)))["policy"]
