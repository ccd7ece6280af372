"""No request, however malformed, gets a 500: generated bodies and queries against a live daemon and engine."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..helpers import TEST_IMAGE, TEST_LABEL, Daemon

CREATE_FIELDS = (
    "name", "image", "ports", "environment", "volumes", "command", "entrypoint", "working_dir", "user", "labels",
    "restart_policy", "memory", "cpus", "pids_limit", "network", "hostname", "healthcheck", "start", "privileged",
    "cap_add", "network_mode", "pid_mode", "devices", "sysctls", "runtime", "security_opt", "Privileged", "HostConfig",
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# The image is the test image or junk, and never pulled: a generated name must not send the engine to the internet.
BODIES = st.fixed_dictionaries(
    {"image": st.sampled_from([TEST_IMAGE]) | st.text(max_size=30), "pull": st.just("never")},
    optional={name: JSON | st.text(max_size=40) for name in CREATE_FIELDS if name != "image"},
)
# derandomize: the same examples every run, so that a red run can be repeated and a green one means the same.
SETTINGS = settings(
    max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def request(live: tuple[Daemon, str], method: str, path: str, body: bytes | None = None) -> int:
    daemon, key = live
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"X-API-Key": key, "Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = json.loads(resp.read())
        assert payload["code"] == resp.status
        return resp.status
    finally:
        conn.close()


def labelled(body: dict[str, Any]) -> dict[str, Any]:
    """Label whatever a generated body might create, so that the suite's sweep removes it."""
    labels = body.get("labels", {})
    return {**body, "labels": {**labels, TEST_LABEL: "fuzz"}} if isinstance(labels, dict) else body


STATUSES: Counter[int] = Counter()


def test_generated_create_bodies_never_get_a_5xx(live: tuple[Daemon, str]) -> None:
    @SETTINGS
    @given(BODIES)
    def check(body: dict[str, Any]) -> None:
        status = request(live, "POST", "/api/v1/containers", json.dumps(labelled(body)).encode())
        STATUSES[status] += 1
        assert status < 500, body

    check()
    # The bodies reach past validation too: some are created, some refused by the policy or the engine.
    assert STATUSES[400] and STATUSES[201], STATUSES


QUERY = st.lists(
    st.tuples(st.sampled_from(["status", "name", "label", "limit", "offset", "x"]), st.text(max_size=12)), max_size=5
)


def test_generated_list_queries_never_get_a_5xx(live: tuple[Daemon, str]) -> None:
    @SETTINGS
    @given(QUERY)
    def check(pairs: list[tuple[str, str]]) -> None:
        assert request(live, "GET", "/api/v1/containers?" + urllib.parse.urlencode(pairs)) < 500

    check()


def test_generated_references_and_actions_never_get_a_5xx(live: tuple[Daemon, str]) -> None:
    @SETTINGS
    @given(
        st.text(min_size=1, max_size=30),
        st.sampled_from(["", "/start", "/stop", "/kill", "/pause", "/restart", "/unpause", "/logs"]),
        st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
    )
    def check(ref: str, action: str, method: str) -> None:
        # Never a real container: a generated "a" would be an id prefix of one, and DELETE would remove it.
        path = f"/api/v1/containers/{urllib.parse.quote('zz-no-such-' + ref, safe='')}{action}"
        status = request(live, method, path)
        assert status < 500, (method, path, status)

    check()
