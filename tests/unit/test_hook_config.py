"""`[[hooks]]` in the config: each hook's secret read from its file and hidden, and a bad entry named at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moorage.config.loader import settings_from_mapping
from moorage.errors import ConfigError


def hook(tmp_path: Path, secret: str = "a-secret-of-32-characters-long!!\n", **fields: Any) -> dict[str, Any]:
    path = tmp_path / "hook.secret"
    path.write_text(secret)
    return {"name": "deploy-web", "container": "web", "secret_file": str(path), **fields}


def test_a_hook_reads_its_secret_and_hides_it(tmp_path: Path) -> None:
    [loaded] = settings_from_mapping({"hooks": [hook(tmp_path)]}).hooks
    assert loaded.secret == b"a-secret-of-32-characters-long!!"  # the file's newline is not part of it
    assert (loaded.container, loaded.pull, loaded.wait, loaded.timeout) == ("web", "always", "running", 60)
    assert "a-secret" not in repr(loaded)


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"secret": "short\n"}, "hooks.0.secret_file"),
        ({"secret_file": "/nonexistent/hook.secret"}, "hooks.0.secret_file"),
        ({"name": "bad name"}, "hooks.0.name"),
        ({"container": "/web"}, "hooks.0.container"),
        ({"pull": "sometimes"}, "hooks.0.pull"),
        ({"wait": "ready"}, "hooks.0.wait"),
        ({"timeout": 0}, "hooks.0.timeout"),
        ({"branch": "main"}, "hooks.0.branch"),
    ],
)
def test_a_bad_hook_stops_start_up_naming_its_field(tmp_path: Path, entry: dict[str, Any], field: str) -> None:
    secret = entry.pop("secret", "a-secret-of-32-characters-long!!")
    with pytest.raises(ConfigError, match=rf"{field}\b"):
        settings_from_mapping({"hooks": [hook(tmp_path, secret, **entry)]})


def test_two_hooks_of_one_name_stop_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hooks\b.*two hooks have one name"):
        settings_from_mapping({"hooks": [hook(tmp_path), hook(tmp_path, container="api")]})
