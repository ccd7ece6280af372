"""Keys' last use: kept across a restart in the state directory, written at shutdown at the latest, and listed
by `moorage keys` (as a table and as JSON lines) without starting anything."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from moorage.access.keys import hash_key, new_key
from moorage.access.lastuse import FILE, KeyUse, read_last_used
from moorage.config.loader import key_toml
from moorage.settings import ApiKey, Role

from ..helpers import Daemon


def keys_command(config: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "moorage", "keys", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def get(daemon: Daemon, path: str, plain: str) -> int:
    request = urllib.request.Request(daemon.url + path, headers={"X-API-Key": plain})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_a_used_key_shows_when_after_a_restart_and_an_unused_one_never(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon]
) -> None:
    used_plain = new_key()
    used = ApiKey("deploy-bot", Role.OPERATOR, hash_key(used_plain))
    idle = ApiKey("old-script", Role.VIEWER, hash_key(new_key()))
    narrow = ApiKey("restarter", None, hash_key(new_key()))
    narrow_toml = (
        f'[[auth.api_keys]]\nname = "{narrow.name}"\nsha256 = "{narrow.sha256}"\n'
        'permissions = ["containers:read", "containers:lifecycle"]\nexpires_at = 2099-01-31T00:00:00Z\n'
        'selector = "app = web, tier notin (db)"\nnames = ["web-*", "api"]\n'
    )
    config = f'[server]\nstate_dir = "{tmp_path}/state"\n\n{key_toml(used)}\n{key_toml(idle)}\n{narrow_toml}'
    before = int(time.time())
    daemon = spawn_daemon(config)
    # Refused for its permission, the key is still valid, and in use: it counts.
    assert get(daemon, "/api/v1/audit", used_plain) == 403
    assert get(daemon, "/api/v1/audit", "mrg_not-a-key") == 401
    assert daemon.stop() == 0

    listed = [json.loads(line) for line in keys_command(tmp_path / "moorage-0.toml", "--json").splitlines()]
    assert [(row["name"], row["role"], row["permissions"], row["disabled"]) for row in listed] == [
        ("deploy-bot", "operator", None, False),
        ("old-script", "viewer", None, False),
        ("restarter", None, ["containers:lifecycle", "containers:read"], False),
    ]
    assert [row["expires_at"] for row in listed] == [None, None, "2099-01-31T00:00:00Z"]
    assert [(row["selector"], row["names"]) for row in listed] == [
        (None, []), (None, []), ("app=web,tier notin (db)", [["api", "web-*"]])
    ]  # fmt: skip
    assert listed[1]["last_used"] is None and listed[2]["last_used"] is None
    assert before <= datetime.fromisoformat(listed[0]["last_used"]).timestamp() <= time.time()

    table = keys_command(tmp_path / "moorage-0.toml").splitlines()
    assert table[0].split() == [
        "name", "role", "permissions", "selector", "names", "expires_at", "disabled", "last_used"
    ]  # fmt: skip
    assert table[1].split()[:7] == ["deploy-bot", "operator", "bundle", "-", "-", "never", "no"]
    assert table[2].split() == ["old-script", "viewer", "bundle", "-", "-", "never", "no", "never"]
    assert table[3].split() == [
        "restarter", "-", "containers:lifecycle,containers:read", "app=web,tier", "notin", "(db)", "api,web-*",
        "2099-01-31T00:00:00Z", "no", "never",
    ]  # fmt: skip
    assert (tmp_path / "state" / FILE).stat().st_mode & 0o777 == 0o600


def test_a_key_replaced_under_its_name_starts_unused(tmp_path: Path) -> None:
    old = ApiKey("ci", Role.ADMIN, hash_key(new_key()))
    new = ApiKey("ci", Role.ADMIN, hash_key(new_key()))
    uses = KeyUse(tmp_path / FILE)
    uses.touch(old)
    uses.write()
    again = KeyUse(tmp_path / FILE)
    assert again.last_used(old) is not None
    assert again.last_used(new) is None


def test_an_unreadable_file_costs_the_history_not_the_start(tmp_path: Path) -> None:
    path = tmp_path / FILE
    for garbage in ("{not json", "[1, 2]", '{"ci": {"kid": 1, "at": "x"}}'):
        path.write_text(garbage)
        assert read_last_used(path) == {}
    uses = KeyUse(path)
    key = ApiKey("ci", Role.ADMIN, hash_key(new_key()))
    uses.touch(key)
    uses.write()
    assert KeyUse(path).last_used(key) is not None


def test_nothing_is_written_when_no_key_was_used(tmp_path: Path) -> None:
    KeyUse(tmp_path / FILE).write()
    assert not (tmp_path / FILE).exists()
