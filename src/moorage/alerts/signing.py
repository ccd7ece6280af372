"""How a receiver knows a request came from this moorage, unchanged and lately: an HMAC-SHA256 of the attempt's
timestamp and the body, under the webhook's secret. Each attempt is signed afresh, so a receiver may refuse any
timestamp older than a few minutes (a replayed request) and still take a retry that comes an hour late; the
delivery id stays the same across retries, for the receiver to drop a repeat (delivery is at least once)."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE = "X-Moorage-Signature"  # sha256=<hex>; absent when the webhook has no secret
TIMESTAMP = "X-Moorage-Timestamp"  # Unix seconds of this attempt
DELIVERY = "X-Moorage-Delivery"  # the delivery's id, the same in every retry
EVENT = "X-Moorage-Event"  # the notification's status: firing, resolved or test
TOLERANCE = 300  # seconds a receiver's clock and a signature's timestamp may differ by


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp_header: str | None,
    body: bytes,
    signature_header: str | None,
    now: float,
    tolerance: float = TOLERANCE,
) -> bool:
    """What a receiver checks: a signature of this body at a timestamp within `tolerance` seconds of `now`."""
    if not timestamp_header or not signature_header or not (timestamp_header.isascii() and timestamp_header.isdigit()):
        return False
    timestamp = int(timestamp_header)
    if abs(now - timestamp) > tolerance:
        return False
    # Compared as bytes: compare_digest refuses a str that is not ASCII, and the header is the sender's to choose.
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature_header.encode())


def signed_headers(secret: bytes | None, delivery_id: str, event: str, body: bytes, now: float) -> dict[str, str]:
    """The headers of one attempt: its timestamp, the delivery and the event, and the signature if there is a
    secret."""
    timestamp = int(now)
    headers = {TIMESTAMP: str(timestamp), DELIVERY: delivery_id, EVENT: event}
    if secret:
        headers[SIGNATURE] = sign(secret, timestamp, body)
    return headers
