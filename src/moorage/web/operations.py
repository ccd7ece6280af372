"""What each handler declares of itself for the OpenAPI document, beside it as `@requires` declares its role:
`@documented(summary, tag=..., query=..., body=..., data=...)`, and the helpers that write a JSON Schema shape.
The document is built from these by openapi.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from moorage.web.roles import Handler

_DOC_ATTR = "__moorage_openapi__"

# What a schema slot takes: a marshmallow schema class, or a JSON Schema dict whose values may be such classes.
SchemaLike = type[Schema] | Mapping[str, Any]

# What a call that reaches the engine can get besides its own errors: the engine's error, down, or too slow.
ENGINE = (502, 503, 504)
# Streams are capped at [server] max_streams, per key and with room kept for admins.
STREAM = (*ENGINE, 429)


# The resources the operations are grouped by (each handler names its own), in the document's order.
TAGS = {
    "containers": "Containers: list, inspect, create, remove, and their lifecycle (start, stop, restart, pause, "
    "unpause, kill).",
    "logs": "A container's logs: a JSON page, or a stream of text or NDJSON.",
    "events": "The engine's container and image events, as an NDJSON stream.",
    "images": "Images: list, pull (waited for, or its progress streamed as NDJSON), remove.",
    "volumes": "Named volumes: list, inspect (who mounts one, its size), create and remove, within the host-safety "
    "policy.",
    "networks": "Networks: list, inspect, create, remove, connect and disconnect a container.",
    "system": "The host's Docker as a whole: disk usage, as `docker system df`, and a prune of everything unused.",
    "policy": "The host-safety policy in force, which creates are judged by (a dry run answers each decision).",
    "metrics": "The host's resources and the containers' metrics, from moorage's samplers; Prometheus.",
    "alerts": "Alerts: what fires now and what fired lately, the webhook deliveries, and test notifications.",
    "auth": "Bearer tokens, issued to API keys.",
    "audit": "The audit log: every change and every denied call, read back newest first.",
    "hooks": "Deploy hooks: a call signed with the hook's secret, and no API key, recreates its container.",
    "health": "Liveness and readiness probes: public.",
    "meta": "This document.",
}


@dataclass(frozen=True)
class Operation:
    """How one handler appears in the document."""

    summary: str
    tag: str
    path: type[Schema] | None = None
    query: type[Schema] | None = None
    body: type[Schema] | None = None
    data: SchemaLike | None = None
    status: int = 200
    raw: Mapping[str, SchemaLike] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    body_required: bool = True
    raw_body: Mapping[str, SchemaLike] = field(default_factory=dict)
    also: Mapping[int, SchemaLike] = field(default_factory=dict)


def documented(
    summary: str,
    *,
    tag: str,
    path: type[Schema] | None = None,
    query: type[Schema] | None = None,
    body: type[Schema] | None = None,
    data: SchemaLike | None = None,
    status: int = 200,
    raw: Mapping[str, SchemaLike] | None = None,
    errors: Iterable[int] = (),
    body_required: bool = True,
    raw_body: Mapping[str, SchemaLike] | None = None,
    also: Mapping[int, SchemaLike] | None = None,
) -> Callable[[Handler], Handler]:
    """Declare, beside the handler, its parameters and body, its success (`data`: what the envelope's `data`
    holds; `raw`: media types answered as they are, streams among them) and the errors it can answer beyond
    those every authenticated, audited or body-taking call can. `tag` is one of TAGS: the resource it acts on;
    `body_required=False` for a body whose every field has a default (load_json's `optional`); `raw_body`: the
    media types of a body that is not JSON (a tar, a file's bytes), read as it is; `also`: other successes, by
    status, with their `data` (a dry run's 200 beside a create's 201)."""
    if tag not in TAGS:
        raise ValueError(f"{summary!r}: tag {tag!r} is not one of {sorted(TAGS)}")
    if status in (also or {}):
        raise ValueError(f"{summary!r}: another success of status {status} is one of `data`'s shapes (any_of)")
    operation = Operation(
        summary, tag, path, query, body, data, status, dict(raw or {}), tuple(errors), body_required,
        dict(raw_body or {}), dict(also or {}),
    )  # fmt: skip

    def mark(handler: Handler) -> Handler:
        setattr(handler, _DOC_ATTR, operation)
        return handler

    return mark


def shape(**properties: SchemaLike | str) -> dict[str, Any]:
    """An object whose properties are all present; a string stands for `{"type": ...}`."""
    return {
        "type": "object",
        "required": list(properties),
        "properties": {k: {"type": v} if isinstance(v, str) else v for k, v in properties.items()},
    }


def listing(item: SchemaLike) -> dict[str, Any]:
    return {"type": "array", "items": item}


def page(item: SchemaLike) -> dict[str, Any]:
    """A `{total, items}` page of items."""
    return shape(total="integer", items=listing(item))


def any_of(*options: SchemaLike) -> dict[str, Any]:
    return {"anyOf": list(options)}


def declared_operation(handler: Callable[..., Any]) -> Operation | None:
    return getattr(handler, _DOC_ATTR, None)
