"""The command line: `moorage serve` runs the daemon, `moorage keygen` makes an API key."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from moorage.access.keys import hash_key, new_key
from moorage.config.loader import EXIT_CONFIG, KEY_NAME, KEY_NAME_RULE, key_toml
from moorage.daemon import runner
from moorage.errors import ConfigError
from moorage.settings import ApiKey, Role


def serve(args: argparse.Namespace) -> int:
    runner.serve(args.config, args.host, args.port)
    return 0


def keygen(args: argparse.Namespace) -> int:
    plain = new_key()
    key = ApiKey(name=args.name, role=Role(args.role), sha256=hash_key(plain))
    print(f"# API key {key.name!r} (role {key.role.value}); shown only this once:\n{plain}\n")
    print(f"# Add this to the config (only the hash is stored):\n{key_toml(key)}", end="")
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
    make.add_argument("--role", required=True, choices=[r.value for r in Role])
    make.set_defaults(func=keygen)
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
