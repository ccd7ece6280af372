"""Whole-string patterns: `re.match` with a `$` takes "web\n", so every name, reference and key is matched
in full. Unit level: the schemas are loaded directly, no engine."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from marshmallow import Schema, ValidationError

from moorage.__main__ import key_name
from moorage.config import ApiKeySchema, DockerSchema
from moorage.schemas.containers import ContainerListQuery, ContainerRef
from moorage.schemas.create import ContainerCreateSchema

SHA = "a" * 64


@pytest.fixture
def engine() -> None:
    """Overrides the suite's autouse engine fixture: these tests never talk to Docker."""


CASES = [
    (ContainerRef, {"container_id": "web"}, "container_id", "not a container id or name"),
    (ContainerListQuery, {"name": "web"}, "name", "letters, digits, _ . - only (a part of a name)"),
    (ApiKeySchema, {"name": "web", "role": "admin", "sha256": SHA}, "name", "letters, digits, _ . @ -"),
    (ApiKeySchema, {"name": "web", "role": "admin", "sha256": SHA}, "sha256", "must be the 64 hex digits"),
    (DockerSchema, {"url": "unix:///run/docker.sock"}, "url", "must be a unix://, tcp:// or http(s):// URL"),
    (ContainerCreateSchema, {"image": "nginx", "name": "web"}, "name", "letters, digits, _ . -"),
]


@pytest.mark.parametrize(("schema", "valid", "field", "message"), CASES)
def test_a_trailing_newline_is_refused(schema: type[Schema], valid: dict[str, Any], field: str, message: str) -> None:
    schema().load(valid)
    with pytest.raises(ValidationError) as caught:
        schema().load({**valid, field: valid[field] + "\n"})
    messages: Any = caught.value.messages
    assert list(messages) == [field]
    assert messages[field][0].startswith(message)


def test_a_label_filter_with_a_trailing_newline_is_refused() -> None:
    assert ContainerListQuery().load({"label": ["app=web"]})["label"] == ["app=web"]
    with pytest.raises(ValidationError) as caught:
        ContainerListQuery().load({"label": ["app=web\n"]})
    assert caught.value.messages == {"label": {0: ["KEY or KEY=VALUE"]}}


def test_keygen_refuses_a_key_name_with_a_trailing_newline() -> None:
    assert key_name("web") == "web"
    with pytest.raises(argparse.ArgumentTypeError, match="letters, digits"):
        key_name("web\n")
