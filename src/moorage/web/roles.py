"""The role each route needs, declared beside its handler; the auth middleware and the document read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from moorage.settings import Role, Settings

_ROLE_ATTR = "__moorage_role__"
_PUBLIC = "public"
_PUBLIC_WHEN_ATTR = "__moorage_public_when__"

Handler = TypeVar("Handler", bound=Callable[..., Any])


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
