"""Failed-authentication limiting per client address: after too many failures in a window, a 429.

Only failures are throttled: a valid credential is never refused, whatever its address did before, so a
local process (every local client is loopback, and so is every client of a proxy not in trusted_proxies)
cannot lock the admins out by sending bad keys. Only the address is limited, never a key: a lockout of keys
(Portainer's) shuts out the real admin. The window slides, so an address is let in again as its failures age.

Addresses that one caller can rotate through share one budget: all of loopback (127.0.0.0/8, ::1 and their
IPv4-mapped forms) is one address, and an IPv6 client is its /64, the smallest network a host is given.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from moorage.access.clientaddr import client_group

# Addresses remembered at most; the oldest is forgotten first (a flood of addresses cannot grow memory).
_MAX_ADDRESSES = 65536


class FailedAuthLimiter:
    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def failed(self, address: str | None) -> float | None:
        """Count a failed authentication from `address`. When it was already over its limit, the seconds until
        it may fail again without a 429; else None (the failure is a plain 401).

        A failure answered 429 counts too: an address that keeps guessing stays refused until it pauses."""
        now = time.monotonic()
        name = client_group(address)
        failures = self._failures.setdefault(name, deque(maxlen=self._limit))
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        over = len(failures) >= self._limit
        failures.append(now)
        self._failures.move_to_end(name)
        while len(self._failures) > _MAX_ADDRESSES:
            self._failures.popitem(last=False)
        return max(0.0, failures[0] + self._window - now) if over else None
