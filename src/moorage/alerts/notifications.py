"""What an alert tells the webhooks: one notification, made once and delivered to each webhook as it is, so that
a retry a day later still says what was true when the alert fired."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("firing", "resolved", "test")


@dataclass(frozen=True, kw_only=True)
class Notification:
    """`id` is the idempotency key a receiver may drop a repeat by; `started_at` (when its condition began to hold,
    which is when it fired unless the rule has a `for`) and `at` (when this was made) are Unix seconds. `details`
    holds JSON values only: it goes to the queue as JSON."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    alert: str
    status: str
    severity: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    started_at: float
    at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"a notification's status is one of {', '.join(STATUSES)}, not {self.status!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Notification:
        return cls(**json.loads(text))
