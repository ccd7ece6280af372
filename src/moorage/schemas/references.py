"""Validators of image references, checked before any reaches the engine or its URL."""

from __future__ import annotations

import re

from marshmallow import ValidationError

from moorage.images.references import IMAGE_ID, MAX_NAME, NAME, REFERENCE_RULE, is_reference


def reference(value: str) -> None:
    """Validator: an image reference, with an optional tag and digest."""
    if not is_reference(value):
        raise ValidationError(REFERENCE_RULE)


def repository(value: str) -> None:
    """Validator: a repository name alone ([registry/]repo), as the pull body's `name` carries it."""
    if len(value) > MAX_NAME or not re.fullmatch(NAME, value):
        raise ValidationError("not a repository name: [registry[:port]/]path, lowercase")


def image_ref(value: str) -> None:
    """Validator: an image id, short id or reference, as `docker rmi` takes them."""
    if not (IMAGE_ID.fullmatch(value) or is_reference(value)):
        raise ValidationError("not an image id or reference")
