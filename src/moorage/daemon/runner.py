"""The daemon's life: listen, tell systemd, reload on SIGHUP, and stop on SIGTERM as run_app would."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import uvloop
from aiohttp import web

from moorage.app import create_app
from moorage.background import running
from moorage.config.keystore import generated_admin_key
from moorage.config.loader import load_settings, resolve_config_path
from moorage.daemon.logsetup import setup_logging
from moorage.daemon.systemd import notify, watchdog, watchdog_interval
from moorage.errors import ConfigError
from moorage.settings import Settings, fixed_at_start
from moorage.web.accesslog import AccessLogger
from moorage.web.state import LIVE, SETTINGS

_LOGGER = logging.getLogger("moorage")
_LINGERING = 2.0  # seconds


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


def serve(config: str | None, host: str | None, port: int | None) -> None:
    """`moorage serve`: the file's settings, with the command line's address and port if it gives them."""
    path = resolve_config_path(config)
    settings = load_settings(path)
    setup_logging(settings.server.log_format)
    settings = ensure_key(settings)
    # uvloop: a fifth off each request's own cost here, the part moorage adds to the engine's time.
    host = settings.server.host if host is None else host
    port = settings.server.port if port is None else port
    uvloop.run(run(settings, host, port, path))


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
