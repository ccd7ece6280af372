"""Validation at the edge: query strings and bodies go through a marshmallow schema or get a 400."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import IO, Any

from aiohttp import web
from marshmallow import Schema, ValidationError, fields

from moorage.errors import (
    BadRequest,
    ClientGone,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    flatten_errors,
)
from moorage.web.responses import JSON
from moorage.web.state import live


def validation_failed(err: ValidationError, where: str) -> BadRequest:
    problems = flatten_errors(err.messages)
    names = ", ".join(p["field"] for p in problems)
    return BadRequest(f"invalid {where}: {names}", errors=problems)


@functools.cache
def _instance(schema: type[Schema]) -> Schema:
    """One instance per schema class: making one deep-copies its fields, a tenth of a millisecond a request."""
    return schema()


def load_query(request: web.Request, schema_class: type[Schema], defaults: Mapping[str, str] | None = None) -> Any:
    """Load the query string; a parameter given twice is an error unless its field is a List. `defaults` stand
    for parameters the query does not give, from what the request says otherwise (an Accept header)."""
    schema = _instance(schema_class)
    data: dict[str, Any] = dict(defaults or {})
    problems: dict[str, Any] = {}
    for name in dict.fromkeys(request.query):
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


def load_path(request: web.Request, schema_class: type[Schema]) -> Any:
    """Load the path's variables, so that no unchecked text is put into an engine URL."""
    try:
        return _instance(schema_class).load(dict(request.match_info))
    except ValidationError as err:
        raise validation_failed(err, "path") from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Go's decoder lets the last duplicate win and matches keys case-insensitively (moby#41868):
    # a body whose keys repeat could mean one thing to a checker and another to the engine.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: web.Request) -> bytes:
    """The whole body within [server] body_timeout, else 408: aiohttp bounds a body's size (413) but not its
    pace, and a client sending a byte a second would hold its handler for as long as it liked."""
    async with arriving(request):
        return await request.read()


async def copy_body(request: web.Request, into: IO[bytes], limit: int, setting: str) -> None:
    """The body written to `into` as it comes (a body larger than client_max_size, which `read` would refuse),
    within `limit` bytes (413 naming `setting`, from the Content-Length before a byte is read when there is one)
    and [server] body_timeout (408)."""
    too_large = PayloadTooLarge(
        f"the body is larger than {setting} ({limit} bytes)",
        errors=[{"field": "body", "message": f"more than {limit} bytes"}],
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    total = 0
    async with arriving(request):
        async for chunk in request.content.iter_any():
            total += len(chunk)
            if total > limit:
                raise too_large
            into.write(chunk)


@contextlib.asynccontextmanager
async def arriving(request: web.Request) -> AsyncIterator[None]:
    """The reading of a body: 408 past [server] body_timeout, 499 for a client that left."""
    seconds = live(request).server.body_timeout
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {seconds:g} s",
            errors=[{"field": "body", "message": "not received in time"}],
        ) from None
    except ConnectionError:
        # A call that changes something is not cancelled when its client leaves (mutations.run_to_end): one
        # that left before its body arrived ends here, with nothing done.
        raise ClientGone("the client left before its request body arrived") from None


# The escape of a UTF-16 surrogate: paired, it is one character; alone, it is text no answer or log can encode.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def not_unicode(data: Any) -> str | None:
    """The dotted path of the first key or string in `data` that is not valid Unicode (a lone surrogate)."""
    pending: list[tuple[str, Any]] = [("", data)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str) and not _encodes(item):
            return path or "body"
        if isinstance(item, dict):
            for key, value in item.items():
                sub = f"{path}.{key}" if path else key
                if not _encodes(key):
                    return sub
                pending.append((sub, value))
        elif isinstance(item, list):
            pending.extend((f"{path}.{index}", value) for index, value in enumerate(item))
    return None


async def load_json(request: web.Request, schema_class: type[Schema], *, optional: bool = False) -> Any:
    """Load a JSON object body: 415 for another type, 413 past client_max_size, 408 past body_timeout, 400 for
    anything malformed. An `optional` body may be left out: then it is `{}`, every field its default."""
    if optional and not request.body_exists:
        return _load(schema_class, {})
    if request.content_type != JSON:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {request.content_type}",
            errors=[{"field": "Content-Type", "message": "must be application/json"}],
        )
    raw = await read_body(request)
    try:
        data = json.loads(raw, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
    except _DuplicateKey as err:
        raise BadRequest(
            f"duplicate key in JSON body: {err.key}", errors=[{"field": err.key, "message": "given more than once"}]
        ) from None
    except (ValueError, RecursionError) as err:
        raise BadRequest(
            f"malformed JSON body: {err}", errors=[{"field": "body", "message": "not valid JSON"}]
        ) from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", errors=[{"field": "body", "message": "not an object"}])
    # Refused rather than passed on: the engine's decoder would read a lone surrogate as U+FFFD, not what was checked.
    if _SURROGATE_ESCAPE.search(raw) and (where := not_unicode(data)) is not None:
        raise BadRequest(
            f"text in the JSON body is not valid Unicode: {where}",
            errors=[{"field": where, "message": "not valid Unicode (a lone UTF-16 surrogate)"}],
        )
    return _load(schema_class, data)


def _load(schema_class: type[Schema], data: dict[str, Any]) -> Any:
    try:
        return _instance(schema_class).load(data)
    except ValidationError as err:
        raise validation_failed(err, "request body") from None
