"""Plain helpers that several test modules use (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

PUBLIC_PATHS = {"/healthz", "/readyz"}


def concrete_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, a path that matches the route, handler) for every route, variables filled in."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or re.sub(r"\{([^}:]+)(:[^}]*)?\}", "x1", info.get("formatter", ""))
        out.append((route.method, path, route.handler))
    return out


def assert_error(body: dict[str, Any], code: int) -> None:
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], list)
    assert "data" not in body


async def until(check: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)
