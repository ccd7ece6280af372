"""The command line: `moorage serve` runs the daemon, `moorage keygen` makes an API key."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .accesslog import AccessLogger
from .app import create_app
from .auth import hash_key, new_key
from .background import running
from .config import (
    EXIT_CONFIG,
    KEY_NAME,
    KEY_NAME_RULE,
    ApiKey,
    ConfigError,
    Role,
    Settings,
    fixed_at_start,
    key_toml,
    load_settings,
    resolve_config_path,
)
from .keys import LIVE, SETTINGS
from .keystore import generated_admin_key
from .logfilters import limit_per_request_lines
from .requestctx import current_request_id
from .systemd import notify, watchdog, watchdog_interval
from .timestamps import rfc3339

_LOGGER = logging.getLogger("moorage")
_LINGERING = 2.0  # seconds


# What could end a log line, or rewrite it on a terminal: every control character, and Unicode's line and
# paragraph separators, each written as an escape.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES |= {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}
# The prefix of a traceback's lines after the first: no line of a record begins where a record begins.
_CONTINUED = "  | "


def one_line(text: str) -> str:
    """`text` as part of one log line, whatever a client put in it: control characters (newlines above all)
    and text that is not valid Unicode escaped, so that it cannot end the line or begin a forged one."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES).encode("utf-8", "backslashreplace").decode("utf-8")


class TextFormatter(logging.Formatter):
    """`[stamp] LEVEL logger: message [req=ID]`: the message on one line, a traceback's lines indented under it."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if request_id := getattr(record, "request_id", None):
            line += f" [req={request_id}]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for details in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if details:
                line += "".join(f"\n{_CONTINUED}{one_line(part)}" for part in details.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for collectors that parse fields rather than read text. json.dumps escapes
    control characters and lone surrogates itself: a message cannot break its line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": rfc3339(record.created, milliseconds=True),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := getattr(record, "request_id", None):
            line["request_id"] = request_id
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line)


def with_request_id(record: logging.LogRecord) -> bool:
    """A handler's filter: a record logged while a request is handled names the request's id."""
    record.request_id = current_request_id()
    return True


def malformed_request(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it cannot parse (a header over the limits, say) at ERROR with a traceback whose
    message quotes 100 bytes of the offending header, which may be a key: one line naming the error instead."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}, answered {exc.code}", ()
        record.exc_info = record.exc_text = None
    return True


def setup_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(with_request_id)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # journald stamps each line itself; elsewhere the time is worth having.
        stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
        handler.setFormatter(TextFormatter(f"{stamp}%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("aiohttp.server").addFilter(malformed_request)
    limit_per_request_lines()  # after malformed_request, which makes aiohttp's traceback one line


def ensure_key(settings: Settings) -> Settings:
    """With no key configured, use (and on first start make and print) the generated admin key.

    Not under journald, where printing it would keep the key in the journal.
    """
    if settings.auth.api_keys:
        return settings
    if os.environ.get("JOURNAL_STREAM"):
        # Printed under systemd, the key would be kept in the journal: a secret in a log.
        raise ConfigError("no [[auth.api_keys]] configured: make one with `moorage keygen` and add it to the config")
    key, plain, path = generated_admin_key(settings.server.state_dir)
    if plain is None:
        _LOGGER.info("no key in the config: using the generated admin key whose hash is in %s", path)
    else:
        print(
            "No API key is configured, so an admin key was generated. It is shown only this once:\n\n"
            f"    {plain}\n\n"
            f"Only its SHA-256 is kept, in {path}. Send it as the X-API-Key header.",
            flush=True,
        )
    return settings.with_keys((key,))


def serve(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.config)
    settings = load_settings(path)
    setup_logging(settings.server.log_format)
    settings = ensure_key(settings)
    host = args.host if args.host is not None else settings.server.host
    port = args.port if args.port is not None else settings.server.port
    # uvloop: a fifth off each request's own cost here, the part moorage adds to the engine's time.
    uvloop.run(run(settings, host, port, path))
    return 0


async def run(settings: Settings, host: str, port: int, path: Path) -> None:
    """Listen, tell systemd, and serve until SIGTERM or SIGINT; then stop as run_app would."""
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("aiohttp.access") if settings.server.access_log else None,
        # In-flight requests get this long after SIGTERM; open streams are ended at once (on_shutdown).
        shutdown_timeout=settings.server.shutdown_timeout,
        # Also the time a client has to send a complete request head: aiohttp has no separate header
        # timeout, but closes a connection whose head is unfinished when this fires (tests/test_slow_clients.py).
        keepalive_timeout=settings.server.keepalive_timeout,
        max_line_size=settings.server.max_line_size,
        max_field_size=settings.server.max_field_size,
        max_headers=settings.server.max_headers,
        # After an answer that left a body unread (408, 413), aiohttp reads and drops the rest before closing,
        # so that the client sees the answer rather than a reset: 2 s of that, not its default 10.
        lingering_time=_LINGERING,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        _LOGGER.info("moorage listening on http://%s:%d (config %s, engine %s)", host, port, path, settings.docker.url)
        notify("READY=1")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload, app, path)
        interval = watchdog_interval()
        if interval is None:
            await stop.wait()
        else:
            async with running(watchdog(interval), "systemd watchdog"):
                await stop.wait()
        notify("STOPPING=1")
    finally:
        await runner.cleanup()


def reload(app: web.Application, path: Path) -> None:
    """SIGHUP: keys, policy, registries and per-request limits from the file again; a bad file changes nothing."""
    try:
        loaded = ensure_key(load_settings(path))
    except ConfigError as err:
        _LOGGER.error("reload refused, the running configuration stays: %s", err)
        return
    waiting = fixed_at_start(app[SETTINGS], loaded)  # against what started, not the last reload
    app[LIVE].current = loaded
    _LOGGER.info("configuration reloaded from %s", path)
    if waiting:
        _LOGGER.warning("changed, but read at start only (restart moorage to apply): %s", ", ".join(waiting))


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
