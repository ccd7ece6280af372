"""The create body: accepted and rejected forms of every field, error paths, and that no JSON input,
however malformed, raises anything but a ValidationError (which the middleware makes a 400)."""

from __future__ import annotations

import string
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from moorage.containers.model import (
    BindVolume,
    CreateRequest,
    Device,
    Healthcheck,
    NamedVolume,
    NetworkAttachment,
    PortBinding,
    PullPolicy,
    RestartPolicy,
)
from moorage.errors import flatten_errors
from moorage.schemas.create import ContainerCreateSchema

DIGEST = "sha256:" + "a" * 64
MIB = 1024 * 1024


def load(**fields: Any) -> CreateRequest:
    loaded: CreateRequest = ContainerCreateSchema().load({"image": "nginx", **fields})
    return loaded


def errors_of(body: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        ContainerCreateSchema().load(body)
    return {problem["field"]: problem["message"] for problem in flatten_errors(info.value.messages)}


def rejected(**fields: Any) -> dict[str, str]:
    return errors_of({"image": "nginx", **fields})


@pytest.mark.parametrize(
    ("field", "value", "loaded"),
    [
        ("name", "web-1.a_b", "web-1.a_b"),
        ("image", "nginx:1.25-alpine", "nginx:1.25-alpine"),
        ("image", "library/nginx", "library/nginx"),
        ("image", "127.0.0.1:5000/moorage-test/busybox:latest", "127.0.0.1:5000/moorage-test/busybox:latest"),
        ("image", "Registry.Example.com/a__b/c-d.e", "Registry.Example.com/a__b/c-d.e"),
        ("image", f"nginx@{DIGEST}", f"nginx@{DIGEST}"),
        ("image", f"localhost:5000/app:v1@{DIGEST}", f"localhost:5000/app:v1@{DIGEST}"),
        ("image", "[::1]:5000/app", "[::1]:5000/app"),
        ("ports", {"80/tcp": 8080}, {"80/tcp": (PortBinding(None, 8080),)}),
        ("ports", {"80": "8080"}, {"80/tcp": (PortBinding(None, 8080),)}),
        ("ports", {"53/UDP": "127.0.0.1:53"}, {"53/udp": (PortBinding("127.0.0.1", 53),)}),
        ("ports", {"9/sctp": "[::1]:9"}, {"9/sctp": (PortBinding("::1", 9),)}),
        ("ports", {"80": "127.0.0.1:"}, {"80/tcp": (PortBinding("127.0.0.1", None),)}),
        ("ports", {"80": None}, {"80/tcp": (PortBinding(),)}),
        (
            "ports",
            {"80": [8080, "[::]:8081", None]},
            {"80/tcp": (PortBinding(None, 8080), PortBinding("::", 8081), PortBinding())},
        ),
        ("ports", {"65535": 1}, {"65535/tcp": (PortBinding(None, 1),)}),
        ("environment", {"A": "b", "EMPTY": "", "SP ACE": "x=y"}, {"A": "b", "EMPTY": "", "SP ACE": "x=y"}),
        ("volumes", [{"host_path": "/srv/a", "container_path": "/data"}], (BindVolume("/srv/a", "/data"),)),
        ("volumes", [{"volume": "db", "container_path": "/v", "read_only": True}], (NamedVolume("db", "/v", True),)),
        ("command", ["echo", "a b"], ("echo", "a b")),
        ("command", "sh -c 'echo \"hi there\"'", ("sh", "-c", 'echo "hi there"')),
        ("command", [], ()),
        ("entrypoint", "/bin/sh -c", ("/bin/sh", "-c")),
        ("entrypoint", "", ()),
        ("working_dir", "/app", "/app"),
        ("user", "1000:1000", "1000:1000"),
        ("user", "www-data", "www-data"),
        ("labels", {"com.example.team": "a", "x": ""}, {"com.example.team": "a", "x": ""}),
        ("restart_policy", "no", RestartPolicy("no", 0)),
        ("restart_policy", "unless-stopped", RestartPolicy("unless-stopped", 0)),
        ("restart_policy", "on-failure", RestartPolicy("on-failure", 0)),
        ("restart_policy", "on-failure:5", RestartPolicy("on-failure", 5)),
        ("memory", 64 * MIB, 64 * MIB),
        ("memory", "512m", 512 * MIB),
        ("memory", "1g", 1024 * MIB),
        ("memory", "1.5G", 1536 * MIB),
        ("memory", "6144k", 6 * MIB),
        ("memory", "512MiB", 512 * MIB),
        ("memory", f"{8 * MIB}b", 8 * MIB),
        ("memory", "6m", 6 * MIB),
        ("cpus", 1.5, 1.5),
        ("cpus", 2, 2.0),
        ("cpus", 0.01, 0.01),
        ("pids_limit", 100, 100),
        ("network", "my-net", "my-net"),
        ("network", "host", "host"),
        ("network", "container:web", "container:web"),
        (
            "networks",
            [{"name": "front", "aliases": ["web", "www"], "ipv4_address": "10.0.0.2"}, {"name": "0123abcdef"}],
            (NetworkAttachment("front", ("web", "www"), IPv4Address("10.0.0.2")), NetworkAttachment("0123abcdef")),
        ),
        (
            "networks",
            [{"name": "bridge"}, {"name": "back", "aliases": []}],
            tuple(map(NetworkAttachment, ["bridge", "back"])),
        ),
        ("hostname", "web-1.example", "web-1.example"),
        ("healthcheck", {"test": "curl -f localhost"}, Healthcheck(test=("CMD-SHELL", "curl -f localhost"))),
        ("healthcheck", {"test": ["CMD", "true"], "retries": 3}, Healthcheck(test=("CMD", "true"), retries=3)),
        ("healthcheck", {"test": ["NONE"]}, Healthcheck(test=("NONE",))),
        (
            "healthcheck",
            {"interval": "1m30s", "timeout": 2.5, "start_period": "500ms"},
            Healthcheck(interval=90 * 10**9, timeout=25 * 10**8, start_period=5 * 10**8),
        ),
        ("healthcheck", {"interval": 0, "timeout": "1h0.5m"}, Healthcheck(interval=0, timeout=3630 * 10**9)),
        ("start", True, True),
        ("pull", "never", PullPolicy.NEVER),
        ("privileged", True, True),
        ("cap_add", ["NET_ADMIN", "cap_sys_time", "Chown", "ALL"], ("NET_ADMIN", "SYS_TIME", "CHOWN", "ALL")),
        ("network_mode", "none", "none"),
        ("pid_mode", "host", "host"),
        ("ipc_mode", "shareable", "shareable"),
        ("ipc_mode", "container:db", "container:db"),
        ("uts_mode", "host", "host"),
        ("userns_mode", "host", "host"),
        ("devices", ["/dev/fuse"], (Device("/dev/fuse", "/dev/fuse", "rwm"),)),
        ("devices", ["/dev/sda:/dev/xvda:r"], (Device("/dev/sda", "/dev/xvda", "r"),)),
        ("sysctls", {"net.ipv4.ip_forward": "1"}, {"net.ipv4.ip_forward": "1"}),
        ("runtime", "io.containerd.runc.v2", "io.containerd.runc.v2"),
        ("security_opt", ["seccomp=unconfined"], ("seccomp=unconfined",)),
    ],
)
def test_accepted(field: str, value: Any, loaded: Any) -> None:
    assert getattr(load(**{field: value}), field) == loaded


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("name", "-web", "name"),
        ("name", "web\n", "name"),
        ("name", "a/b", "name"),
        ("image", "", "image"),
        ("image", "Nginx", "image"),
        ("image", "nginx:", "image"),
        ("image", "nginx@sha256:abc", "image"),
        ("image", "nginx@md5:" + "a" * 32, "image"),
        ("image", "-nginx", "image"),
        ("image", "a" * 256, "image"),
        ("image", "nginx\n", "image"),
        ("image", 5, "image"),
        ("ports", {"80/tcp": 0}, "ports.80/tcp"),
        ("ports", {"80/tcp": 65536}, "ports.80/tcp"),
        ("ports", {"80/tcp": True}, "ports.80/tcp"),
        ("ports", {"80/tcp": 80.0}, "ports.80/tcp"),
        ("ports", {"80/tcp": "http"}, "ports.80/tcp"),
        ("ports", {"80/tcp": "::1:8080"}, "ports.80/tcp"),
        ("ports", {"80/tcp": "[127.0.0.1]:8080"}, "ports.80/tcp"),
        ("ports", {"80/tcp": "[fe80::1%eth0]:8080"}, "ports.80/tcp"),
        ("ports", {"80/tcp": "300.1.1.1:80"}, "ports.80/tcp"),
        ("ports", {"80/tcp": ":8080"}, "ports.80/tcp"),
        ("ports", {"80/tcp": []}, "ports.80/tcp"),
        ("ports", {"80/tcp": [8080, "x"]}, "ports.80/tcp"),
        ("ports", {"80/tcp": {"HostPort": "1"}}, "ports.80/tcp"),
        ("ports", {"80/icmp": 1}, "ports.80/icmp"),
        ("ports", {"0": 1}, "ports.0"),
        ("ports", {"٨٠": 1}, "ports.٨٠"),
        ("ports", {"80": 1, "80/tcp": 2}, "ports"),
        ("ports", [80], "ports"),
        ("environment", {"A=B": "c"}, "environment.A=B"),
        ("environment", {"": "c"}, "environment."),
        ("environment", {"A": 1}, "environment.A"),
        ("environment", {"A": "nul\x00"}, "environment.A"),
        ("environment", {"A": "\udc80"}, "environment.A"),
        ("volumes", [{"host_path": "srv", "container_path": "/d"}], "volumes.0.host_path"),
        ("volumes", [{"host_path": "/srv\x00", "container_path": "/d"}], "volumes.0.host_path"),
        ("volumes", [{"host_path": "/srv", "container_path": "d"}], "volumes.0.container_path"),
        ("volumes", [{"host_path": "/srv", "container_path": "/"}], "volumes.0.container_path"),
        ("volumes", [{"host_path": "/srv"}], "volumes.0.container_path"),
        ("volumes", [{"container_path": "/d"}], "volumes.0"),
        ("volumes", [{"host_path": "/srv", "volume": "v1", "container_path": "/d"}], "volumes.0"),
        ("volumes", [{"volume": "/etc", "container_path": "/d"}], "volumes.0.volume"),
        ("volumes", [{"volume": "v", "container_path": "/d"}], "volumes.0.volume"),
        ("volumes", [{"host_path": "/srv", "container_path": "/d", "read_only": "yes"}], "volumes.0.read_only"),
        ("volumes", [{"host_path": "/srv", "container_path": "/d", "type": "bind"}], "volumes.0.type"),
        ("volumes", {"host_path": "/srv"}, "volumes"),
        ("command", "echo 'unclosed", "command"),
        ("command", ["ok", 1], "command.1"),
        ("command", 5, "command"),
        ("entrypoint", ["a\x00"], "entrypoint.0"),
        ("working_dir", "app", "working_dir"),
        ("user", "root;rm", "user"),
        ("user", "a:b:c", "user"),
        ("labels", {"": "x"}, "labels."),
        ("labels", {"a": None}, "labels.a"),
        ("restart_policy", "sometimes", "restart_policy"),
        ("restart_policy", "always:3", "restart_policy"),
        ("restart_policy", "on-failure:-1", "restart_policy"),
        ("memory", 1024, "memory"),
        ("memory", "5m", "memory"),
        ("memory", "512x", "memory"),
        ("memory", -1, "memory"),
        ("memory", 2**63, "memory"),
        ("memory", 10**400, "memory"),
        ("memory", "99999999999p", "memory"),
        ("memory", 64.5 * MIB, "memory"),
        ("memory", True, "memory"),
        ("cpus", 0, "cpus"),
        ("cpus", -1, "cpus"),
        ("cpus", 0.001, "cpus"),
        ("cpus", 10**400, "cpus"),
        ("cpus", float("nan"), "cpus"),
        ("cpus", float("inf"), "cpus"),
        ("cpus", True, "cpus"),
        ("pids_limit", 0, "pids_limit"),
        ("pids_limit", 1.5, "pids_limit"),
        ("network", "bad name", "network"),
        ("network", "container:", "network"),
        ("networks", [], "networks"),
        ("networks", {"name": "a"}, "networks"),
        ("networks", [{"name": f"n{i}"} for i in range(17)], "networks"),
        ("networks", [{}], "networks.0.name"),
        ("networks", ["front"], "networks.0"),
        ("networks", [{"name": "bad name"}], "networks.0.name"),
        ("networks", [{"name": "front"}, {"name": "front"}], "networks.1.name"),
        ("networks", [{"name": "host"}], "networks.0.name"),
        ("networks", [{"name": "None"}], "networks.0.name"),
        ("networks", [{"name": "front"}, {"name": "container:db"}], "networks.1.name"),
        ("networks", [{"name": "bridge", "aliases": ["web"]}], "networks.0.aliases"),
        ("networks", [{"name": "bridge", "ipv4_address": "172.17.0.9"}], "networks.0.ipv4_address"),
        ("networks", [{"name": "front", "aliases": ["a b"]}], "networks.0.aliases.0"),
        ("networks", [{"name": "front", "ipv4_address": "fd00::2"}], "networks.0.ipv4_address"),
        ("networks", [{"name": "front", "ipv4_address": "10.0.0.256"}], "networks.0.ipv4_address"),
        ("networks", [{"name": "front", "IPAMConfig": {}}], "networks.0.IPAMConfig"),
        ("hostname", "-web", "hostname"),
        ("hostname", "a" * 64, "hostname"),
        ("hostname", "a_b", "hostname"),
        ("hostname", "a..b", "hostname"),
        ("healthcheck", {"test": []}, "healthcheck.test"),
        ("healthcheck", {"test": ["CMD"]}, "healthcheck.test"),
        ("healthcheck", {"test": ["CMD-SHELL", "a", "b"]}, "healthcheck.test"),
        ("healthcheck", {"test": ["curl", "x"]}, "healthcheck.test"),
        ("healthcheck", {"interval": "30"}, "healthcheck.interval"),
        ("healthcheck", {"interval": "1d"}, "healthcheck.interval"),
        ("healthcheck", {"interval": "500us"}, "healthcheck.interval"),
        ("healthcheck", {"interval": -1}, "healthcheck.interval"),
        ("healthcheck", {"interval": 10**19}, "healthcheck.interval"),
        ("healthcheck", {"timeout": float("nan")}, "healthcheck.timeout"),
        ("healthcheck", {"start_period": True}, "healthcheck.start_period"),
        ("healthcheck", {"retries": -1}, "healthcheck.retries"),
        ("healthcheck", {"Test": ["NONE"]}, "healthcheck.Test"),
        ("start", "true", "start"),
        ("start", 1, "start"),
        ("pull", "sometimes", "pull"),
        ("privileged", "false", "privileged"),
        ("privileged", 0, "privileged"),
        ("cap_add", "NET_ADMIN", "cap_add"),
        ("cap_add", ["NET ADMIN"], "cap_add.0"),
        ("cap_add", ["ok", "n\u0131t_adm\u0131n"], "cap_add.1"),
        ("network_mode", "HOST/x", "network_mode"),
        ("pid_mode", "HOST", "pid_mode"),
        ("pid_mode", "private", "pid_mode"),
        ("ipc_mode", "Host", "ipc_mode"),
        ("uts_mode", "container:x", "uts_mode"),
        ("userns_mode", "private", "userns_mode"),
        ("devices", ["sda"], "devices.0"),
        ("devices", ["/dev/sda:xvda"], "devices.0"),
        ("devices", ["/dev/sda:/dev/xvda:rwx"], "devices.0"),
        ("sysctls", {"net ipv4": "1"}, "sysctls.net ipv4"),
        ("sysctls", {"kernel.x": 1}, "sysctls.kernel.x"),
        ("runtime", "", "runtime"),
        ("security_opt", [None], "security_opt.0"),
    ],
)
def test_rejected(field: str, value: Any, path: str) -> None:
    assert path in rejected(**{field: value})


