"""API keys: making them, hashing them, and matching a presented key in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from moorage.settings import ApiKey

KEY_PREFIX = "mrg_"  # lets secret scanners and people recognise a moorage key


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # aiohttp decodes header bytes that are not UTF-8 as surrogates: hash them, do not fail on them.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def match_key(keys: Iterable[ApiKey], presented: str) -> ApiKey | None:
    """The configured key whose hash is the presented key's, compared in constant time.

    Every stored hash is compared, so the time taken does not tell which one came close.
    """
    digest = hash_key(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.sha256, digest):
            found = key
    return found
