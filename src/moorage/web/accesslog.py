"""The access log: one line a request, with the client (as the audit names it) and the path (cut as in the
audit) but never the query string.

A query string can carry what must never be logged (a key sent where it does not belong, which
moorage refuses with a 400); aiohttp's default format logs the whole request line.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from moorage.access.audit import cut
from moorage.web.proxies import FORWARDED_CLIENT


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs', request.get(FORWARDED_CLIENT, request.remote), request.method,
            cut(request.path), response.status,
            response.body_length, time,
        )  # fmt: skip
