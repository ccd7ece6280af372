"""Scopes: what a key or token may see and touch, as a label selector in Kubernetes' syntax and name globs.

The selector grammar and meaning are Kubernetes' (`app=web,tier!=db,env in (prod,stage),!legacy,team`): every
requirement must hold; `!=` and `notin` also hold for an object without the label. Name globs are fnmatch's
(`web-*`, `db-?`), matched case-sensitively against a container's name. A token's scope is its key's with the
token's own added (`narrowed`), so it can only see less.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

# Docker label keys are freer than Kubernetes' (reverse-DNS, `com.docker.compose.project`); values are
# Kubernetes' label values (empty, or alphanumeric at both ends with `-_.` between).
_KEY = r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?"
_FILLED = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_VALUE = rf"(?:{_FILLED})?"
_SET = rf"\(\s*{_FILLED}\s*(?:,\s*{_FILLED}\s*)*\)"  # as in Kubernetes, a set is not empty
_REQUIREMENT = re.compile(
    rf"\s*(?:(?P<not>!)\s*(?P<absent>{_KEY})"
    rf"|(?P<key>{_KEY})(?:\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})"
    rf"|\s+(?P<setop>in|notin)\s*(?P<set>{_SET}))?)\s*(?:,|$)"
)
# What a container name may hold, and the glob characters.
_GLOB = re.compile(r"[A-Za-z0-9_.*?\[\]!-]+")


class SelectorError(ValueError):
    """A selector or glob that does not parse; the text says where."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and labels[self.key] in self.values
            case _:  # "!=" and "notin": also an object without the label
                return not present or labels[self.key] not in self.values

    def text(self) -> str:
        values = sorted(self.values)
        match self.operator:
            case "exists":
                return self.key
            case "!":
                return f"!{self.key}"
            case "=" | "!=":
                return f"{self.key}{self.operator}{values[0]}"
            case _:
                return f"{self.key} {self.operator} ({','.join(values)})"


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """The requirements of a selector; an empty one has none (it selects everything)."""
    if not text.strip():
        return ()
    found: list[Requirement] = []
    position = 0
    while position < len(text):
        match = _REQUIREMENT.match(text, position)
        if match is None or match.end() == position:
            raise SelectorError(f"cannot parse the selector at character {position + 1}: {text[position:]!r}")
        found.append(_requirement(match))
        position = match.end()
        if text[position - 1] == "," and position == len(text):
            raise SelectorError("the selector ends with a comma")
    return tuple(found)


def _requirement(match: re.Match[str]) -> Requirement:
    if match["not"]:
        return Requirement(match["absent"], "!")
    key = match["key"]
    if match["op"]:
        operator: Operator = "!=" if match["op"] == "!=" else "="
        return Requirement(key, operator, frozenset([match["value"]]))
    if match["setop"]:
        values = frozenset(value.strip() for value in match["set"][1:-1].split(","))
        return Requirement(key, "in" if match["setop"] == "in" else "notin", values)
    return Requirement(key, "exists")


def check_glob(glob: str) -> str:
    """A name glob, checked: container-name characters and `*?[]!` only."""
    if len(glob) > 255 or not _GLOB.fullmatch(glob):
        raise SelectorError(f"{glob!r} is not a name glob: at most 255 of letters, digits, _.- and *?[]!")
    return glob


@dataclass(frozen=True)
class Scope:
    """What a caller may see: objects whose labels meet every requirement and, for containers, whose name matches
    a glob of every set (a key's, then each narrowing token's). The empty scope admits everything."""

    requirements: tuple[Requirement, ...] = ()
    name_globs: tuple[frozenset[str], ...] = field(default=())

    @classmethod
    def of(cls, selector: str | None, names: Iterable[str] | None) -> Scope:
        globs = frozenset(check_glob(glob) for glob in names or ())
        return cls(parse_selector(selector or ""), (globs,) if globs else ())

    @property
    def unscoped(self) -> bool:
        return not self.requirements and not self.name_globs

    def labels_admit(self, labels: Mapping[str, str] | None) -> bool:
        return all(requirement.holds(labels or {}) for requirement in self.requirements)

    def name_admits(self, name: str) -> bool:
        name = name.lstrip("/")  # the engine's inspect writes "/web"
        return all(any(fnmatch.fnmatchcase(name, glob) for glob in globs) for globs in self.name_globs)

    def admits(self, labels: Mapping[str, str] | None, name: str | None = None) -> bool:
        """Whether an object is in the scope; `name` only for containers (the other objects have no globs)."""
        return self.labels_admit(labels) and (name is None or self.name_admits(name))

    def narrowed(self, other: Scope) -> Scope:
        """This scope and `other` both: never wider than either."""
        requirements = self.requirements + tuple(r for r in other.requirements if r not in self.requirements)
        return Scope(requirements, self.name_globs + other.name_globs)

    def stamped(self) -> dict[str, str]:
        """The labels a create in this scope gets: those the selector fixes to one value."""
        return {
            r.key: next(iter(r.values)) for r in self.requirements if r.operator in ("=", "in") and len(r.values) == 1
        }

    def unmet(self, labels: Mapping[str, str]) -> list[Requirement]:
        return [requirement for requirement in self.requirements if not requirement.holds(labels)]

    def engine_label_filters(self) -> list[str]:
        """The requirements the engine's `label` filter can say (an equality, a key that must be there): pushed
        down so that it sends less; the rest is judged here."""
        return [
            r.text() for r in self.requirements if r.operator == "exists" or (r.operator == "=" and "" not in r.values)
        ]

    @property
    def selector(self) -> str | None:
        """The canonical text of the label selector, or None when there is none."""
        return ",".join(r.text() for r in self.requirements) or None

    def described(self) -> dict[str, object]:
        """How whoami and the token answer say it: the selector's text and each set of globs."""
        return {"selector": self.selector, "names": [sorted(globs) for globs in self.name_globs]}


UNSCOPED = Scope()
