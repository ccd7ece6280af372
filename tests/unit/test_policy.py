"""The host-safety policy and the engine body built under it: each denied case, the allowed ones, and
a property test that whatever moorage accepts, the engine request it builds satisfies the policy."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from moorage.config.loader import load_settings
from moorage.config.policy import PolicySchema
from moorage.containers.model import BindVolume, CreateRequest, NamedVolume
from moorage.containers.policy import check, check_existing_volume, image_healthcheck_violations
from moorage.containers.spec import CONFIG_KEYS, HOST_CONFIG_KEYS, engine_connect_bodies, engine_create_body
from moorage.errors import flatten_errors
from moorage.schemas.create import ContainerCreateSchema
from moorage.settings import PolicySettings

from ..helpers import ROOT

MIB = 1024 * 1024
# The test's own list, written independently of the policy's, of what no bind may reach.
SYSTEM = ("/etc", "/proc", "/sys", "/dev", "/root", "/boot", "/usr", "/var/lib/docker", "/var/run", "/run", "/home")


def make_root(made: Path) -> str:
    """An allowed root holding directories, a symlink out to /etc, one up to its parent and one inside."""
    base = Path(os.path.realpath(made))
    (base / "data" / "sub").mkdir(parents=True)
    (base / "etc_link").symlink_to("/etc")
    (base / "up").symlink_to("..")
    (base / "data" / "inner").symlink_to(base / "data" / "sub")
    return str(base)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_root(tmp_path_factory.mktemp("allowed"))


@pytest.fixture
def policy(root: str) -> PolicySettings:
    return PolicySettings(allowed_host_paths=(root,))


def request(**fields: Any) -> CreateRequest:
    loaded: CreateRequest = ContainerCreateSchema().load({"image": "nginx", **fields})
    return loaded


def denied(policy: PolicySettings, **fields: Any) -> set[str]:
    return {violation["field"] for violation in check(request(**fields), policy)}


def bind(path: str) -> list[dict[str, Any]]:
    return [{"host_path": path, "container_path": "/data"}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"privileged": True}, "privileged"),
        ({"cap_add": ["CHOWN"]}, "cap_add.0"),
        ({"network": "host"}, "network"),
        ({"network": "HOST"}, "network"),
        ({"network": "container:web"}, "network"),
        ({"network_mode": "host"}, "network_mode"),
        ({"pid_mode": "host"}, "pid_mode"),
        ({"pid_mode": "container:web"}, "pid_mode"),
        ({"ipc_mode": "host"}, "ipc_mode"),
        ({"ipc_mode": "container:db"}, "ipc_mode"),
        ({"uts_mode": "host"}, "uts_mode"),
        ({"userns_mode": "host"}, "userns_mode"),
        ({"devices": ["/dev/null", "/dev/fuse"]}, "devices.1"),
        ({"sysctls": {"net.ipv4.ip_forward": "1"}}, "sysctls.net.ipv4.ip_forward"),
        ({"runtime": "runsc"}, "runtime"),
        ({"security_opt": ["no-new-privileges", "seccomp=unconfined"]}, "security_opt.1"),
        ({"security_opt": ["apparmor=unconfined"]}, "security_opt.0"),
        ({"security_opt": ["label=disable"]}, "security_opt.0"),
        ({"security_opt": ["no-new-privileges:false"]}, "security_opt.0"),
        ({"security_opt": ["systempaths=unconfined"]}, "security_opt.0"),
        ({"volumes": bind("/srv/elsewhere")}, "volumes.0.host_path"),
        ({"volumes": bind("/")}, "volumes.0.host_path"),
        ({"volumes": bind("/etc")}, "volumes.0.host_path"),
        ({"volumes": bind("/var/run/docker.sock")}, "volumes.0.host_path"),
        ({"volumes": bind("/run/docker.sock")}, "volumes.0.host_path"),
        ({"volumes": bind("/var")}, "volumes.0.host_path"),
        ({"volumes": bind("/proc/1/root")}, "volumes.0.host_path"),
    ],
)
def test_denied_by_default(policy: PolicySettings, fields: dict[str, Any], field: str) -> None:
    assert field in denied(policy, **fields)


@pytest.mark.parametrize(
    "relative",
    [
        *(
            "etc_link",
            "etc_link/passwd",
            "up",
            "up/etc",
            "data/inner",
            "data/../data",
            "data/sub/../../../../etc",
            "../",
        ),
        "not-yet-made",  # what moorage cannot resolve, it cannot vouch for
    ],
)
def test_binds_through_symlinks_or_dot_dot_are_refused(policy: PolicySettings, root: str, relative: str) -> None:
    assert denied(policy, volumes=bind(f"{root}/{relative}")) == {"volumes.0.host_path"}


def test_a_bind_beginning_with_two_slashes_is_refused(policy: PolicySettings, root: str) -> None:
    """POSIX keeps a leading "//" through normalisation; the kernel reads it as "/", the nesting check would not."""
    assert denied(policy, volumes=bind(f"/{root}/data")) == {"volumes.0.host_path"}


@pytest.mark.parametrize("relative", ["", "/data", "/data/sub", "/data/sub/", "/data//sub"])
def test_binds_under_an_allowed_root_are_allowed(policy: PolicySettings, root: str, relative: str) -> None:
    assert denied(policy, volumes=bind(root + relative)) == set()


def test_the_forbidden_paths_hold_whatever_the_allowed_list_says(root: str, tmp_path: Path) -> None:
    everything = PolicySettings(allowed_host_paths=("/",), protected_paths=(f"{root}/data",))
    for path in ("/etc/passwd", "/var/lib", "/var/lib/docker", "/usr/local", "/", f"{root}/data/sub", root):
        assert denied(everything, volumes=bind(path)) == {"volumes.0.host_path"}, path
    elsewhere = os.path.realpath(tmp_path)
    assert denied(everything, volumes=bind(elsewhere)) == set()


def test_paths_the_schema_would_refuse_are_refused_too(policy: PolicySettings, root: str) -> None:
    """The policy does not trust that its request came through the schema."""
    built = CreateRequest(
        image="nginx",
        volumes=(BindVolume("srv", "/d"), BindVolume(f"{root}/a\x00", "/d"), NamedVolume("../etc", "/d")),
        cap_add=("cap_all",),
    )
    found = {violation["field"] for violation in check(built, policy)}
    assert found == {"volumes.0.host_path", "volumes.1.host_path", "volumes.2.volume", "cap_add.0"}


def test_what_the_policy_allows_is_allowed(policy: PolicySettings) -> None:
    lenient = replace(
        policy,
        allow_privileged=True,
        allowed_capabilities=frozenset({"NET_ADMIN"}),
        allow_host_network=True,
        allow_host_pid=True,
        allow_host_ipc=True,
        allow_host_uts=True,
        allow_host_userns=True,
        allow_devices=True,
        allowed_sysctls=frozenset({"net.ipv4.ip_forward"}),
        allowed_runtimes=frozenset({"runc", "runsc"}),
        max_memory=512 * MIB,
    )
    fields = {
        "privileged": True,
        "cap_add": ["cap_net_admin", "NET_ADMIN"],
        "network_mode": "host",
        "pid_mode": "container:web",
        "ipc_mode": "host",
        "uts_mode": "host",
        "userns_mode": "host",
        "devices": ["/dev/fuse"],
        "sysctls": {"net.ipv4.ip_forward": "1"},
        "runtime": "runsc",
        "security_opt": ["no-new-privileges", "no-new-privileges:true"],
        "memory": "512m",
    }
    assert denied(lenient, **fields) == set()
    assert denied(lenient, cap_add=["ALL"]) == {"cap_add.0"}
    assert denied(replace(lenient, allowed_capabilities=frozenset({"ALL"})), cap_add=["all"]) == {"cap_add.0"}


def test_safe_modes_need_no_permission(policy: PolicySettings) -> None:
    named = [{"volume": "db", "container_path": "/v"}]
    assert denied(policy, network="my-net", ipc_mode="private", volumes=named) == set()
    assert denied(policy, network_mode="none") == set()


def test_limits_above_the_maximum_are_refused(policy: PolicySettings) -> None:
    capped = replace(policy, max_memory=256 * MIB, max_pids_limit=100)
    assert denied(capped, memory="1g", pids_limit=101) == {"memory", "pids_limit"}
    assert denied(capped, memory="256m", pids_limit=100) == set()


def _messages(policy: PolicySettings, *paths: str) -> list[str]:
    return [" ".join(v["message"] for v in check(request(volumes=bind(path)), policy)) for path in paths]


def test_a_refused_bind_says_nothing_of_what_lies_outside_the_allowed_roots(root: str, tmp_path: Path) -> None:
    """Whether a path outside the roots exists, and where a symlink in a root leads, changes no refusal."""
    outside = Path(os.path.realpath(tmp_path)) / "outside"
    (outside / "there").mkdir(parents=True)
    inside = Path(root) / f"links-{tmp_path.name}"
    inside.mkdir()
    for name, target in {
        "to-dir": outside / "there",
        "to-missing": outside / "missing",
        "to-etc": Path("/etc"),
    }.items():
        (inside / name).symlink_to(target)
    policy = PolicySettings(allowed_host_paths=(root,))
    existing, missing = _messages(policy, str(outside / "there"), str(outside / "missing"))
    assert existing == missing
    links = _messages(
        policy, *(str(inside / name / tail) for name in ("to-dir", "to-missing", "to-etc") for tail in ("", "x"))
    )
    assert len(set(links)) == 1 and "symlink" in links[0]
    forbidden_paths = ("/root/.ssh", f"/root/moorage-missing-{tmp_path.name}")
    forbidden = _messages(policy, *forbidden_paths)
    assert len({message.replace(path, "PATH") for message, path in zip(forbidden, forbidden_paths, strict=True)}) == 1
    for message in [existing, missing, *links, *forbidden]:
        assert "Errno" not in message and "No such file" not in message
        assert str(outside) not in message and "/etc" not in message, message


def test_a_missing_path_under_an_allowed_root_is_refused_plainly(policy: PolicySettings, root: str) -> None:
    [message] = _messages(policy, f"{root}/data/absent")
    assert "does not exist" in message and "Errno" not in message


@pytest.mark.parametrize(
    ("interval", "minimum", "refused"),
    [("1ms", None, True), ("999ms", None, True), ("1s", None, False), (0, None, False), ("1ms", 0, False),
     ("5s", "10s", True), ("10s", "10s", False), (None, None, False)],
)  # fmt: skip
def test_healthchecks_probe_no_more_often_than_the_minimum(interval: Any, minimum: Any, refused: bool) -> None:
    policy = PolicySchema().load({} if minimum is None else {"min_healthcheck_interval": minimum})
    # A short timeout or start_period makes no more probes: only the interval is bounded.
    healthcheck: dict[str, Any] = {"test": "true", "timeout": "1ms", "start_period": "1ms"}
    if interval is not None:
        healthcheck["interval"] = interval
    assert denied(policy, healthcheck=healthcheck) == ({"healthcheck.interval"} if refused else set())


def test_cpus_above_the_maximum_are_refused(policy: PolicySettings) -> None:
    capped = replace(policy, max_cpus=1.5)
    assert denied(capped, cpus=1.51) == {"cpus"}
    assert denied(capped, cpus=1.5) == set()
    assert check(CreateRequest(image="nginx", cpus=float("nan")), capped) == [
        {"field": "cpus", "message": "must be at most 1.5", "rule": "policy.max_cpus"}
    ]


@pytest.mark.parametrize(
    ("ports", "section", "fields"),
    [
        ({"80": 80}, {}, {"ports.80/tcp.0.host_port"}),
        ({"80": "127.0.0.1:1023"}, {}, {"ports.80/tcp.0.host_port"}),
        ({"53/udp": [5353, "[::1]:53"]}, {}, {"ports.53/udp.1.host_port"}),
        ({"80": 80}, {"allow_privileged_ports": True}, set()),
        ({"80": 1024}, {}, set()),
        ({"80": None, "81": "127.0.0.1:"}, {}, set()),
        ({"80": 8080}, {"allowed_host_ips": ["127.0.0.1"]}, {"ports.80/tcp.0.host_ip"}),
        ({"80": None}, {"allowed_host_ips": ["127.0.0.1"]}, {"ports.80/tcp.0.host_ip"}),
        ({"80": [8080, "127.0.0.1:8081"]}, {"allowed_host_ips": ["127.0.0.1"]}, {"ports.80/tcp.0.host_ip"}),
        ({"80": "[::1]:8080"}, {"allowed_host_ips": ["127.0.0.1"]}, {"ports.80/tcp.0.host_ip"}),
        ({"80": "[::1]:8080"}, {"allowed_host_ips": ["127.0.0.1", "0::1"]}, set()),
        ({"80": "0.0.0.0:8080"}, {"allowed_host_ips": ["127.0.0.1"]}, {"ports.80/tcp.0.host_ip"}),
        ({"80": 8080, "81": "10.1.2.3:8081"}, {"allowed_host_ips": ["0.0.0.0"]}, {"ports.81/tcp.0.host_ip"}),
        ({"80": "10.1.2.3:8080"}, {}, set()),
        ({"80": "127.0.0.1:80"}, {"allowed_host_ips": ["::1"]}, {"ports.80/tcp.0.host_ip", "ports.80/tcp.0.host_port"}),
    ],
)
def test_published_ports_keep_to_the_allowed_addresses_and_unprivileged_ports(
    ports: dict[str, Any], section: dict[str, Any], fields: set[str]
) -> None:
    assert denied(PolicySchema().load(section), ports=ports) == fields


def test_every_violation_is_reported_at_once(policy: PolicySettings, root: str) -> None:
    strict = replace(policy, max_cpus=1.0, allowed_host_ips=frozenset({"127.0.0.1"}))
    found = denied(
        strict,
        cpus=2,
        healthcheck={"test": "true", "interval": "1ms"},
        ports={"80": 80},
        volumes=bind(f"{root}/etc_link"),
        privileged=True,
    )
    assert found == {
        "cpus", "healthcheck.interval", "ports.80/tcp.0.host_ip", "ports.80/tcp.0.host_port", "volumes.0.host_path",
        "privileged",
    }  # fmt: skip


def test_the_shipped_config_documents_the_policys_defaults() -> None:
    shipped = load_settings(ROOT / "config.toml").policy
    assert replace(shipped, protected_paths=()) == PolicySettings()


@pytest.mark.parametrize(
    ("inspect", "refused"),
    [
        ({"Driver": "local", "Options": None}, False),
        ({"Driver": "local", "Options": {}}, False),
        ({"Driver": "local", "Options": {"type": "none", "o": "bind", "device": "/etc"}}, True),
        ({"Driver": "local", "Options": {"device": "/dev/sda1"}}, True),
        ({"Driver": "local", "Options": {"o": "rbind"}}, True),
        ({"Driver": "sshfs", "Options": {}}, True),
        ({}, True),
    ],
)
def test_existing_volumes_backed_by_host_paths_are_refused(inspect: dict[str, Any], refused: bool) -> None:
    found = check_existing_volume(inspect, "volumes.2.volume")
    assert bool(found) is refused
    assert all(violation["field"] == "volumes.2.volume" for violation in found)


def test_the_policy_section_has_safe_defaults() -> None:
    assert PolicySchema().load({}) == PolicySettings()
    assert PolicySettings().allowed_runtimes == {"runc"}


def test_the_policy_section_loads() -> None:
    loaded = PolicySchema().load(
        {
            "allowed_host_paths": ["/srv/moorage"],
            "allowed_capabilities": ["cap_net_admin", "CHOWN"],
            "default_memory": "256m",
            "max_memory": 1024 * MIB,
            "default_pids_limit": 100,
            "max_pids_limit": 1000,
            "default_cpus": 0.5,
            "max_cpus": 2,
            "min_healthcheck_interval": "500ms",
            "allowed_host_ips": ["127.0.0.1", "0:0::1", "0.0.0.0"],
            "allow_privileged_ports": True,
        }
    )
    assert loaded.allowed_host_paths == ("/srv/moorage",)
    assert (loaded.default_cpus, loaded.max_cpus, loaded.min_healthcheck_interval) == (0.5, 2.0, 500 * 10**6)
    assert loaded.allowed_host_ips == {"127.0.0.1", "::1", "0.0.0.0"} and loaded.allow_privileged_ports is True
    assert loaded.allowed_capabilities == {"NET_ADMIN", "CHOWN"}
    assert (loaded.default_memory, loaded.max_memory) == (256 * MIB, 1024 * MIB)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"allowed_host_paths": ["/"]}, "allowed_host_paths.0"),
        ({"allowed_host_paths": ["/var"]}, "allowed_host_paths.0"),
        ({"allowed_host_paths": ["/etc/moorage"]}, "allowed_host_paths.0"),
        ({"allowed_host_paths": ["srv"]}, "allowed_host_paths.0"),
        ({"allowed_host_paths": ["/srv/../etc"]}, "allowed_host_paths.0"),
        ({"allowed_host_paths": ["/srv/moorage/"]}, "allowed_host_paths.0"),
        ({"allowed_capabilities": ["cap_all"]}, "allowed_capabilities"),
        ({"allow_privileged": "yes"}, "allow_privileged"),
        ({"allow_host_network": 1}, "allow_host_network"),
        ({"default_memory": "1g", "max_memory": "512m"}, "default_memory"),
        ({"default_pids_limit": 0}, "default_pids_limit"),
        ({"default_cpus": 4, "max_cpus": 2}, "default_cpus"),
        ({"max_cpus": 0}, "max_cpus"),
        ({"default_cpus": float("nan")}, "default_cpus"),
        ({"max_cpus": True}, "max_cpus"),
        ({"min_healthcheck_interval": "soon"}, "min_healthcheck_interval"),
        ({"min_healthcheck_interval": -1}, "min_healthcheck_interval"),
        ({"allowed_host_ips": ["localhost"]}, "allowed_host_ips.0"),
        ({"allowed_host_ips": ["127.0.0.1", "10.0.0.0/8"]}, "allowed_host_ips.1"),
        ({"allowed_host_ips": ["fe80::1%eth0"]}, "allowed_host_ips.0"),
        ({"allow_privileged_ports": "no"}, "allow_privileged_ports"),
        ({"allow_binds": True}, "allow_binds"),
    ],
)
def test_the_policy_section_refuses(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        PolicySchema().load(section)
    assert field in {problem["field"] for problem in flatten_errors(info.value.messages)}


def test_the_engine_body_is_built_from_the_model(root: str) -> None:
    req = request(
        name="web",
        ports={"80": None, "53/udp": ["127.0.0.1:5353", "[::1]:"]},
        environment={"A": "1", "B": "x=y"},
        volumes=[
            {"host_path": f"{root}/data/", "container_path": "/d", "read_only": True},
            {"volume": "db", "container_path": "/v"},
        ],
        command="sh -c 'sleep 1'",
        labels={"team": "a"},
        restart_policy="on-failure:3",
        cpus=0.5,
        healthcheck={"test": ["CMD", "true"], "interval": "30s", "retries": 2},
    )
    policy = PolicySettings(allowed_host_paths=(root,), default_memory=64 * MIB, max_pids_limit=50)
    body = engine_create_body(req, policy, mark="m", create_id="c")
    host = body.pop("HostConfig")
    assert body == {
        "Image": "nginx",
        "Cmd": ["sh", "-c", "sleep 1"],
        "Env": ["A=1", "B=x=y"],
        "Labels": {"team": "a", "moorage.policy": "m", "moorage.create": "c"},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30 * 10**9, "Retries": 2},
        "Tty": False,
    }
    assert host == {
        "PortBindings": {
            "80/tcp": [{"HostIp": "", "HostPort": ""}],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}, {"HostIp": "::1", "HostPort": ""}],
        },
        "Mounts": [
            {"Type": "bind", "Source": f"{root}/data", "Target": "/d", "ReadOnly": True},
            {"Type": "volume", "Source": "db", "Target": "/v", "ReadOnly": False},
        ],
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        "Memory": 64 * MIB,
        "NanoCpus": 500_000_000,
        "PidsLimit": 50,
        "Privileged": False,
        "SecurityOpt": ["no-new-privileges:true"],
    }


def test_the_engine_body_carries_the_allowed_options() -> None:
    req = request(
        cap_add=["net_admin"], network_mode="host", pid_mode="host", devices=["/dev/fuse"], sysctls={"a.b": "1"},
        runtime="runc", memory="128m", pids_limit=20, security_opt=["no-new-privileges"], entrypoint="",
    )  # fmt: skip
    host = engine_create_body(req, PolicySettings(), mark="m", create_id="c")["HostConfig"]
    assert (host["CapAdd"], host["NetworkMode"], host["PidMode"]) == (["CAP_NET_ADMIN"], "host", "host")
    assert host["Runtime"] == "runc"
    assert host["Devices"] == [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}]
    assert (host["Sysctls"], host["Memory"], host["PidsLimit"]) == ({"a.b": "1"}, 128 * MIB, 20)
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert engine_create_body(req, PolicySettings(), mark="m", create_id="c")["Entrypoint"] == []


def test_the_first_network_is_the_create_s_and_the_others_are_connected_after() -> None:
    """API 1.41 takes one endpoint at create: the first network's, with its aliases and address."""
    req = ContainerCreateSchema().load({
        "image": "nginx",
        "networks": [
            {"name": "front", "aliases": ["web"], "ipv4_address": "10.0.0.2"},
            {"name": "back"},
            {"name": "db", "aliases": ["api", "svc"], "ipv4_address": "10.1.0.9"},
        ],
    })  # fmt: skip
    body = engine_create_body(req, PolicySettings(), mark="m", create_id="c")
    assert body["HostConfig"]["NetworkMode"] == "front"
    endpoint = {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.0.0.2"}}
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"front": endpoint}}
    assert engine_connect_bodies(req, "c1") == [
        ("back", {"Container": "c1", "EndpointConfig": {}}),
        (
            "db",
            {
                "Container": "c1",
                "EndpointConfig": {"Aliases": ["api", "svc"], "IPAMConfig": {"IPv4Address": "10.1.0.9"}},
            },
        ),
    ]
    plain = ContainerCreateSchema().load({"image": "nginx", "networks": [{"name": "front"}]})
    assert "NetworkingConfig" not in engine_create_body(plain, PolicySettings(), mark="m", create_id="c")
    assert engine_connect_bodies(plain, "c1") == []


