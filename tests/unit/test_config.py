"""Settings: the file is checked key by key, defaults come from the right places, keys are only hashes."""

from __future__ import annotations

import json
import logging
import re
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from moorage.access.keys import hash_key, match_key, new_key
from moorage.config.keystore import generated_admin_key
from moorage.config.loader import key_toml, load_settings, resolve_config_path, settings_from_mapping
from moorage.daemon.logsetup import JsonFormatter
from moorage.errors import ConfigError
from moorage.settings import ApiKey, Role, ServerSettings, fixed_at_start

from ..helpers import ROOT, Daemon


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_shipped_config_loads_with_its_documented_defaults() -> None:
    settings = load_settings(ROOT / "config.toml")
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.docker.url == "unix:///var/run/docker.sock"
    assert settings.auth.api_keys == ()


def test_the_shipped_config_documents_the_servers_defaults() -> None:
    server = load_settings(ROOT / "config.toml").server
    assert server == replace(ServerSettings(), state_dir=server.state_dir)


def test_an_empty_file_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    settings = load_settings(write(tmp_path, ""))
    assert settings.server.state_dir == Path("/var/lib/moorage")
    assert settings.server.port == 8000


def test_state_dir_defaults_to_systemds_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/private/moorage:/var/lib/other")
    assert load_settings(write(tmp_path, "")).server.state_dir == Path("/var/lib/private/moorage")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[server]\nprot = 8000\n", "server.prot"),
        ("[sever]\nport = 8000\n", "sever"),
        ('[server]\nport = "8000"\n', "server.port"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[server]\nport = 80.5\n", "server.port"),
        ('[docker]\nurl = "/var/run/docker.sock"\n', "docker.url"),
        ("[docker]\ntimeout = 0\n", "docker.timeout"),
        ("[server]\nkeepalive_timeout = 0\n", "server.keepalive_timeout"),
        ('[server]\nbody_timeout = "30s"\n', "server.body_timeout"),
        ("[server]\nmax_field_size = 100\n", "server.max_field_size"),
        ("[server]\nmax_headers = 1.5\n", "server.max_headers"),
        ('[server]\nlog_format = "xml"\n', "server.log_format"),
        # A file of less than a few lines would rotate at every line.
        ("[audit]\nmax_bytes = 1000\n", "audit.max_bytes"),
        ("[audit]\nmax_bytes = -1\n", "audit.max_bytes"),
        ("[audit]\nkeep = 0\n", "audit.keep"),
        ("[logs]\nmerge_window_ms = -1\n", "logs.merge_window_ms"),
        ("[logs]\nmerge_window_ms = 0.5\n", "logs.merge_window_ms"),
        ("[metrics]\nhistory_tiers = [[60, 30]]\n", "metrics.history_tiers.0"),
        ("[metrics]\nhistory_tiers = [[1, 900], [1, 3600]]\n", "metrics.history_tiers.1"),
        ("[metrics]\nhistory_tiers = [[1, 9000000]]\n", "metrics.history_tiers.0"),
        ('[metrics]\nlabel_allowlist = [""]\n', "metrics.label_allowlist.0"),
        ('[[webhooks]]\nname = "ops"\nurl = "ftp://example.com/"\n', "webhooks.0.url"),
        ('[[webhooks]]\nname = "ops"\nurl = "http://example.com/"\nformat = "teams"\n', "webhooks.0.format"),
        (
            '[[webhooks]]\nname = "ops"\nurl = "http://example.com/"\nsecret_file = "/nonexistent"\n',
            "webhooks.0.secret_file",
        ),
        ('[[alerts]]\nname = "a"\nevent = "die"\nwebhooks = ["nope"]\n', "alerts.0.webhooks"),
        ('[[alerts]]\nname = "a"\nwebhooks = ["ops"]\n', "alerts.0.event"),
        ('[[alerts]]\nname = "a"\nevent = "die"\nmetric = "host_cpu"\nwebhooks = ["ops"]\n', "alerts.0.event"),
        ('[[alerts]]\nname = "a"\npattern = "(unclosed"\nwebhooks = ["ops"]\n', "alerts.0.pattern"),
        ('[[alerts]]\nname = "a"\nevent = "die"\nfor = "soon"\nwebhooks = ["ops"]\n', "alerts.0.for"),
        ('[[alerts]]\nname = "a"\nevent = "exit"\nwebhooks = ["ops"]\n', "alerts.0.event"),
        ('[[alerts]]\nname = "a"\nmetric = "load1"\nwebhooks = ["ops"]\n', "alerts.0.above"),
        (
            '[[webhooks]]\nname = "ops"\nurl = "http://example.com/"\nbackoff_initial = "10m"\n',
            "webhooks.0.backoff_initial",
        ),
        (
            '[[webhooks]]\nname = "ops"\nurl = "http://example.com/"\n'
            '[[alerts]]\nname = "a"\nmetric = "host_disk"\nabove = 90\npath = "/srv"\nwebhooks = ["ops"]\n',
            "alerts.0.path",
        ),
        # A secret label's value would be in every viewer's /metrics.
        (
            '[auth]\nsecret_labels = ["*.token"]\n[metrics]\nlabel_allowlist = ["app", "ci.token"]\n',
            "metrics.label_allowlist.1",
        ),
        # A reserve of every stream would leave a key that is not admin no stream at all.
        ("[server]\nmax_streams = 8\nadmin_reserved_streams = 16\n", "server.admin_reserved_streams"),
        ("[server]\nmax_streams = 4\nadmin_reserved_streams = 4\n", "server.admin_reserved_streams"),
        ('[[auth.api_keys]]\nname = "a"\nrole = "root"\nsha256 = "' + "0" * 64 + '"\n', "auth.api_keys.0.role"),
        ('[[auth.api_keys]]\nname = "a"\nrole = "admin"\nsha256 = "abc"\n', "auth.api_keys.0.sha256"),
        ('[[auth.api_keys]]\nname = "a"\nrole = "admin"\n', "auth.api_keys.0.sha256"),
        (
            '[[auth.api_keys]]\nname = "a"\nrole = "admin"\nkey = "x"\nsha256 = "' + "0" * 64 + '"\n',
            "auth.api_keys.0.key",
        ),
        (
            '[[auth.api_keys]]\nname = "a"\nrole = "admin"\nsha256 = "' + "0" * 64 + '"\n'
            '[[auth.api_keys]]\nname = "a"\nrole = "viewer"\nsha256 = "' + "1" * 64 + '"\n',
            "auth.api_keys",
        ),
    ],
)
def test_a_bad_key_or_type_is_named_with_the_file(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"{named}:" in message


@pytest.mark.parametrize(("streams", "reserved"), [(256, 16), (20, 10), (8, 4), (1, 0)])
def test_the_default_admin_reserve_leaves_the_other_keys_half_of_a_small_max_streams(
    tmp_path: Path, streams: int, reserved: int
) -> None:
    server = load_settings(write(tmp_path, f"[server]\nmax_streams = {streams}\n")).server
    assert server.admin_reserved_streams == reserved


def test_not_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.toml")


def test_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("/x/cli.toml", {"MOORAGE_CONFIG": "/x/env.toml"}) == Path("/x/cli.toml")
    assert resolve_config_path(None, {"MOORAGE_CONFIG": "/x/env.toml"}) == Path("/x/env.toml")
    expected = Path("/etc/moorage/config.toml") if Path("/etc/moorage/config.toml").exists() else Path("config.toml")
    assert resolve_config_path(None, {}) == expected


def test_keys_are_matched_by_hash_and_carry_their_role() -> None:
    admin, viewer = new_key(), new_key()
    settings = settings_from_mapping(
        {
            "auth": {
                "api_keys": [
                    {"name": "a", "role": "admin", "sha256": hash_key(admin).upper()},
                    {"name": "v", "role": "viewer", "sha256": hash_key(viewer)},
                ]
            }
        }
    )
    keys = settings.auth.api_keys
    assert match_key(keys, admin).role is Role.ADMIN  # type: ignore[union-attr]
    assert match_key(keys, viewer).name == "v"  # type: ignore[union-attr]
    assert match_key(keys, admin + "x") is None
    assert admin not in repr(settings) and hash_key(admin) not in repr(settings)


def test_new_keys_are_random_and_long() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("mrg_") and len(k) >= 40 for k in keys)


