"""Prune filters without an engine: `until` as the engine takes it (a Go duration back from now, RFC 3339, Unix
seconds; to the second), `label` and `label_not` (the engine's `label!`) matched as the engine's MatchKVList, the
engine's timestamps, and the image prune foretold from a list as the engine's ImagesPrune would do it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from marshmallow import ValidationError

from moorage.engine.pruning import PruneFilters, engine_moment
from moorage.images.prune import foretell
from moorage.schemas.prune import (
    ContainersPruneQuery,
    ImagesPruneQuery,
    SystemPruneQuery,
    VolumesPruneQuery,
    prune_filters,
)

_NOW = 1_800_000_000


def until(text: str) -> int | None:
    return prune_filters(ContainersPruneQuery().load({"until": text})).until


@pytest.mark.parametrize(
    ("text", "ago"),
    [("24h", 86_400), ("90m", 5_400), ("1h30m", 5_400), ("1.5h", 5_400), ("0s", 0), ("500ms", 0.5)],
)
def test_a_duration_is_that_long_before_now_to_the_second(text: str, ago: float) -> None:
    before = time.time()
    found = until(text)
    assert found is not None
    assert int(before - ago) - 1 <= found <= int(time.time() - ago)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2027-01-15T08:00:00Z", _NOW),
        ("2027-01-15T09:00:00+01:00", _NOW),
        ("2027-01-15T08:00:00.999999Z", _NOW),
        ("1800000000", _NOW),
        ("1800000000.75", _NOW),
        ("0", 0),
    ],
)
def test_a_moment_is_kept_to_the_second(text: str, seconds: int) -> None:
    assert until(text) == seconds


@pytest.mark.parametrize(
    "text", ["yesterday", "-1h", "+1h", "2027-01-15T08:00:00", "2027-01-15", "999999999999", "100000000h", "1d"]
)
def test_anything_else_is_refused_naming_until(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ContainersPruneQuery().load({"until": text})
    assert set(caught.value.normalized_messages()) == {"until"}


def test_volumes_take_no_until_nor_does_a_system_prune_with_them() -> None:
    with pytest.raises(ValidationError) as caught:
        VolumesPruneQuery().load({"until": "1h"})
    assert "no until" in str(caught.value.normalized_messages()["until"])
    with pytest.raises(ValidationError) as caught:
        SystemPruneQuery().load({"until": "1h", "volumes": "true"})
    assert set(caught.value.normalized_messages()) == {"until"}
    assert SystemPruneQuery().load({"until": "1h"})["volumes"] is False


def test_the_labels_are_the_engines_filters() -> None:
    loaded = ImagesPruneQuery().load({"label": ["a", "b=1", "a"], "label_not": "c"})
    assert prune_filters(loaded) == PruneFilters(label=("a", "b=1"), label_not=("c",))
    assert loaded["dangling"] is True and loaded["dry_run"] is False


@pytest.mark.parametrize(
    ("label", "label_not", "labels", "matches"),
    [
        ((), (), None, True),
        (("a",), (), None, False),
        (("a",), (), {"a": ""}, True),
        (("a=1",), (), {"a": "2"}, False),
        (("a=1", "b"), (), {"a": "1"}, False),
        (("a=1", "b"), (), {"a": "1", "b": "x"}, True),
        (("a=x=y",), (), {"a": "x=y"}, True),
        ((), ("a",), {"a": "1"}, False),
        ((), ("a",), {}, True),
        ((), ("a=1",), {"a": "2"}, True),
        # The engine's rule: several label! spare only what carries every one (moorage takes one).
        ((), ("a", "b"), {"a": "1"}, True),
        ((), ("a", "b"), {"a": "1", "b": "1"}, False),
    ],
)
def test_labels_match_as_the_engine_matches_them(
    label: tuple[str, ...], label_not: tuple[str, ...], labels: dict[str, str] | None, matches: bool
) -> None:
    assert PruneFilters(label=label, label_not=label_not).labels_match(labels) is matches


def test_until_spares_what_was_made_after_it() -> None:
    filters = PruneFilters(until=_NOW)
    assert filters.made_by_until(_NOW - 1, whole=False)
    assert filters.made_by_until(_NOW, whole=True)
    assert not filters.made_by_until(_NOW, whole=False)
    assert not filters.made_by_until(_NOW + 1, whole=True)
    assert PruneFilters().made_by_until(_NOW + 10**6, whole=False)


def test_the_engine_filters_are_moorages_own() -> None:
    filters = PruneFilters(until=_NOW, label=("a=1",), label_not=("b",))
    assert filters.engine(dangling=False) == (
        '{"until": ["1800000000"], "label": ["a=1"], "label!": ["b"], "dangling": ["false"]}'
    )
    assert PruneFilters().engine() == "{}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T08:00:00.123456789Z", (_NOW, False)),
        ("2027-01-15T08:00:00.000000000Z", (_NOW, True)),
        ("2027-01-15T08:00:00Z", (_NOW, True)),
        ("2027-01-15T09:00:00.5+01:00", (_NOW, False)),
        ("2027-01-15T08:00:00", (_NOW, True)),
    ],
)
def test_engine_moments_to_the_second(text: str, expected: tuple[int, bool]) -> None:
    assert engine_moment(text) == expected


def image(image_id: str, *tags: str, parent: str = "", created: int = _NOW, **labels: str) -> dict[str, Any]:
    return {"Id": image_id, "ParentId": parent, "RepoTags": list(tags) or None, "Created": created, "Labels": labels}


def outcomes(images: list[dict[str, Any]], used: set[str], dangling: bool, **filters: Any) -> dict[str, Any]:
    found = foretell(images, used, PruneFilters(**filters), dangling, lambda _: False)
    return {o.id: (o.deleted, o.untagged) for o in found}


def test_a_dangling_prune_takes_untagged_unused_images_without_children() -> None:
    images = [
        image("dangling"),
        image("used"),
        image("tagged", "app:1"),
        image("parent"),
        image("child", parent="parent"),
        image("digest-only") | {"RepoDigests": ["app@sha256:1"]},
    ]
    assert outcomes(images, {"used"}, dangling=True) == {
        "dangling": (True, []),
        # Its child goes, and with it the parent that is then dangling and unused.
        "child": (True, []),
        "parent": (True, []),
        "digest-only": (True, ["app@sha256:1"]),
    }


def test_every_unused_image_as_the_engines_rmi_of_each_reference() -> None:
    images = [
        image("one", "app:1"),
        image("two-tags-used", "app:2", "app:3"),
        image("repos-used", "b:1", "a:1"),
        image("pulled", "web:1") | {"RepoDigests": ["web@sha256:9"]},
        image("used", "db:1"),
    ]
    found = outcomes(images, {"two-tags-used", "repos-used", "used"}, dangling=False)
    assert found == {
        "one": (True, ["app:1"]),
        # Removing one of two tags is no conflict; the last reference of an image in use is.
        "two-tags-used": (False, ["app:2"]),
        "repos-used": (False, ["a:1"]),
        "pulled": (True, ["web:1", "web@sha256:9"]),
    }


def test_the_filters_pick_the_candidates() -> None:
    images = [
        image("old", created=_NOW - 10),
        image("new", created=_NOW + 10),
        image("red", created=_NOW - 5, colour="red"),
    ]
    assert set(outcomes(images, set(), dangling=True, until=_NOW)) == {"old", "red"}
    assert set(outcomes(images, set(), dangling=True, label=("colour=red",))) == {"red"}
    assert set(outcomes(images, set(), dangling=True, label_not=("colour=red",))) == {"old", "new"}