# --- the property: whatever is accepted, the engine body satisfies the policy ---------------------

_CAPS = ["NET_ADMIN", "net_admin", "Cap_Net_Admin", "CAP_SYS_ADMIN", "sys_admin", "ALL", "all", "CHOWN", "SYS_PTRACE"]
_MODES = ["host", "HOST", "Host", "container:web", "none", "bridge", "private", "shareable", "my-net", " host"]
_SECURITY = [
    "no-new-privileges", "no-new-privileges:true", "no-new-privileges:false", "No-New-Privileges",
    "seccomp=unconfined", "seccomp:unconfined", "apparmor=unconfined", "label=disable", "systempaths=unconfined",
]  # fmt: skip
_SYSTEM_PATHS = [
    "/", "/etc", "/etc/shadow", "/var", "/var/lib/docker", "/var/run/docker.sock", "/run/docker.sock", "/proc/1/root",
    "/home", "/srv", "//etc", "/./etc", "/usr/../etc", "/root/.ssh", "/sys/kernel", "/dev/sda",
]  # fmt: skip
_PORTS = [
    {"80": 80}, {"8080": 8080}, {"80": "127.0.0.1:8080"}, {"53/udp": "[::1]:53"}, {"80": None},
    {"80": [8080, "10.0.0.1:"]}, {"443": "127.0.0.1:443"}, {"80": "0.0.0.0:8080"},
]  # fmt: skip
_HEALTHCHECKS = [
    {"test": "true", "interval": "1ms"}, {"test": "true", "interval": "30s"}, {"test": "true"},
    {"test": "true", "interval": 0, "timeout": "1ms"}, {"test": "true", "interval": "5s"},
]  # fmt: skip
_SYSCTLS = ["net.ipv4.ip_forward", "kernel.core_pattern", "Net.IPv4.ip_forward"]
_SEGMENTS = ["data", "sub", "..", ".", "", "etc_link", "up", "inner", "new", "passwd"]
_ALIASES = {
    "Privileged": True,
    "HostConfig": {"Privileged": True, "Binds": ["/:/host"]},
    "Binds": ["/etc:/etc"],
    "Mounts": [{"Type": "BIND", "Source": "/", "Target": "/host"}],
    "CapAdd": ["ALL"],
    "volumes_from": ["other"],
    "PRIVILEGED": True,
    "volumes": [{"host_path": "/", "container_path": "/host", "Type": "bind"}],
}


