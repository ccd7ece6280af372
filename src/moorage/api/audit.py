"""The audit log, read back: its lines newest first, across its rotations."""

from __future__ import annotations

import asyncio

from aiohttp import web

from moorage.access.auditquery import read_page
from moorage.api.paths import API_PREFIX
from moorage.schemas.audit import AuditLineSchema, AuditQuery, audit_filter
from moorage.settings import Permission
from moorage.web.operations import documented, page
from moorage.web.requests import load_query
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.state import AUDIT

routes = web.RouteTableDef()
_LINE = AuditLineSchema()


@routes.get(f"{API_PREFIX}/audit")
@requires(Permission.AUDIT_READ)
@documented("List audit lines", tag="audit", query=AuditQuery, data=page(AuditLineSchema))
async def list_audit_lines(request: web.Request) -> web.Response:
    """The audit log's lines, newest first, from the file and its rotations ([audit] max_bytes, keep); `total`
    counts every line that matches. Reading it is not audited, as no read is."""
    query = load_query(request, AuditQuery)
    audit, match = request.config_dict[AUDIT], audit_filter(query)
    # In a thread: a query reads every kept file (60 MiB by default) to count its total.
    total, lines = await asyncio.to_thread(read_page, audit.snapshot, match, query["offset"], query["limit"])
    return ok({"total": total, "items": _LINE.dump(lines, many=True)})
