"""The permission each route needs, declared beside its handler; the auth middleware and the document read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from moorage.settings import Permission, Settings

_REQUIRES_ATTR = "__moorage_requires__"
_PUBLIC: Final = "public"
# Any valid key or token, whatever it may do: what a caller may ask about itself (whoami), and the document.
AUTHENTICATED: Final = "authenticated"
_PUBLIC_WHEN_ATTR = "__moorage_public_when__"

Handler = TypeVar("Handler", bound=Callable[..., Any])


def requires(
    needed: Permission | str, public_when: Callable[[Settings], bool] | None = None
) -> Callable[[Handler], Handler]:
    """Declare, beside the handler, the permission a caller needs (or AUTHENTICATED: a valid credential only),
    and when the config opens it to all."""
    if not isinstance(needed, Permission) and needed != AUTHENTICATED:
        raise TypeError(f"requires a Permission or AUTHENTICATED, not {needed!r}")

    def mark(handler: Handler) -> Handler:
        setattr(handler, _REQUIRES_ATTR, needed)
        if public_when is not None:
            setattr(handler, _PUBLIC_WHEN_ATTR, public_when)
        return handler

    return mark


def public(handler: Handler) -> Handler:
    """Declare a handler callable without credentials (health probes, and hooks, which are signed instead)."""
    setattr(handler, _REQUIRES_ATTR, _PUBLIC)
    return handler


def declared_permission(handler: Callable[..., Any]) -> Permission | str | None:
    """The permission a handler declared, AUTHENTICATED, "public", or None when it declared nothing (and so is
    refused)."""
    return getattr(handler, _REQUIRES_ATTR, None)


def needs_credential(handler: Callable[..., Any]) -> bool:
    """Whether the handler declared a permission or AUTHENTICATED: a caller must present a valid key or token."""
    needed = declared_permission(handler)
    return isinstance(needed, Permission) or needed == AUTHENTICATED


def is_public(handler: Callable[..., Any], settings: Settings) -> bool:
    public_when = getattr(handler, _PUBLIC_WHEN_ATTR, None)
    return declared_permission(handler) == _PUBLIC or (public_when is not None and bool(public_when(settings)))
