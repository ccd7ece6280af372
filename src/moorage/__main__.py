"""The command line: `moorage serve` runs the daemon, `moorage keygen` makes an API key, `moorage keys` lists
them with their last use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from moorage.access.keys import hash_key, new_key
from moorage.config.keylist import key_rows, keys_text
from moorage.config.loader import (
    EXIT_CONFIG,
    KEY_NAME,
    KEY_NAME_RULE,
    key_toml,
    load_settings,
    resolve_config_path,
    settings_from_mapping,
)
from moorage.daemon import runner
from moorage.errors import ConfigError
from moorage.settings import Role


def serve(args: argparse.Namespace) -> int:
    runner.serve(args.config, args.host, args.port)
    return 0


def keygen(args: argparse.Namespace) -> int:
    """The key's entry is loaded as the config will load it, so that the printed block always loads: a bad
    permission, one beyond the role, or a bad expiry is the config's own error, exit status 2."""
    plain = new_key()
    entry: dict[str, Any] = {"name": args.name, "sha256": hash_key(plain)}
    entry |= {"role": args.role} if args.role else {}
    entry |= {"permissions": args.permission} if args.permission else {}
    entry |= {"expires_at": args.expires_at} if args.expires_at else {}
    [key] = settings_from_mapping({"auth": {"api_keys": [entry]}}, "the command line").auth.api_keys
    grants = f"role {key.role.value}" if key.role is not None else "no role"
    if key.permissions is not None:
        grants += ", permissions " + ", ".join(sorted(key.permissions))
    print(f"# API key {key.name!r} ({grants}); shown only this once:\n{plain}\n")
    print(f"# Add this to the config (only the hash is stored):\n{key_toml(key)}", end="")
    return 0


def keys(args: argparse.Namespace) -> int:
    print(keys_text(key_rows(load_settings(resolve_config_path(args.config))), args.json), end="")
    return 0


def key_name(value: str) -> str:
    """argparse type: the name as the config will check it, so that the printed block always loads."""
    if not KEY_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r}: {KEY_NAME_RULE}")
    return value


def tcp_port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: must be 1..65535")
    return port


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="moorage", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the daemon")
    run.add_argument("--config", help="config file (default: $MOORAGE_CONFIG, /etc/moorage/config.toml, ./config.toml)")
    run.add_argument("--host", help="address to listen on (overrides [server] host)")
    run.add_argument("--port", type=tcp_port, help="port to listen on (overrides [server] port)")
    run.set_defaults(func=serve)
    make = commands.add_parser("keygen", help="make a new API key and print it with its config block")
    make.add_argument("--name", required=True, type=key_name, help="a name for the key (shown in logs, never the key)")
    make.add_argument("--role", choices=[r.value for r in Role], help="its bundle of permissions")
    make.add_argument(
        "--permission", action="append", help="resource:verb; repeatable: only these (within --role, if given)"
    )
    make.add_argument("--expires-at", help="RFC 3339 with its offset, e.g. 2027-01-31T00:00:00Z")
    make.set_defaults(func=keygen)
    listing = commands.add_parser("keys", help="list the configured keys with their role and last use")
    listing.add_argument("--config", help="config file, found as for serve")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(func=keys)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(f"moorage: configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
