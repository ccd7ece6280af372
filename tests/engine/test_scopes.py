"""Scoped keys and tokens against the real engine: what is outside a selector or the name globs does not exist for
the caller, in any route, list, total, event or metric series; what it creates lands inside its scope."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage.access.keys import hash_key
from moorage.app import create_app

from ..helpers import (
    TEST_IMAGE,
    TEST_LABEL,
    Daemon,
    concrete_routes,
    daemon_config,
    docker_cli,
    make_settings,
    plain_key,
)

ABSENT_ID = "0" * 64
# A body, query or both for each route that names a container, such that it would act if it were let through.
_ASKED: dict[str, dict[str, Any]] = {
    "rename": {"json": {"name": "shop-renamed"}},
    "exec": {"json": {"command": ["true"]}},
    "recreate": {"json": {"pull": "never", "wait": "none"}},
    "files": {"params": {"path": "/etc/hostname"}},
    "wait": {"params": {"condition": "not-running", "timeout": "1"}},
    "stop": {"params": {"timeout": "1"}},
    "restart": {"params": {"timeout": "1"}},
    "exec/ws": {"params": {"command": "sh"}},
}


class Host:
    """This test's containers, made with the docker CLI and removed after it."""

    def __init__(self, case: str) -> None:
        self.case = case

    def run(self, name: str, labels: dict[str, str], start: bool = True) -> str:
        flags = [f"--label={TEST_LABEL}={self.case}", *(f"--label={k}={v}" for k, v in labels.items())]
        verb = ["run", "-d"] if start else ["create"]
        return docker_cli(*verb, "--network", "none", "--name", name, *flags, TEST_IMAGE, "sleep", "600")

    def clean(self) -> None:
        removals = (
            (["ps", "-aq"], ["rm", "-f", "-v"]),
            (["volume", "ls", "-q"], ["volume", "rm", "-f"]),
            (["network", "ls", "-q"], ["network", "rm"]),
        )
        for listing, rm in removals:
            found = docker_cli(*listing, "--filter", f"label={TEST_LABEL}={self.case}").split()
            if found:
                subprocess.run(["docker", *rm, *found], capture_output=True, check=False)


@pytest.fixture
def host(case_label: str) -> Iterator[Host]:
    made = Host(case_label)
    yield made
    made.clean()


@pytest.fixture
def scoped(tmp_path: Path, host: Host, spawn_daemon: Callable[..., Daemon]) -> Daemon:
    """A daemon with an admin key scoped to this test's `app=shop` containers named `shop-*`, and one scoped to
    this test's containers only (for tokens to narrow)."""
    keys = (
        f'[[auth.api_keys]]\nname = "shop"\nrole = "admin"\nsha256 = "{hash_of("shop")}"\n'
        f'selector = "{TEST_LABEL}={host.case},app=shop"\nnames = ["shop-*"]\n'
        f'[[auth.api_keys]]\nname = "case"\nrole = "admin"\nsha256 = "{hash_of("case")}"\n'
        f'selector = "{TEST_LABEL}={host.case}"\n'
    )
    return spawn_daemon(daemon_config(tmp_path, more=keys))


def hash_of(name: str) -> str:
    return hash_key(plain_key(name))


def call(daemon: Daemon, method: str, path: str, key: str = "shop", **kwargs: Any) -> requests.Response:
    headers = {"X-API-Key": plain_key(key), **kwargs.pop("headers", {})}
    return requests.request(method, daemon.url + path, headers=headers, timeout=30, **kwargs)


def container_routes() -> list[tuple[str, str]]:
    """(method, path with {id}) of every route that names a container, walked from the router itself."""
    app = create_app(make_settings(Path("/tmp"), {}))
    found = []
    for method, path, _ in concrete_routes(app):
        if "/containers/x1" in path:
            found.append((method, path.replace("/containers/x1", "/containers/{id}")))
    return found


def asked(path: str) -> dict[str, Any]:
    tail = path.split("{id}", 1)[1].lstrip("/")
    return _ASKED.get(tail, {})