def _host_paths(root: str) -> st.SearchStrategy[str]:
    under_root = st.lists(st.sampled_from(_SEGMENTS), max_size=4).map(lambda parts: "/".join([root, *parts]))
    odd = [*_SYSTEM_PATHS, f"{root}/../..", root.upper(), os.path.dirname(root), f"/{root}/data"]
    return under_root | st.sampled_from(odd)


def _volume(root: str) -> st.SearchStrategy[dict[str, Any]]:
    target = st.sampled_from(["/data", "/x"])
    binds = st.fixed_dictionaries(
        {"host_path": _host_paths(root), "container_path": target}, optional={"read_only": st.booleans()}
    )
    names = st.sampled_from(["db", "cache", "db.2", "../etc"])
    named = st.fixed_dictionaries({"volume": names, "container_path": target})
    return binds | named


def _dangerous(root: str) -> dict[str, st.SearchStrategy[Any]]:
    modes = st.sampled_from(_MODES)
    return {
        "privileged": st.booleans(),
        "cap_add": st.lists(st.sampled_from(_CAPS), max_size=3),
        "network": modes,
        "network_mode": modes,
        "networks": st.lists(st.fixed_dictionaries({"name": modes}), min_size=1, max_size=2),
        "pid_mode": modes,
        "ipc_mode": modes,
        "uts_mode": modes,
        "userns_mode": modes,
        "devices": st.lists(st.sampled_from(["/dev/fuse", "/dev/sda:/dev/xvda:rwm", "/dev/mem"]), max_size=2),
        "sysctls": st.dictionaries(st.sampled_from(_SYSCTLS), st.just("1")),
        "runtime": st.sampled_from(["runc", "RUNC", "runsc", "nvidia"]),
        "security_opt": st.lists(st.sampled_from(_SECURITY), max_size=2),
        "memory": st.sampled_from([64 * MIB, "8g", "1t", "6m"]),
        "pids_limit": st.sampled_from([10, 10**6]),
        "cpus": st.sampled_from([0.5, 2, 64]),
        "ports": st.sampled_from(_PORTS),
        "healthcheck": st.sampled_from(_HEALTHCHECKS),
    }


