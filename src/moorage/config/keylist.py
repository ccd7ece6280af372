"""`moorage keys`: the configured keys with their role, permissions, expiry and last use, read from the config and
the state directory without starting the daemon or making anything (not even the generated admin key)."""

from __future__ import annotations

import json
from typing import Any

from moorage.access.lastuse import FILE as LAST_USED_FILE
from moorage.access.lastuse import last_used, read_last_used
from moorage.config.keystore import GENERATED_KEY_FILE, generated_admin_key
from moorage.settings import ApiKey, Settings
from moorage.timestamps import rfc3339

_COLUMNS = ("name", "role", "permissions", "selector", "names", "expires_at", "disabled", "last_used")


def listed_keys(settings: Settings) -> tuple[ApiKey, ...]:
    """The keys the daemon would take: the config's, or the generated admin key when it has none and one was made."""
    if settings.auth.api_keys:
        return settings.auth.api_keys
    if (settings.server.state_dir / GENERATED_KEY_FILE).exists():
        return (generated_admin_key(settings.server.state_dir)[0],)
    return ()


def key_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row a key, in the config's order: `permissions` its own list (null: its role's bundle), `expires_at`
    and `last_used` in RFC 3339 (null: never)."""
    records = read_last_used(settings.server.state_dir / LAST_USED_FILE)
    rows = []
    for key in listed_keys(settings):
        used = last_used(records, key)
        rows.append(
            {
                "name": key.name,
                "role": key.role.value if key.role is not None else None,
                "permissions": None if key.permissions is None else sorted(key.permissions),
                **key.scope.described(),
                "expires_at": None if key.expires_at is None else rfc3339(key.expires_at),
                "disabled": key.disabled,
                "last_used": None if used is None else rfc3339(used),
            }
        )
    return rows


def keys_text(rows: list[dict[str, Any]], as_json: bool) -> str:
    """JSON lines for scripts, else a table for people: "bundle" for a key with its role's permissions, "never" for
    a key that does not expire, or was not used since moorage kept count."""
    if as_json:
        return "".join(json.dumps(row) + "\n" for row in rows)
    cells = [list(_COLUMNS)] + [
        [
            row["name"],
            row["role"] or "-",
            "bundle" if row["permissions"] is None else ",".join(row["permissions"]) or "-",
            row["selector"] or "-",
            " & ".join(",".join(globs) for globs in row["names"]) or "-",
            row["expires_at"] or "never",
            "yes" if row["disabled"] else "no",
            row["last_used"] or "never",
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in cells
    )