def test_the_generated_admin_key_is_made_once_and_only_its_hash_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key, plain, path = generated_admin_key(state)
    assert plain is not None and key.role is Role.ADMIN and key.sha256 == hash_key(plain)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert plain not in path.read_text()
    again, plain_again, _ = generated_admin_key(state)
    assert plain_again is None and again == key


def test_an_unwritable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="state_dir"):
        generated_admin_key(blocker / "state")


async def test_json_logs_are_one_object_a_line(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> None:
    key = ApiKey("json-admin", Role.ADMIN, hash_key(new_key()))
    server = f'[server]\nstate_dir = "{tmp_path}/state"\nlog_format = "json"\naccess_log = true\n'
    daemon = spawn_daemon(f"{server}\n{key_toml(key)}")
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.0 200")
    assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.output().splitlines()]
    # A record logged while a request is handled names the request (finding 10 of issue 13).
    assert all(set(record) - {"request_id"} == {"time", "level", "logger", "message"} for record in records)
    # Background samplers may warn first that no engine answers, as on a host without Docker.
    [listening] = [r for r in records if "moorage listening" in r["message"]]
    assert {"level": "INFO", "logger": "moorage"}.items() <= listening.items()
    assert "request_id" not in listening
    [access] = [r for r in records if r["logger"] == "aiohttp.access" and '"GET /healthz" 200' in r["message"]]
    assert re.fullmatch("[0-9a-f]{32}", access["request_id"])


async def test_requests_are_not_logged_unless_asked(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> None:
    daemon = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\n')
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.0 200")
    assert daemon.stop() == 0
    assert "moorage listening" in daemon.output()
    assert "/healthz" not in daemon.output()


def test_a_json_log_record_carries_its_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("moorage", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "moorage", "failed: x")
    assert line["exc_info"].startswith("Traceback") and line["exc_info"].endswith("ValueError: boom")


def test_a_reload_names_what_it_cannot_apply() -> None:
    running = settings_from_mapping({"server": {"port": 8000}})
    changed = settings_from_mapping(
        {
            "server": {"port": 9000, "body_timeout": 5, "keepalive_timeout": 3},
            "docker": {"url": "unix:///run/other.sock"},
            "logs": {"max_lines": 10},
            "metrics": {"public_prometheus": True, "interval": 2},
            "policy": {"allow_privileged": True},
            "auth": {"token_ttl": 60, "failed_limit": 3},
        }
    )
    assert fixed_at_start(running, changed) == [
        "server.port",
        "server.keepalive_timeout",
        "docker.url",
        "auth.failed_limit",
        "metrics.interval",
    ]
    assert fixed_at_start(running, running) == []
