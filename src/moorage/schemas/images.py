"""Image schemas: the list query, the pull body, and the engine's image payloads in moorage's shape."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load

from moorage.images.references import TAG
from moorage.schemas.common import DockerTime, PageQuery, StrictSchema
from moorage.schemas.fields import Text, matches
from moorage.schemas.references import image_ref, repository

# The types of computed fields, for the document: apispec cannot see what a function returns.
_STRINGS = {"type": "array", "items": {"type": "string"}}
_COUNT = {"type": ["integer", "null"]}


class ImageListQuery(PageQuery):
    # Docker's reference filter is a glob on repo:tag: * and ? are wildcards. No [ ]: an unbalanced one
    # is an engine error, and a class is more than a caller needs.
    reference = fields.String(
        validate=matches(r"[a-zA-Z0-9_.:/@*?-]{1,255}", "a repo[:tag] pattern; * and ? are wildcards")
    )
    dangling = fields.Boolean()


class PullQuery(StrictSchema):
    stream = fields.Boolean(load_default=False)


class PullBody(StrictSchema):
    name = Text(required=True, validate=repository)
    tag = Text(load_default="latest", validate=matches(TAG, "letters, digits, _ . - (at most 128)"))

    @post_load
    def reference(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {**data, "reference": f"{data['name']}:{data['tag']}"}


class ImageRef(StrictSchema):
    """An image id, short id or reference in the path; anything else never reaches the engine's URL."""

    image_id = fields.String(required=True, validate=image_ref)


class ImageDeleteQuery(StrictSchema):
    force = fields.Boolean(load_default=False)
    noprune = fields.Boolean(load_default=False)


class ImageSummarySchema(Schema):
    """An image from the engine's list or inspect payload; `Containers` is filled in by moorage (the engine's is -1)."""

    id = fields.String(attribute="Id")
    tags = fields.Function(lambda i: [t for t in i.get("RepoTags") or () if t != "<none>:<none>"], metadata=_STRINGS)
    digests = fields.Function(
        lambda i: [d for d in i.get("RepoDigests") or () if not d.startswith("<none>@")], metadata=_STRINGS
    )
    size = fields.Integer(attribute="Size")
    created_at = DockerTime(attribute="Created")
    containers = fields.Integer(attribute="Containers")


class PullProgressSchema(Schema):
    """One progress event of the engine's pull stream: what it is doing, to which layer, how far."""

    status = fields.String(attribute="status")
    id = fields.String(attribute="id")
    current = fields.Function(lambda e: (e.get("progressDetail") or {}).get("current"), metadata=_COUNT)
    total = fields.Function(lambda e: (e.get("progressDetail") or {}).get("total"), metadata=_COUNT)


class ImageDeletedSchema(Schema):
    """The engine's answer to a delete, grouped: which references were untagged, which images deleted."""

    untagged = fields.Function(lambda items: [i["Untagged"] for i in items if i.get("Untagged")], metadata=_STRINGS)
    deleted = fields.Function(lambda items: [i["Deleted"] for i in items if i.get("Deleted")], metadata=_STRINGS)