def test_a_container_outside_the_scope_is_answered_as_one_that_does_not_exist(scoped: Daemon, host: Host) -> None:
    inside = host.run(f"shop-{host.case}", {"app": "shop"})
    other_app = host.run(f"shop-{host.case}-other", {"app": "other"})
    other_name = host.run(f"web-{host.case}", {"app": "shop"})
    routes = container_routes()
    assert len(routes) > 15
    for outside in (other_app, other_name, f"web-{host.case}"):
        for method, path in routes:
            kwargs = asked(path)
            got = call(scoped, method, path.replace("{id}", outside), **kwargs)
            absent = call(scoped, method, path.replace("{id}", ABSENT_ID), **kwargs)
            assert got.status_code == 404, f"{method} {path} of {outside}: {got.status_code} {got.text}"
            assert got.json() == json.loads(absent.text.replace(ABSENT_ID, outside)), f"{method} {path}"
    # Nothing was done to them: still running, under their names, with their labels.
    for container, name in ((other_app, f"shop-{host.case}-other"), (other_name, f"web-{host.case}")):
        state = json.loads(docker_cli("inspect", container))[0]
        assert state["State"]["Running"] and state["Name"] == f"/{name}"
    # The one inside answers.
    assert call(scoped, "GET", f"/api/v1/containers/{inside}").status_code == 200
    assert call(scoped, "GET", f"/api/v1/containers/shop-{host.case}/logs").status_code == 200
    done = call(scoped, "POST", f"/api/v1/containers/{inside}/exec", json={"command": ["echo", "in"]})
    assert done.status_code == 200 and done.json()["data"]["stdout"] == "in\n"


def test_lists_totals_metrics_and_updates_hold_only_what_is_in_scope(scoped: Daemon, host: Host) -> None:
    inside = host.run(f"shop-{host.case}", {"app": "shop"})
    stopped = host.run(f"shop-{host.case}-stopped", {"app": "shop"}, start=False)
    outside = [host.run(f"shop-{host.case}-x", {"app": "other"}), host.run(f"web-{host.case}", {"app": "shop"})]
    listed = call(scoped, "GET", "/api/v1/containers").json()["data"]
    assert listed["total"] == 2 and {c["id"] for c in listed["items"]} == {inside, stopped}
    assert call(scoped, "GET", "/api/v1/containers", params={"label": "app=other"}).json()["data"]["total"] == 0
    unscoped = call(
        scoped, "GET", "/api/v1/containers", key="test-admin", params={"label": f"{TEST_LABEL}={host.case}"}
    )
    assert unscoped.json()["data"]["total"] == 4
    running = {inside, *outside}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # every running one read at least once
        every = call(scoped, "GET", "/api/v1/metrics/containers", key="test-admin").json()["data"]["items"]
        if running <= {r["id"] for r in every}:
            break
        time.sleep(0.2)
    readings = call(scoped, "GET", "/api/v1/metrics/containers").json()["data"]
    assert readings["total"] == 1 and [r["id"] for r in readings["items"]] == [inside]
    everything = call(scoped, "GET", "/metrics", key="test-admin").text
    assert all(container in everything for container in running)
    text = call(scoped, "GET", "/metrics").text
    assert inside in text and not any(other in text for other in outside)
    assert "node_" not in text and "moorage_" not in text  # the host's and moorage's tell of the whole host
    updates = call(scoped, "GET", "/api/v1/image-updates").json()["data"]
    assert {item["id"] for item in updates["items"]} == {inside, stopped}
    images = call(scoped, "GET", "/api/v1/images").json()["data"]
    assert images["total"] == 0  # the test image has no app=shop label


def test_events_are_those_of_containers_in_scope(scoped: Daemon, host: Host) -> None:
    since = time.time() - 1
    inside = host.run(f"shop-{host.case}", {"app": "shop"})
    outside = host.run(f"shop-{host.case}-x", {"app": "other"})
    docker_cli("rm", "-f", outside)
    docker_cli("stop", "-t", "0", inside)
    time.sleep(0.2)
    until = time.time() + 0.5
    resp = call(scoped, "GET", "/api/v1/events", params={"since": f"{since:.3f}", "until": f"{until:.3f}"})
    lines = [json.loads(line) for line in resp.text.splitlines()]
    events = [line for line in lines if "type" in line]
    assert {e["id"] for e in events} == {inside}, events
    assert {"create", "start", "die"} <= {e["action"] for e in events}
    assert lines[-1] == {"end": "done"}
    window = {"since": f"{since:.3f}", "until": f"{until:.3f}"}
    every = call(scoped, "GET", "/api/v1/events", key="test-admin", params=window).text.splitlines()
    assert {inside, outside} <= {json.loads(line).get("id") for line in every}


