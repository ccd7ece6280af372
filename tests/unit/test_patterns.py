"""Whole-string patterns: `re.match` with a `$` takes "web\n", so every name, reference and key is matched
in full. Unit level: the schemas are loaded directly, no engine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from marshmallow import Schema, ValidationError

from moorage.__main__ import key_name
from moorage.config.loader import ApiKeySchema, DockerSchema, settings_from_mapping
from moorage.errors import ConfigError
from moorage.images.references import registry_host, with_default_tag
from moorage.images.registries import credentials_for
from moorage.schemas.containers import ContainerListQuery, ContainerRef
from moorage.schemas.create import ContainerCreateSchema
from moorage.schemas.fields import matches
from moorage.schemas.lifecycle import KillQuery
from moorage.schemas.logs import LogQuery
from moorage.schemas.references import is_reference

SHA = "a" * 64


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


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("busybox", True),
        ("library/busybox:1.36", True),
        ("localhost:5000/team/app:v1", True),
        ("registry.example.com/team/app@sha256:" + "a" * 64, True),
        ("[::1]:5000/app", True),
        ("UPPER/case", False),  # not a registry (no dot, port or localhost), so a Hub path: lowercase only
        ("app:", False),
        ("app:tag\n", False),
        ("../app", False),
    ],
)
def test_image_references_follow_dockers_grammar(value: str, valid: bool) -> None:
    assert is_reference(value) is valid


@pytest.mark.parametrize(
    ("name", "host"),
    [("busybox", None), ("team/app", None), ("localhost/app", "localhost"), ("127.0.0.1:5001/a/b", "127.0.0.1:5001")],
)
def test_the_registry_of_a_name_is_dockers(name: str, host: str | None) -> None:
    assert registry_host(name) == host


def test_a_reference_without_tag_or_digest_means_latest() -> None:
    assert with_default_tag("localhost:5000/app") == "localhost:5000/app:latest"
    assert with_default_tag("app:v1") == "app:v1"
    assert with_default_tag("app@sha256:" + "a" * 64) == "app@sha256:" + "a" * 64


def test_registry_credentials_are_checked_and_the_password_hidden(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-pw\n")
    settings = settings_from_mapping(
        {"registries": [{"host": "localhost:5001", "username": "u", "password_file": str(secret)}]}
    )
    [registry] = settings.registries
    assert registry.password == "s3cret-pw"
    assert "s3cret" not in repr(settings)
    assert credentials_for("localhost:5001/team/app", settings.registries) is registry
    assert credentials_for("localhost:5002/team/app", settings.registries) is None
    with pytest.raises(ConfigError, match=r"registries\.0\.password"):
        settings_from_mapping({"registries": [{"host": "localhost:5001", "username": "u"}]})
    with pytest.raises(ConfigError, match=r"registries\.0\.host"):
        settings_from_mapping({"registries": [{"host": "no host", "username": "u", "password": "p"}]})


def test_a_pattern_error_is_given_as_written() -> None:
    """marshmallow's Regexp reads {input} and {regex} in its message: a whole-string pattern's is left alone."""
    with pytest.raises(ValidationError) as caught:
        matches("[a-z]+", "lowercase, not {input} or {regex}")("Web")
    assert caught.value.messages == ["lowercase, not {input} or {regex}"]


def test_a_pattern_caps_the_length() -> None:
    assert matches("[a-z]+", "lowercase")("a" * 4096) == "a" * 4096
    with pytest.raises(ValidationError):
        matches("[a-z]+", "lowercase")("a" * 4097)


@pytest.mark.parametrize(("schema", "field"), [(KillQuery, "signal"), (LogQuery, "tail")])
def test_a_digit_that_is_not_ascii_is_no_number(schema: type[Schema], field: str) -> None:
    """str.isdigit takes "²", which int() refuses: it must be a bad field, not an error of the daemon's."""
    with pytest.raises(ValidationError) as caught:
        schema().load({field: "²"})
    assert list(caught.value.messages_dict) == [field]