def test_defaults_are_docker_runs() -> None:
    req = load()
    assert (req.start, req.pull, req.privileged, req.name, req.ports, req.volumes) == (
        False,
        PullPolicy.MISSING,
        False,
        None,
        {},
        (),
    )


@pytest.mark.parametrize("body", [None, [], "nginx", 1, {}])
def test_image_is_required_and_the_body_is_an_object(body: Any) -> None:
    assert set(errors_of(body)) in ({"image"}, {"_schema"})


@pytest.mark.parametrize("key", ["Privileged", "HostConfig", "Binds", "Mounts", "volumes_from", "cap_drop", "IMAGE"])
def test_unknown_fields_are_errors_not_dropped(key: str) -> None:
    assert errors_of({"image": "nginx", key: True})[key] == "Unknown field."


def test_every_bad_field_is_reported_at_once() -> None:
    errors = rejected(
        name="-x",
        ports={"80/tcp": "nope", "81": 8081},
        volumes=[{"host_path": "/ok", "container_path": "/d"}, {"host_path": "rel", "container_path": "/d"}],
        memory="1k",
        extra=1,
    )
    assert set(errors) == {"name", "ports.80/tcp", "volumes.1.host_path", "memory", "extra"}


def test_network_and_network_mode_are_one_engine_setting() -> None:
    assert "network_mode" in rejected(network="a", network_mode="b")


