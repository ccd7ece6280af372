"""A bound on the rate of log lines that clients can cause one a request.

aiohttp logs every request it cannot parse ("Error handling request", made one WARNING line by
`__main__.malformed_request`), and moorage warns of every call that failed on the engine's side: a client
sending those as fast as it can would fill the journal. A token bucket per logger lets `RATE` lines a
second through (`BURST` at once), drops the rest, and says how many it dropped in one line before the next
one it lets through.
"""

from __future__ import annotations

import logging
import threading
import time

RATE = 10.0  # lines a second, per logger
BURST = 20.0
# Loggers that write a line for a request a client can send at will.
PER_REQUEST_LOGGERS = ("aiohttp.server", "moorage.web.middlewares")


class RateLimit(logging.Filter):
    """A token bucket over the records of the logger it is added to."""

    def __init__(self, rate: float = RATE, burst: float = BURST) -> None:
        super().__init__()
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()
        self._suppressed = 0
        self._lock = threading.Lock()  # logging may be called from any thread

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "suppressed_note", False):
            return True
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1:
                self._suppressed += 1
                return False
            self._tokens -= 1
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            note = logging.LogRecord(
                record.name,
                logging.WARNING,
                __file__,
                0,
                "%d log lines suppressed (more than %g a second)",
                (suppressed, self._rate),
                None,
            )
            note.suppressed_note = True
            logging.getLogger(record.name).handle(note)
        return True


def limit_per_request_lines() -> None:
    """Install a bucket on each logger that clients can make write at will."""
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).addFilter(RateLimit())
