"""Validation at the edge: query strings and bodies go through a marshmallow schema or get a 400."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError, fields

from .errors import BadRequest

FieldError = dict[str, str]


def flatten_errors(messages: Any, path: str = "") -> list[FieldError]:
    """marshmallow's nested error dict as one `{field, message}` per bad field, `field` a dotted path."""
    if isinstance(messages, Mapping):
        out: list[FieldError] = []
        for key, sub in messages.items():
            sub_path = path if key == "_schema" else f"{path}.{key}" if path else str(key)
            out.extend(flatten_errors(sub, sub_path or "_schema"))
        return out
    return [{"field": path or "_schema", "message": _join(messages)}]


def _join(messages: Any) -> str:
    if isinstance(messages, list):
        return "; ".join(str(m) for m in messages)
    return str(messages)


def validation_failed(err: ValidationError, where: str) -> BadRequest:
    problems = flatten_errors(err.messages)
    names = ", ".join(p["field"] for p in problems)
    return BadRequest(f"invalid {where}: {names}", errors=problems)


def load_query(request: web.Request, schema: Schema) -> Any:
    """Load the query string; a parameter given twice is an error unless its field is a List."""
    data: dict[str, Any] = {}
    problems: dict[str, Any] = {}
    for name in request.query.keys():
        values = request.query.getall(name)
        if isinstance(schema.fields.get(name), fields.List):
            data[name] = values
        elif len(values) > 1:
            problems[name] = ["given more than once"]
        else:
            data[name] = values[0]
    try:
        loaded = schema.load(data)
    except ValidationError as err:
        problems = {**err.normalized_messages(), **problems}
    if problems:
        raise validation_failed(ValidationError(problems), "query parameters")
    return loaded


def load_path(request: web.Request, schema: Schema) -> Any:
    """Load the path's variables, so that no unchecked text is put into an engine URL."""
    try:
        return schema.load(dict(request.match_info))
    except ValidationError as err:
        raise validation_failed(err, "path") from None