@pytest.mark.parametrize("other", [{"network": "back"}, {"network_mode": "none"}, {"network_aliases": ["web"]}])
def test_networks_is_the_only_network_setting_it_is_given_with(other: dict[str, Any]) -> None:
    assert "networks" in rejected(networks=[{"name": "front"}], **other)


def test_bound_lists_are_reported_per_item() -> None:
    assert "item 1" in rejected(ports={"80": [8080, "[::1]"]})["ports.80"]


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None, categories=None))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)
_FIELDS = st.sampled_from(sorted(ContainerCreateSchema().fields))
# Plausible names for the nested objects' keys too, so that hypothesis gets past "Unknown field".
_NESTED_KEYS = st.sampled_from([
    "host_path", "volume", "container_path", "read_only", "test", "interval", "retries", "80", "80/udp", "A",
    "name", "aliases", "ipv4_address",
])  # fmt: skip
_NESTED = st.dictionaries(_NESTED_KEYS | st.text(string.printable, max_size=5), _JSON)
_BODY = _JSON | st.dictionaries(_FIELDS, _JSON | _NESTED | st.lists(_NESTED, max_size=3))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BODY)
def test_any_json_is_loaded_or_refused_with_a_validation_error(body: Any) -> None:
    try:
        loaded = ContainerCreateSchema().load(body)
    except ValidationError as err:
        assert flatten_errors(err.messages)
    else:
        assert isinstance(loaded, CreateRequest)
