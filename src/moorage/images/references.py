"""Docker image references (distribution/reference): the grammar, and how Docker reads a name."""

from __future__ import annotations

import re

# `-+` for the grammar's `-*` separator: equivalent, but it cannot backtrack exponentially in Python's
# engine. [0-9], not \d: \d is Unicode.
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_PORT = r"(?::[0-9]{1,5})"
# A first component is a registry only as Docker decides (splitDockerDomain): with a dot, a port, or
# `localhost`; otherwise it is part of a Docker Hub path, and must be lowercase like one.
_HOSTNAMES = (rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})+{_PORT}?", rf"{_DOMAIN_PART}{_PORT}", rf"localhost{_PORT}?")
DOMAIN = "(?:" + "|".join((*_HOSTNAMES, rf"\[[0-9a-fA-F:]+\]{_PORT}?")) + ")"
NAME = rf"(?:{DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*"
TAG = r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}"
DIGEST = r"sha256:[0-9a-f]{64}"
_REFERENCE = re.compile(rf"(?P<name>{NAME})(?::{TAG})?(?:@{DIGEST})?")
# An image id as `docker rmi` takes it: full, with its algorithm, or a unique prefix.
IMAGE_ID = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}")
MAX_NAME = 255
REFERENCE_RULE = "not an image reference: [registry/]repo[:tag] or [registry/]repo@sha256:<hex>"


def is_reference(value: str) -> bool:
    found = _REFERENCE.fullmatch(value) if len(value) <= 2 * MAX_NAME else None
    return bool(found) and len(found["name"]) <= MAX_NAME


def registry_host(name: str) -> str | None:
    """The registry a repository name points at, as Docker decides it: a first part with a dot, a port or
    `localhost`; None for Docker Hub."""
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def with_default_tag(ref: str) -> str:
    """`repo` as Docker reads it, `repo:latest`; a reference with a tag or digest is left as it is."""
    last = ref.rsplit("/", 1)[-1]
    return ref if "@" in ref or ":" in last else f"{ref}:latest"
