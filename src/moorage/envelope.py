"""The response envelope of the API reference: `{code, message, data}` and `{code, message, errors}`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def ok(data: Any, status: int = 200, message: str = "success") -> web.Response:
    return web.json_response({"code": status, "message": message, "data": data}, status=status, dumps=_dumps)


def error(
    status: int,
    message: str,
    errors: Sequence[Mapping[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"code": status, "message": message, "errors": list(errors)}
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)
