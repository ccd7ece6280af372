"""The audit log: one JSON line for every call that changes something and every denied call.

Written to `[audit] path` (default state_dir/audit.log, mode 0600) and to the `moorage.audit` logger,
which journald keeps. It names the key, never the key itself, and no token, password or environment
value: only who, from where, what, on which object, and the result. A mutating call is refused (503)
when the file cannot be written, rather than carried out unaudited.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

_LOGGER = logging.getLogger("moorage.audit")
DENIED = frozenset({401, 403, 429})
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", buffering=1)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    @property
    def writable(self) -> bool:
        return self._file is not None and not self._file.closed

    def write(self, **entry: Any) -> bool:
        """Append one line; False when it could not be written (the caller has already acted or refused)."""
        line = json.dumps(
            {"time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"), **entry}
        )
        _LOGGER.info(line)
        try:
            assert self._file is not None
            self._file.write(line + "\n")
        except (OSError, AssertionError, ValueError):
            _LOGGER.exception("audit line not written: %s", line)
            return False
        return True


def audited(method: str, status: int) -> bool:
    return method not in READS or status in DENIED
