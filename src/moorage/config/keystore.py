"""The admin key generated when none is configured, so that the daemon never runs without authentication.

Like Jupyter's token: made once, printed once, and only its hash kept, in the state directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from moorage.access.keys import hash_key, new_key
from moorage.config.loader import key_toml, read_toml, settings_from_mapping
from moorage.errors import ConfigError
from moorage.settings import ApiKey, Role

GENERATED_KEY_FILE = "generated-key.toml"
_HEADER = "# Written by `moorage serve` because the config has no [[auth.api_keys]]; only the hash is kept.\n"


def generated_admin_key(state_dir: Path) -> tuple[ApiKey, str | None, Path]:
    """The generated admin key: (key, the plain key if it was made just now else None, file)."""
    path = state_dir / GENERATED_KEY_FILE
    if path.exists():
        keys = settings_from_mapping(read_toml(path), str(path)).auth.api_keys
        if len(keys) != 1:
            raise ConfigError(f"{path}: must hold exactly one [[auth.api_keys]] entry")
        return keys[0], None, path
    plain = new_key()
    key = ApiKey(name="admin", role=Role.ADMIN, sha256=hash_key(plain))
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror} (set [server] state_dir or configure a key)") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(_HEADER + key_toml(key))
    return key, plain, path