def test_creates_are_stamped_and_cannot_leave_the_scope(scoped: Daemon, host: Host) -> None:
    made = call(scoped, "POST", "/api/v1/containers", json={"image": TEST_IMAGE, "name": f"shop-{host.case}-new"})
    assert made.status_code == 201, made.text
    labels = made.json()["data"]["labels"]
    assert labels["app"] == "shop" and labels[TEST_LABEL] == host.case
    refusals = {
        "labels.app": {"name": f"shop-{host.case}-a", "labels": {"app": "other"}},
        "name": {"name": f"web-{host.case}"},
    }
    for field, body in refusals.items():
        resp = call(scoped, "POST", "/api/v1/containers", json={"image": TEST_IMAGE, **body})
        assert resp.status_code == 403 and resp.json()["errors"][0]["field"] == field, resp.text
    nameless = call(scoped, "POST", "/api/v1/containers", json={"image": TEST_IMAGE})
    assert nameless.status_code == 403 and nameless.json()["errors"][0]["field"] == "name"
    made_here = docker_cli("ps", "-a", "--format", "{{.Names}}", "--filter", f"label={TEST_LABEL}={host.case}")
    assert made_here.split() == [f"shop-{host.case}-new"]
    renamed = call(scoped, "POST", f"/api/v1/containers/shop-{host.case}-new/rename", json={"name": "elsewhere"})
    assert renamed.status_code == 403 and renamed.json()["errors"][0]["field"] == "name"
    volume = call(scoped, "POST", "/api/v1/volumes", json={"name": f"shop-{host.case}"})
    assert volume.status_code == 201 and volume.json()["data"]["labels"]["app"] == "shop"
    docker_cli("volume", "create", "--label", f"{TEST_LABEL}={host.case}", f"other-{host.case}")
    names = [v["name"] for v in call(scoped, "GET", "/api/v1/volumes").json()["data"]["items"]]
    assert names == [f"shop-{host.case}"]
    hidden = call(scoped, "GET", f"/api/v1/volumes/other-{host.case}")
    absent = call(scoped, "GET", f"/api/v1/volumes/none-{host.case}")
    assert hidden.status_code == 404
    assert hidden.json() == json.loads(absent.text.replace(f"none-{host.case}", f"other-{host.case}"))
    for prune in ("/api/v1/containers/prune", "/api/v1/system/prune"):
        assert call(scoped, "POST", prune, params={"dry_run": "true"}).status_code == 403
    assert call(scoped, "GET", "/api/v1/system/df").status_code == 403


def test_a_scoped_create_reaches_only_volumes_networks_and_containers_in_scope(scoped: Daemon, host: Host) -> None:
    case = host.case
    docker_cli("volume", "create", "--label", f"{TEST_LABEL}={case}", f"other-{case}")
    docker_cli("network", "create", "--label", f"{TEST_LABEL}={case}", f"other-{case}")
    host.run(f"blog-{case}", {"app": "blog"})
    own = call(scoped, "POST", "/api/v1/volumes", json={"name": f"shop-{case}-data"})
    assert own.status_code == 201, own.text
    base = {"image": TEST_IMAGE, "name": f"shop-{case}-a"}
    reaching = {
        "volumes.0.volume": {"volumes": [{"volume": f"other-{case}", "container_path": "/data"}]},
        "networks.0.name": {"networks": [{"name": f"other-{case}"}]},
        "network_mode": {"network_mode": f"other-{case}"},
        "pid_mode": {"pid_mode": f"container:blog-{case}"},
    }
    for field, body in reaching.items():
        hidden = call(scoped, "POST", "/api/v1/containers", json={**base, **body})
        assert hidden.status_code == 404 and [e["field"] for e in hidden.json()["errors"]] == [field], hidden.text
        absent = json.loads(json.dumps({**base, **body}).replace(f"other-{case}", f"none-{case}"))
        absent = json.loads(json.dumps(absent).replace(f"blog-{case}", f"none-{case}"))
        missing = call(scoped, "POST", "/api/v1/containers", json=absent)
        assert missing.json() == json.loads(
            hidden.text.replace(f"other-{case}", f"none-{case}").replace(f"blog-{case}", f"none-{case}")
        ), (missing.text, hidden.text)
        dry = call(scoped, "POST", "/api/v1/containers", params={"dry_run": "true"}, json={**base, **body})
        assert dry.status_code == 404 and dry.json() == hidden.json()
    assert docker_cli("ps", "-a", "-q", "--filter", f"name=shop-{case}-a") == ""
    assert f"none-{case}" not in docker_cli("volume", "ls", "-q")
    mounted = call(scoped, "POST", "/api/v1/containers", json={
        **base, "volumes": [{"volume": f"shop-{case}-data", "container_path": "/data"}], "network_mode": "none"
    })  # fmt: skip
    assert mounted.status_code == 201, mounted.text


def test_a_recreate_onto_an_image_whose_labels_leave_the_scope_is_refused(scoped: Daemon, host: Host) -> None:
    old = host.run(f"shop-{host.case}-web", {"app": "shop"})
    image = f"moorage-test/relabelled:{host.case}"
    docker_cli("commit", "--change", "LABEL legacy=yes", old, image)
    token = call(scoped, "POST", "/api/v1/auth/tokens", key="case", json={"selector": "!legacy"}).json()["data"]
    try:
        resp = requests.post(
            f"{scoped.url}/api/v1/containers/{old}/recreate",
            json={"image": image, "pull": "never", "wait": "none"},
            headers={"Authorization": f"Bearer {token['token']}"},
            timeout=60,
        )
        assert resp.status_code == 403 and resp.json()["errors"][0]["field"] == "image", resp.text
        states = docker_cli("ps", "-a", "--format", "{{.ID}} {{.State}}", "--filter", f"label={TEST_LABEL}={host.case}")
        assert states.split() == [old[:12], "running"]
    finally:
        subprocess.run(["docker", "rmi", image], capture_output=True, check=False)


