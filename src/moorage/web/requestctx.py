"""The request being handled, for code that is not handed it: log lines name its id, a stream marks itself.

Set by the outermost middleware; tasks a handler starts copy it, so their log lines name the request too.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Handling:
    request_id: str
    # A stream ends when its client leaves, even a POST one; any other call that changes something runs to its end.
    stream: bool = False


HANDLING: ContextVar[Handling | None] = ContextVar("moorage_handling", default=None)


def mark_stream() -> None:
    """Called by a stream's handler as it opens (EngineStreams.slot)."""
    if (handling := HANDLING.get()) is not None:
        handling.stream = True


def current_request_id() -> str | None:
    handling = HANDLING.get()
    return handling.request_id if handling else None
