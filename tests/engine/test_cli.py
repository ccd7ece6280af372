"""The command line as an operator uses it: exit codes, keygen's output, serve's first start."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from moorage.access.keys import hash_key
from moorage.config.loader import settings_from_mapping

from ..helpers import Daemon, free_port, get_json


def moorage(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moorage", *args], capture_output=True, text=True, timeout=30, **kwargs
    )  # type: ignore[call-overload]


def test_keygen_prints_the_key_once_and_a_block_that_loads() -> None:
    done = moorage("keygen", "--name", "ci-bot", "--role", "operator")
    assert done.returncode == 0
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    plain = lines[0]
    assert plain.startswith("mrg_")
    block = tomllib.loads("\n".join(lines[1:]))
    [key] = settings_from_mapping(block).auth.api_keys
    assert (key.name, key.role.value, key.sha256) == ("ci-bot", "operator", hash_key(plain))
    assert done.stdout.count(plain) == 1


def test_keygen_makes_a_narrow_key_that_expires() -> None:
    done = moorage(
        "keygen", "--name", "restarter", "--permission", "containers:read", "--permission",
        "containers:lifecycle", "--expires-at", "2027-01-31T00:00:00Z",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    [key] = settings_from_mapping(tomllib.loads("\n".join(lines[1:]))).auth.api_keys
    assert key.role is None and sorted(key.permissions or ()) == ["containers:lifecycle", "containers:read"]
    assert key.expires_at is not None and key.expires_at.isoformat() == "2027-01-31T00:00:00+00:00"
    assert key.sha256 == hash_key(lines[0])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--role", "viewer", "--permission", "containers:exec"], "more than role viewer holds"),
        (["--permission", "containers:exex"], "'containers:exex' is not a permission"),
        ([], "give a role, permissions or both"),
        (["--role", "admin", "--expires-at", "tomorrow"], "expires_at"),
    ],
)
def test_keygen_refuses_what_the_config_would(args: list[str], says: str) -> None:
    done = moorage("keygen", "--name", "ci", *args)
    assert done.returncode == 2 and says in done.stderr and "mrg_" not in done.stdout


def test_keygen_refuses_a_bad_name_or_role() -> None:
    assert moorage("keygen", "--name", "bad name", "--role", "admin").returncode == 2
    assert moorage("keygen", "--name", "ok", "--role", "root").returncode == 2


def test_serve_with_a_bad_config_exits_2_naming_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nport = 8000\nlisten = true\n")
    done = moorage("serve", "--config", str(config))
    assert done.returncode == 2
    assert str(config) in done.stderr and "server.listen" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_with_a_reserve_of_every_stream_exits_2_naming_the_reserve(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text("[server]\nmax_streams = 8\nadmin_reserved_streams = 8\n")
    done = moorage("serve", "--config", str(config))
    assert done.returncode == 2 and "server.admin_reserved_streams" in done.stderr, done.stderr


def test_serve_with_a_state_dir_whose_mark_is_not_one_exits_2_naming_it(tmp_path: Path) -> None:
    """An empty mark would match any image's `moorage.policy=`: moorage does not start on one."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "policy-mark").write_text("")
    config = tmp_path / "mark.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\nport = {free_port()}\n')
    done = moorage("serve", "--config", str(config))
    assert done.returncode == 2 and f"{state}/policy-mark" in done.stderr, done.stderr


def test_serve_finds_its_config_through_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "env.toml"
    config.write_text("[docker]\nurl = 7\n")
    done = moorage("serve", env={"MOORAGE_CONFIG": str(config), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "docker.url" in done.stderr


async def test_first_start_prints_a_working_key_once(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> None:
    state = tmp_path / "state"
    first = spawn_daemon(f'[server]\nstate_dir = "{state}"\n')
    output = first.output()
    [plain] = [word for word in output.split() if word.startswith("mrg_")]
    async with aiohttp.ClientSession() as session:
        status, body = await get_json(session, f"{first.url}/api/v1/containers?limit=1", headers={"X-API-Key": plain})
        assert status == 200 and body["code"] == 200
    assert first.stop() == 0
    second = spawn_daemon(f'[server]\nstate_dir = "{state}"\n')
    assert "mrg_" not in second.output()
    async with aiohttp.ClientSession() as session:
        status, _ = await get_json(session, f"{second.url}/api/v1/containers?limit=1", headers={"X-API-Key": plain})
        assert status == 200
    assert plain not in second.output()