def policy_variants(root: str) -> list[PolicySettings]:
    """A strict policy (the defaults, binds under `root`), a lenient one and a reckless one."""
    strict = PolicySettings(allowed_host_paths=(root,))
    lenient = replace(
        strict,
        allowed_capabilities=frozenset({"NET_ADMIN", "CHOWN"}),
        allowed_sysctls=frozenset({"net.ipv4.ip_forward"}),
        allowed_runtimes=frozenset({"runc", "runsc"}),
        allow_host_network=True,
        max_memory=1024 * MIB,
        default_memory=256 * MIB,
        max_pids_limit=1000,
        default_cpus=1.0,
        max_cpus=2.0,
        allowed_host_ips=frozenset({"127.0.0.1", "::1"}),
        min_healthcheck_interval=10 * 10**9,
    )
    # Built directly, past the schema that would refuse "/": the forbidden paths must hold anyway.
    reckless = replace(
        strict,
        allowed_host_paths=("/",),
        allow_host_pid=True,
        allow_devices=True,
        allow_privileged_ports=True,
        allowed_host_ips=frozenset({"0.0.0.0"}),
        min_healthcheck_interval=0,
        max_cpus=4.0,
    )
    return [strict, lenient, reckless]


def policies(root: str) -> st.SearchStrategy[PolicySettings]:
    return st.sampled_from(policy_variants(root))


