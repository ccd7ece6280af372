"""Each default of config.toml is stated once, in settings.py: a section's schema takes it from there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING
from dataclasses import fields as fields_of
from typing import Any, TypeVar

from marshmallow import Schema, missing

SchemaClass = TypeVar("SchemaClass", bound=type[Schema])


def _as_given(default: Any) -> Any:
    """A default in the form the file gives the key: a list for a tuple or a set (what the schema builds from)."""
    if isinstance(default, tuple | frozenset):
        return lambda: list(default)
    return default


def defaults_from(section: type) -> Callable[[SchemaClass], SchemaClass]:
    """Give each key of the schema that the file may leave out, and that names no default of its own, the
    default of the settings dataclass's field of the same name."""

    def apply(schema: SchemaClass) -> SchemaClass:
        declared = schema._declared_fields
        for item in fields_of(section):
            key = declared.get(item.name)
            if key is None or key.required or key.load_default is not missing or item.default is MISSING:
                continue
            key.load_default = _as_given(item.default)
        return schema

    return apply
