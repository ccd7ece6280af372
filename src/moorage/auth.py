"""API keys: making them, hashing them, matching a presented key, and the role each route needs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .config import ApiKey, Role, Settings

KEY_PREFIX = "mrg_"  # lets secret scanners and people recognise a moorage key
_ROLE_ATTR = "__moorage_role__"
_PUBLIC = "public"
_PUBLIC_WHEN_ATTR = "__moorage_public_when__"

Handler = TypeVar("Handler", bound=Callable[..., Any])


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


def requires(role: Role, public_when: Callable[[Settings], bool] | None = None) -> Callable[[Handler], Handler]:
    """Declare, beside the handler, the least role that may call it (and when the config opens it to all)."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _ROLE_ATTR, role)
        if public_when is not None:
            setattr(handler, _PUBLIC_WHEN_ATTR, public_when)
        return handler

    return mark


def public(handler: Handler) -> Handler:
    """Declare a handler callable without credentials (health probes only)."""
    setattr(handler, _ROLE_ATTR, _PUBLIC)
    return handler


def declared_role(handler: Callable[..., Any]) -> Role | str | None:
    """The role a handler declared, "public", or None when it declared nothing (and so is refused)."""
    return getattr(handler, _ROLE_ATTR, None)


def is_public(handler: Callable[..., Any], settings: Settings) -> bool:
    public_when = getattr(handler, _PUBLIC_WHEN_ATTR, None)
    return declared_role(handler) == _PUBLIC or (public_when is not None and bool(public_when(settings)))
