"""The OpenAPI 3.1 document, built from the schemas that validate requests and shape responses.

Each handler declares its operation beside it (operations.py), as it declares its permission with `@requires`; the
document is built once by walking the router, so a route that declares nothing stops the app from being built
rather than going undocumented.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from moorage import __version__
from moorage.schemas.fields import matches
from moorage.settings import Permission, Role, least_role
from moorage.web.operations import TAGS, Operation, SchemaLike, declared_operation, documented
from moorage.web.responses import JSON, NDJSON, RETRY_LATER
from moorage.web.roles import AUTHENTICATED, declared_permission, needs_credential, requires
from moorage.web.sse import SSE

# Statuses any authenticated call can get: a bad parameter or a credential in the URL, no or a wrong key,
# a permission the caller lacks, too many failed authentications from the address.
_AUTHENTICATED = (400, 401, 403, 429)
# A call that changes something is refused when its audit line cannot be written.
_AUDITED = (503,)
# A JSON body can be too slow to arrive, too large or not JSON.
_WITH_BODY = (408, 413, 415)
# Every operation is a call of the daemon that served the document: its paths start at the daemon's root
# (`/api/v1/...`, `/healthz`, `/metrics`), so the server is the root of wherever the document came from.
_SERVERS = [{"url": "/", "description": "The daemon that serves this document (http://127.0.0.1:8000 by default)."}]
_LICENSE = {"name": "MIT", "identifier": "MIT"}
# What a handler is called, which is its operationId: a verb and what it acts on, in snake_case.
_OPERATION_ID = re.compile(r"[a-z]+(?:_[a-z]+)+")
# A stream is text to a generator: it reads no NDJSON, and would otherwise try to read the whole stream as one
# JSON value. The schema of one line is in `x-itemSchema`, what OpenAPI 3.2 calls a media type's `itemSchema`.
# An event stream's `schema` is one event as EventSource reads it (so OpenAPI before 3.2 has it), its data JSON.
_STREAMED = {
    NDJSON: {"type": "string", "description": "One JSON value a line, each as `x-itemSchema` says."},
    SSE: {
        "type": "object",
        "description": "One event; its `data` is one JSON value, as `x-itemSchema` says.",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    },
}


_ENVELOPE = {
    "type": "object",
    "required": ["code", "message", "data"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
}
_ERROR = {
    "type": "object",
    "description": "Every failure: `code` is the HTTP status; `errors` names each bad field.",
    "required": ["code", "message", "errors"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "rule": {"type": "string", "description": "the host-safety policy's rule that refused it"},
                },
            },
        },
        "data": {
            "type": "object",
            "description": "Only when a failure did something it must tell: a recreate rolled back (its timeline, "
            "the new container's last logs and health log).",
        },
    },
}
# The headers answers carry (middlewares.answer_headers, envelope.error, the 201s), as components.
_HEADERS = {
    "X-Request-Id": {
        "description": "The request's id: the client's own X-Request-Id if it is 1-128 of [A-Za-z0-9._:-], else a "
        "new one; its audit line and log lines name it too.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    },
    "Cache-Control": {"description": "Answers to authenticated calls are not stored.", "schema": {"const": "no-store"}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "Location": {"description": "The path of what was created.", "schema": {"type": "string"}},
}
_SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "an API key, or a token from POST /auth/tokens"},
}


def openapi_path(resource: web.AbstractResource) -> str:
    """The route's path as OpenAPI writes it: `{image_id:.+}` is `{image_id}`."""
    info = resource.get_info()
    return info.get("path") or re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", info["formatter"])


def _error_response(status: int) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": HTTPStatus(status).phrase, "content": {JSON: {"schema": schema}}}


def _headers(status: int, authenticated: bool) -> dict[str, Any]:
    names = ["X-Request-Id"]
    names += ["Cache-Control"] if authenticated else []
    names += ["Retry-After"] if status in RETRY_LATER else []
    names += ["Location"] if status == 201 else []
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _media(media_type: str, schema: SchemaLike) -> dict[str, Any]:
    """A media type answered as it is; a stream is text or events, its item's schema beside it (_STREAMED)."""
    if media_type in _STREAMED:
        return {"schema": _STREAMED[media_type], "x-itemSchema": schema}
    return {"schema": schema}


def _enveloped(data: SchemaLike) -> dict[str, Any]:
    required = {"type": "object", "required": ["data"], "properties": {"data": data}}
    return {"allOf": [{"$ref": "#/components/schemas/Envelope"}, required]}


def _operation(method: str, handler: Callable[..., Any], doc: Operation) -> dict[str, Any]:
    needed = declared_permission(handler)
    authenticated = needs_credential(handler)
    content: dict[str, Any] = {media_type: _media(media_type, schema) for media_type, schema in doc.raw.items()}
    if doc.data is not None:
        content = {JSON: {"schema": _enveloped(doc.data)}, **content}
    errors = set(doc.errors)
    if authenticated:
        errors.update(_AUTHENTICATED)
        if method != "GET":
            errors.update(_AUDITED)
    if doc.body is not None or doc.raw_body:
        errors.update(_WITH_BODY)
    responses = {str(doc.status): {"description": HTTPStatus(doc.status).phrase, "content": content}}
    for status, data in doc.also.items():
        answered = {JSON: {"schema": _enveloped(data)}}
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": answered}
    responses.update({str(status): _error_response(status) for status in sorted(errors)})
    for status, response in responses.items():
        response["headers"] = _headers(int(status), authenticated)
    parameters = [{"in": where, "schema": schema} for where, schema in (("path", doc.path), ("query", doc.query))]
    operation: dict[str, Any] = {
        "operationId": handler.__name__,
        "tags": [doc.tag],
        "summary": doc.summary,
        "parameters": [p for p in parameters if p["schema"] is not None],
        "responses": responses,
    }
    if handler.__doc__:
        operation["description"] = inspect.cleandoc(handler.__doc__)
    if isinstance(needed, Permission):
        operation["x-moorage-permission"] = needed.value
        operation["x-moorage-role"] = least_role(needed).value
    elif authenticated:  # any valid key or token: every role
        operation["x-moorage-role"] = Role.VIEWER.value
    else:
        operation["security"] = []
    if doc.body is not None:
        operation["requestBody"] = {"required": doc.body_required, "content": {JSON: {"schema": doc.body}}}
    elif doc.raw_body:
        content = {media_type: {"schema": schema} for media_type, schema in doc.raw_body.items()}
        operation["requestBody"] = {"required": doc.body_required, "content": content}
    return operation


