"""The audit query (`GET /audit`) and its lines, as access/audit.py writes them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from moorage.access.audit import MAX_FIELD, stamp
from moorage.access.auditquery import AuditFilter
from moorage.schemas.common import PageQuery
from moorage.schemas.fields import Text, matches
from moorage.schemas.logs import TimeWindow

# An operationId (`start_container`), or `policy_stop`: what moorage's own kill of a container is.
ACTION = matches(r"[a-z]+(?:_[a-z]+)+", "an operationId of the API, such as start_container")
STATUS = matches(r"[1-5](?:[0-9]{2}|[xX]{2})", "an HTTP status such as 404, or a class such as 4xx")
_TEXT = validate.Length(1, MAX_FIELD)


class AuditQuery(PageQuery, TimeWindow):
    # Not `key`: a query parameter of that name is refused everywhere as a credential in the URL.
    key_name = Text(validate=_TEXT, metadata={"description": "the key's name (the line's `key`), exactly"})
    action = fields.List(
        fields.String(validate=ACTION),
        metadata={"description": "the operationId called (`start_container`), exactly; repeatable: any of them"},
    )
    target = Text(
        validate=_TEXT,
        metadata={"description": "the object the call named in its path, or the id or name its detail gives"},
    )
    status = fields.List(
        fields.String(validate=STATUS),
        metadata={
            "description": "an HTTP status (`404`) or a class (`4xx`); repeatable: any of them. A summary of folded "
            "refusals matches by any status it counted"
        },
    )


def audit_filter(query: dict[str, Any]) -> AuditFilter:
    """The loaded query as the reader matches lines."""
    statuses = tuple(_status_range(status) for status in query.get("status", ()))
    since, until = (stamp(float(query[end])) if end in query else None for end in ("since", "until"))
    return AuditFilter(
        key=query.get("key_name"),
        actions=frozenset(query.get("action", ())),
        target=query.get("target"),
        statuses=statuses,
        since=since,
        until=until,
    )


def _status_range(status: str) -> tuple[int, int]:
    if status[1:].isdigit():
        return int(status), int(status)
    low = int(status[0]) * 100
    return low, low + 99


def _counts(description: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": description})


class AuditLineSchema(Schema):
    """A line of the audit log: a call (who, from where, what, on which object, and the result), or the count of
    refusals folded into one line (`folded`, `first`, `last`, `results`, `methods`)."""

    time = fields.String(required=True, metadata={"format": "date-time", "description": "when it was written"})
    key = fields.String(required=True, allow_none=True, metadata={"description": "the key's name; null: no valid key"})
    role = fields.String(allow_none=True)
    token_id = fields.String(allow_none=True, metadata={"description": "the token's id (jti); null: a key was sent"})
    permission = fields.String(
        allow_none=True, metadata={"description": "the permission the route needs; null: none (a probe, a hook)"}
    )
    client = fields.String(allow_none=True, metadata={"description": "the client's address (a summary's: its group)"})
    method = fields.String()
    path = fields.String()
    target = fields.String(allow_none=True)
    action = fields.String(
        allow_none=True,
        metadata={"description": "the operationId called (null for a path no route has); `policy_stop`: moorage's "
                  "kill of a container whose bind no longer passes"},
    )  # fmt: skip
    result = fields.Integer(metadata={"description": "the HTTP status answered (499: the client left)"})
    request_id = fields.String(allow_none=True)
    detail = fields.Dict(metadata={"description": "what a change did, in the words of its route"})
    reason = fields.String()
    folded = fields.Integer(metadata={"description": "refusals counted in this line"})
    first = fields.String(metadata={"format": "date-time"})
    last = fields.String(metadata={"format": "date-time"})
    results = _counts("refusals by status")
    methods = _counts("refusals by method")
    clients = _counts("the busiest client groups of a summary of every client (`client: *`)")
