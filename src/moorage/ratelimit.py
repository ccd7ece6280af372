"""Failed-authentication limiting per client address: after too many failures in a window, a 429.

Only failures count, and only the address is limited, never a key: a lockout of keys (Portainer's)
shuts out the real admin. The window slides, so an address is let in again as its failures age.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque

# Addresses remembered at most; the oldest is forgotten first (a flood of addresses cannot grow memory).
_MAX_ADDRESSES = 65536


class FailedAuthLimiter:
    def __init__(self, limit: int, window: float, limit_loopback: bool) -> None:
        self._limit = limit
        self._window = window
        self._limit_loopback = limit_loopback
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str | None) -> float | None:
        """Seconds until `address` may try again, or None when it may now."""
        failures = self._recent(address)
        if failures is None or len(failures) < self._limit:
            return None
        return max(0.0, failures[0] + self._window - time.monotonic())

    def failed(self, address: str | None) -> None:
        if address is None or not self._applies(address):
            return
        failures = self._failures.setdefault(address, deque(maxlen=self._limit))
        failures.append(time.monotonic())
        self._failures.move_to_end(address)
        while len(self._failures) > _MAX_ADDRESSES:
            self._failures.popitem(last=False)

    def _recent(self, address: str | None) -> deque[float] | None:
        failures = self._failures.get(address) if address else None
        if failures is not None:
            cutoff = time.monotonic() - self._window
            while failures and failures[0] < cutoff:
                failures.popleft()
        return failures

    def _applies(self, address: str) -> bool:
        if self._limit_loopback:
            return True
        try:
            return not ipaddress.ip_address(address).is_loopback
        except ValueError:
            return True