def create_bodies(root: str) -> st.SearchStrategy[dict[str, Any]]:
    """A create body as a client sends it: binds, safe fields, a few dangerous options, rarely a smuggled alias."""
    dangerous = _dangerous(root)
    safe = st.fixed_dictionaries(
        {"image": st.sampled_from(["nginx", "127.0.0.1:5000/app:v1"]), "volumes": st.lists(_volume(root), max_size=3)},
        optional={"ports": st.just({"80": None}), "environment": st.just({"A": "b"}), "command": st.just("sleep 1")},
    )
    chosen = st.lists(st.sampled_from(sorted(dangerous)), max_size=3, unique=True)
    picked = chosen.flatmap(lambda keys: st.fixed_dictionaries({key: dangerous[key] for key in keys}))
    alias = st.sampled_from([{}] * 9 + [{key: value} for key, value in _ALIASES.items()])
    return st.tuples(safe, picked, alias).map(lambda parts: {k: v for part in parts for k, v in part.items()})


_MODE_FLAGS = (
    ("NetworkMode", "allow_host_network"),
    ("PidMode", "allow_host_pid"),
    ("IpcMode", "allow_host_ipc"),
    ("UTSMode", "allow_host_uts"),
    ("UsernsMode", "allow_host_userns"),
)


def _assert_satisfies(body: dict[str, Any], policy: PolicySettings) -> None:
    """The policy, restated on the engine body itself, independently of policy.py."""
    host = body["HostConfig"]
    assert set(body) <= CONFIG_KEYS and set(host) <= HOST_CONFIG_KEYS
    assert host["Privileged"] is policy.allow_privileged is False
    assert {cap.removeprefix("CAP_") for cap in host.get("CapAdd", [])} <= policy.allowed_capabilities - {"ALL"}
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    for key, allowed in _MODE_FLAGS:
        mode = host.get(key, "").strip().lower()
        assert getattr(policy, allowed) or (mode != "host" and not mode.startswith("container:")), (key, mode)
    assert policy.allow_devices or "Devices" not in host
    assert set(host.get("Sysctls", {})) <= policy.allowed_sysctls
    assert host.get("Runtime", "runc") in policy.allowed_runtimes
    assert policy.max_memory is None or host["Memory"] <= policy.max_memory
    assert policy.max_cpus is None or host["NanoCpus"] <= policy.max_cpus * 1e9
    interval = body.get("Healthcheck", {}).get("Interval", 0)
    assert interval == 0 or interval >= policy.min_healthcheck_interval
    for binding in (binding for bindings in host["PortBindings"].values() for binding in bindings):
        assert policy.allow_privileged_ports or int(binding["HostPort"] or 0) not in range(1, 1024)
        allowed = policy.allowed_host_ips
        assert not allowed or (binding["HostIp"] or "0.0.0.0") in allowed, (binding, allowed)
    for mount in host["Mounts"]:
        assert mount["Type"] in ("bind", "volume")
        if mount["Type"] == "bind":
            source = mount["Source"]
            assert os.path.realpath(source) == source
            roots = policy.allowed_host_paths
            assert any(source == root or source.startswith(root.rstrip("/") + "/") for root in roots)
            assert source != "/" and not any(source == path or source.startswith(path + "/") for path in SYSTEM)
            assert not any(path.startswith(source.rstrip("/") + "/") for path in SYSTEM)