# In this order: a bool is an int, a StrEnum member a str.
_JSON_TYPES = ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number"), (type(None), "null"))


def _json_type(value: Any) -> str:
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def _declared_schema(converter: Any, field: fields.Field, ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    """What a field class of ours declares it takes (`json_schema`): apispec knows the types of marshmallow's
    fields only. A field that also takes null says so with the declared forms."""
    declared = getattr(field, "json_schema", None)
    if declared is None:
        return {}
    schema = _typed_options(copy.deepcopy(declared))
    if not field.allow_none:
        return schema
    return {"anyOf": [*(schema["anyOf"] if set(schema) == {"anyOf"} else [schema]), {"type": "null"}]}


def _typed_options(schema: dict[str, Any]) -> dict[str, Any]:
    """Each option of an `anyOf` says its type (a field may state the type once, over its options): a
    generator types a value by its options, and to it an untyped one is `Any`."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    kind = schema.pop("type", None)
    flat: list[dict[str, Any]] = []
    for option in options:
        if kind is not None and not {"type", "$ref"} & set(option):
            option["type"] = kind
        _typed_options(option)
        # An option that is only options of its own (a type stated once over them) is those options.
        flat.extend(option["anyOf"] if set(option) == {"anyOf"} else [option])
    schema["anyOf"] = flat
    return schema


def _text_cap(converter: Any, field: fields.Field, ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    """A whole-string pattern also caps the length (`matches`): apispec publishes only validate.Length's."""
    caps = [v.max_length for v in field.validators if isinstance(v, matches)]
    if "maxLength" in ret:
        caps.append(ret["maxLength"])
    return {"maxLength": min(caps)} if caps else {}


def _enum_type(converter: Any, field: fields.Field, ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    """apispec gives an Enum field its values but no type: the type is theirs."""
    if "enum" not in ret or "type" in ret:
        return {}
    types = sorted({_json_type(value) for value in ret["enum"]})
    return {"type": types[0] if len(types) == 1 else types}


def build_document(router: web.UrlDispatcher) -> dict[str, Any]:
    """The document of every route on the router; a route without `@documented` is an error here."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="moorage",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[plugin],
        info={"description": "The Docker containers and images of one host.", "license": _LICENSE},
        servers=_SERVERS,
        tags=[{"name": name, "description": description} for name, description in TAGS.items()],
        security=[{"ApiKey": []}, {"Bearer": []}],
    )
    assert plugin.converter is not None  # set by APISpec
    plugin.converter.add_attribute_function(_declared_schema)
    plugin.converter.add_attribute_function(_enum_type)
    plugin.converter.add_attribute_function(_text_cap)
    spec.components.schema("Envelope", _ENVELOPE)
    spec.components.schema("Error", _ERROR)
    for name, scheme in _SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for name, header in _HEADERS.items():
        spec.components.header(name, header)
    paths: dict[str, dict[str, Any]] = {}
    named: set[str] = set()
    for route in router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        doc = declared_operation(route.handler)
        path = openapi_path(route.resource)
        if doc is None:
            raise RuntimeError(f"{route.method} {path} is not @documented")
        name = route.handler.__name__  # what a generated client calls the operation's function
        if not _OPERATION_ID.fullmatch(name) or name in named:
            raise RuntimeError(f"{route.method} {path}: its handler's name {name!r} is not a new snake_case verb")
        named.add(name)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route.method, route.handler, doc)
    for path, operations in paths.items():
        # apispec puts references in place of the schema classes it finds: give it a copy, not the declarations.
        copied = copy.deepcopy(operations)
        for operation in copied.values():
            _resolve_line_schemas(plugin, operation)
        spec.path(path=path, operations=copied)
    return spec.to_dict()


def _resolve_line_schemas(plugin: MarshmallowPlugin, operation: dict[str, Any]) -> None:
    """The schema classes in a stream's `x-itemSchema`, as references: apispec resolves only `schema`."""
    assert plugin.resolver is not None  # set by APISpec
    for response in operation["responses"].values():
        for media in response.get("content", {}).values():
            if "x-itemSchema" in media:
                media["x-itemSchema"] = plugin.resolver.resolve_schema_dict(media["x-itemSchema"])


def serve_document(app: web.Application, path: str) -> None:
    """Add the document's route at `path`, last: the document, itself included, is built when first asked for
    (once; the routes are fixed by then), so that an app that is never asked (a test's) does not pay for it."""

    @functools.cache
    def body() -> bytes:
        return json.dumps(build_document(app.router), separators=(",", ":")).encode()

    @requires(AUTHENTICATED)
    @documented("This document", tag="meta", raw={JSON: {"type": "object"}})
    async def get_openapi_document(request: web.Request) -> web.Response:
        return web.Response(body=body(), content_type=JSON)

    app.router.add_get(path, get_openapi_document)
