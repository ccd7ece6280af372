"""The request being handled, for code that is not handed it: log lines name its id.

Set by the outermost middleware; tasks a handler starts copy it, so their log lines name the request too.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Handling:
    request_id: str


HANDLING: ContextVar[Handling | None] = ContextVar("moorage_handling", default=None)


def current_request_id() -> str | None:
    handling = HANDLING.get()
    return handling.request_id if handling else None