def test_a_token_narrows_its_keys_scope(scoped: Daemon, host: Host) -> None:
    web = host.run(f"shop-{host.case}-web", {"app": "shop", "tier": "web"})
    host.run(f"shop-{host.case}-db", {"app": "shop", "tier": "db"})
    issued = call(scoped, "POST", "/api/v1/auth/tokens", json={"selector": "tier=web"}).json()["data"]
    assert issued["selector"] == f"{TEST_LABEL}={host.case},app=shop,tier=web"
    bearer = {"Authorization": f"Bearer {issued['token']}"}
    listed = requests.get(scoped.url + "/api/v1/containers", headers=bearer, timeout=10).json()["data"]
    assert [c["id"] for c in listed["items"]] == [web]
    # The key's own globs still hold: a token cannot name its way out of them.
    wider = call(scoped, "POST", "/api/v1/auth/tokens", json={"names": ["*"]}).json()["data"]
    seen = requests.get(
        scoped.url + "/api/v1/containers", headers={"Authorization": f"Bearer {wider['token']}"}, timeout=10
    ).json()["data"]
    assert seen["total"] == 2


# The containers of the property test: every combination of three labels, some missing, under names of two forms.
_LABELS = {"app": ["shop", "blog"], "tier": ["web", "db"], "env": ["prod", "dev"]}
_KEYS = st.sampled_from(sorted(_LABELS))
_VALUES = st.sampled_from(["shop", "blog", "web", "db", "prod", "dev", "none"])
_REQUIREMENT = st.one_of(
    st.tuples(_KEYS, st.sampled_from(["=", "!="]), _VALUES).map(lambda r: (r[0], r[1], frozenset([r[2]]))),
    st.tuples(_KEYS, st.sampled_from(["in", "notin"]), st.frozensets(_VALUES, min_size=1, max_size=3)),
    st.tuples(_KEYS, st.sampled_from(["exists", "!"]), st.just(frozenset())),
)


def holds(requirement: tuple[str, str, frozenset[str]], labels: dict[str, str]) -> bool:
    """Kubernetes' meaning of one requirement, written out apart from moorage's."""
    key, op, values = requirement
    if op == "exists":
        return key in labels
    if op == "!":
        return key not in labels
    if op in ("=", "in"):
        return key in labels and labels[key] in values
    return key not in labels or labels[key] not in values


def text(requirement: tuple[str, str, frozenset[str]]) -> str:
    key, op, values = requirement
    if op == "exists":
        return key
    if op == "!":
        return f"!{key}"
    if op in ("=", "!="):
        return f"{key}{op}{next(iter(values))}"
    return f"{key} {op} ({', '.join(sorted(values))})"


def test_what_a_scoped_token_lists_is_what_the_selector_admits(scoped: Daemon, host: Host) -> None:
    made: dict[str, tuple[str, dict[str, str]]] = {}
    for index in range(12):
        labels = {key: values[(index >> n) % 2] for n, (key, values) in enumerate(_LABELS.items()) if index % (n + 2)}
        name = f"{'shop' if index % 2 else 'blog'}-{host.case}-{index}"
        made[host.run(name, labels, start=False)] = (name, labels)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        requirements=st.lists(_REQUIREMENT, max_size=3),
        globs=st.one_of(st.none(), st.lists(st.sampled_from(["shop-*", "blog-*", "*-1", "*-1?", "x*"]), min_size=1)),
    )
    def compare(requirements: list[tuple[str, str, frozenset[str]]], globs: list[str] | None) -> None:
        body: dict[str, Any] = {"selector": ",".join(text(r) for r in requirements)} if requirements else {}
        if globs:
            body["names"] = globs
        issued = call(scoped, "POST", "/api/v1/auth/tokens", key="case", json=body)
        assert issued.status_code == 201, issued.text
        bearer = {"Authorization": f"Bearer {issued.json()['data']['token']}"}
        seen = requests.get(scoped.url + "/api/v1/containers?limit=100", headers=bearer, timeout=10).json()["data"]
        expected = {
            cid
            for cid, (name, labels) in made.items()
            if all(holds(r, labels) for r in requirements)
            and (not globs or any(fnmatch.fnmatchcase(name, g) for g in globs))
        }
        assert {c["id"] for c in seen["items"]} == expected and seen["total"] == len(expected)

    compare()
