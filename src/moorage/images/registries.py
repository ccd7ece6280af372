"""Private registries: `[[registries]]` credentials, sent to the engine for the matching host only.

The password never leaves the settings except in the X-Registry-Auth header built here for the engine.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiodocker.utils import compose_auth_header

from moorage.images.references import registry_host
from moorage.settings import Registry


def credentials_for(name: str, registries: Iterable[Registry]) -> Registry | None:
    """The configured credentials for the registry a repository name points at, if any."""
    host = registry_host(name)
    return next((registry for registry in registries if registry.host == host), None)


def pull_auth(name: str, registries: Iterable[Registry]) -> str | None:
    """The engine's X-Registry-Auth for a pull of repository `name`, or None when its registry has no
    credentials here."""
    found = credentials_for(name, registries)
    if found is None:
        return None
    return compose_auth_header({"username": found.username, "password": found.password}, found.host)
