"""What a caller may read of a container's secrets: its environment values and the values of the labels
`[auth] secret_labels` names are shown only to a key (or token) with containers:secrets (in an admin's bundle);
every other caller, a deploy hook's included, gets them null, with `redacted` saying so."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from moorage.schemas.containers import engine_body_without_secrets, without_secrets
from moorage.settings import Permission
from moorage.web.state import PRINCIPAL, live

Shown = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def sees_secrets(request: web.Request) -> bool:
    principal = request.get(PRINCIPAL)
    return principal is not None and Permission.CONTAINERS_SECRETS in principal.granted


def for_caller(request: web.Request) -> Shown:
    """How this caller is shown a container's summary or detail: whole, or without its secrets."""
    if sees_secrets(request):
        return lambda item: item
    secret_labels = live(request).auth.secret_labels
    return lambda item: without_secrets(item, secret_labels)


def shown(request: web.Request, item: Mapping[str, Any]) -> Mapping[str, Any]:
    return for_caller(request)(item)


def shown_dry_run(request: web.Request, answered: Mapping[str, Any]) -> Mapping[str, Any]:
    """A recreate's dry run, whose engine request carries the old container's environment and labels: without
    their secrets for this caller, `engine_request.redacted` saying what was withheld."""
    engine_request = answered.get("engine_request")
    if engine_request is None:
        return answered
    if sees_secrets(request):
        return {**answered, "engine_request": {**engine_request, "redacted": []}}
    body, hidden = engine_body_without_secrets(engine_request["body"], live(request).auth.secret_labels)
    return {**answered, "engine_request": {**engine_request, "body": body, "redacted": hidden}}