def test_whatever_is_accepted_satisfies_the_policy(root: str) -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def accepted_bodies_satisfy_the_policy(data: st.DataObject) -> None:
        body, policy = data.draw(create_bodies(root)), data.draw(policies(root))
        try:
            req = ContainerCreateSchema().load(body)
        except ValidationError:
            outcomes["invalid"] += 1
            return
        if check(req, policy):
            outcomes["denied"] += 1
            return
        outcomes["allowed"] += 1
        _assert_satisfies(engine_create_body(req, policy, mark="m", create_id="c"), policy)

    accepted_bodies_satisfy_the_policy()
    # Not vacuous: many bodies got through both the schema and the policy, and many did not.
    assert min(outcomes["allowed"], outcomes["denied"], outcomes["invalid"]) >= 20, outcomes


def image_with(**healthcheck: Any) -> dict[str, Any]:
    """An image inspect's part the policy reads: a HEALTHCHECK with the given engine fields (nanoseconds)."""
    return {"Config": {"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30 * 10**9, **healthcheck}}}


MS = 10**6
MINUTE = 60 * 10**9


@pytest.mark.parametrize(
    ("fields", "image", "named"),
    [
        ({}, image_with(StartInterval=10 * MS, StartPeriod=MINUTE), ["healthcheck.start_interval"]),
        # The request's start period makes the image's start interval count.
        ({"healthcheck": {"start_period": "1m"}}, image_with(StartInterval=10 * MS), ["healthcheck.start_interval"]),
        (
            {},
            image_with(Interval=5 * MS, StartInterval=10 * MS, StartPeriod=MINUTE),
            ["healthcheck.interval", "healthcheck.start_interval"],
        ),
        ({}, image_with(StartInterval=10 * MS), []),  # no start period: the start interval is never used
        ({}, image_with(StartInterval=2 * 10**9, StartPeriod=MINUTE), []),
        ({"healthcheck": {"test": ["NONE"]}}, image_with(StartInterval=10 * MS, StartPeriod=MINUTE), []),
    ],
)
def test_an_images_own_start_interval_is_judged_against_the_minimum(
    policy: PolicySettings, fields: dict[str, Any], image: dict[str, Any], named: list[str]
) -> None:
    """Docker 25+ probes every StartInterval during the start period, and takes it from the image: the request
    has no start_interval to pace it with. (This host's engine, 20.10, ignores it: judged without the engine.)"""
    violations = image_healthcheck_violations(request(**fields), image, policy)
    assert [violation["field"] for violation in violations] == named
    if "healthcheck.start_interval" in named:
        assert "start interval is too fast" in violations[-1]["message"] and "10ms" in violations[-1]["message"]
