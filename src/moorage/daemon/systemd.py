"""The systemd notify protocol: READY=1 once listening, WATCHDOG=1 from the event loop, STOPPING=1.

Datagrams to $NOTIFY_SOCKET (a path, or an abstract name starting with "@"); without it, nothing is
sent. The watchdog ping runs on the event loop at half of $WATCHDOG_USEC, so a loop that blocks
misses pings and systemd restarts the daemon, which is the point of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

_LOGGER = logging.getLogger(__name__)


def notify(state: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as err:
        _LOGGER.warning("systemd notify %s failed: %s", state, err)


def watchdog_interval() -> float | None:
    """Half of the watchdog period systemd asked for, if it asked this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def watchdog(interval: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
