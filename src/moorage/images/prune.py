"""What the engine's image prune does (Docker 20.10's ImagesPrune, daemon/images/image_prune.go), foretold from
the engine's list, and its answer read back in the same shape.

The engine takes the images with no child (every image with `dangling=false`), made by `until`, matching the
labels, leaving out an untagged image that has children. Without `dangling=false` it then skips every one with a
tag. For each image left it removes every reference, one `docker rmi REF` at a time in the order of the full
names; that refuses the last reference of an image a container uses (running or not), so such an image keeps one,
and loses the others. An image whose references are all gone is deleted unless it has children, and so is its
parent if that is now untagged, childless and unused, up the chain. A dangling image is deleted by id unless a
container uses it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moorage.engine.pruning import PruneFilters

Image = Mapping[str, Any]


@dataclass
class ImageOutcome:
    """One image a prune touches: the references it loses, and whether it goes."""

    id: str
    untagged: list[str] = field(default_factory=list)
    deleted: bool = False


def references(image: Image) -> list[str]:
    """An image's tags and digests from the engine's list, without its `<none>` placeholders."""
    tags = [t for t in image.get("RepoTags") or () if t != "<none>:<none>"]
    return tags + [d for d in image.get("RepoDigests") or () if not d.startswith("<none>@")]


def _is_tag(ref: str) -> bool:
    return "@" not in ref


def _repository(ref: str) -> str:
    if not _is_tag(ref):
        return ref.split("@", 1)[0]
    name, colon, tag = ref.rpartition(":")
    return name if colon and "/" not in tag else ref


def _full(ref: str) -> str:
    """The reference as the engine orders it (docker.io/library/busybox:1 for busybox:1)."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if slash else f"docker.io/library/{ref}"


def _single_reference(refs: Sequence[str]) -> bool:
    """The engine's isSingleReference: one tag at most, and every reference in its repository."""
    if len(refs) <= 1:
        return len(refs) == 1
    single: str | None = None
    names: set[str] = set()
    for ref in refs:
        if not _is_tag(ref):
            names.add(_repository(ref))
        elif single is None:
            names.add(_repository(ref))
            single = ref
        else:
            return False
    return len(names) == 1 and _repository(single or refs[0]) in names


def _untag(refs: list[str], used: bool) -> list[str]:
    """Remove `refs` one by one as the engine's prune does, in place; the references removed, in order. The last
    reference of an image a container uses stays (the engine's conflict); a tag's removal takes the digests of
    its repository along when no other tag of it is left."""
    untagged: list[str] = []
    for ref in sorted(refs, key=_full):
        if ref not in refs:
            continue  # gone with its repository's last tag
        if used and _single_reference(refs):
            break
        refs.remove(ref)
        untagged.append(ref)
        repository = _repository(ref)
        if _is_tag(ref) and not any(_is_tag(r) and _repository(r) == repository for r in refs):
            for digest in [r for r in refs if not _is_tag(r) and _repository(r) == repository]:
                refs.remove(digest)
                untagged.append(digest)
    return untagged


def foretell(
    images: Iterable[Image],
    used: set[str],
    filters: PruneFilters,
    dangling: bool,
    whole: Callable[[Image], bool],
) -> list[ImageOutcome]:
    """What the engine's prune would do to `images` (its list with all=1), with `used` the image ids that some
    container (running or not) uses; `whole(image)` tells whether an image made in `until`'s second was made on
    it exactly (only asked of those)."""
    by_id = {image["Id"]: image for image in images}
    refs = {image_id: references(image) for image_id, image in by_id.items()}
    children: defaultdict[str, set[str]] = defaultdict(set)
    for image_id, image in by_id.items():
        if image.get("ParentId") in by_id:
            children[image["ParentId"]].add(image_id)
    pool = [i for i in by_id.values() if not dangling or not children[i["Id"]]]
    chosen = [
        image
        for image in sorted(pool, key=lambda i: (-int(i.get("Created") or 0), i["Id"]))
        if (refs[image["Id"]] or not children[image["Id"]])
        and filters.made_by_until(
            int(image.get("Created") or 0), filters.until == image.get("Created") and whole(image)
        )
        and filters.labels_match(image.get("Labels"))
    ]
    outcomes: dict[str, ImageOutcome] = {}

    def delete(image_id: str) -> None:
        while True:
            outcomes.setdefault(image_id, ImageOutcome(image_id)).deleted = True
            parent = by_id[image_id].get("ParentId")
            if parent not in by_id:
                return
            children[parent].discard(image_id)
            if refs[parent] or children[parent] or parent in used or outcomes.get(parent, ImageOutcome("")).deleted:
                return
            image_id = parent

    for image in chosen:
        image_id = image["Id"]
        if image_id in outcomes and outcomes[image_id].deleted:
            continue
        if not refs[image_id]:
            if image_id not in used and not children[image_id]:
                delete(image_id)
            continue
        if dangling and any(_is_tag(ref) for ref in refs[image_id]):
            continue
        untagged = _untag(refs[image_id], image_id in used)
        if untagged:
            outcomes.setdefault(image_id, ImageOutcome(image_id)).untagged.extend(untagged)
        if not refs[image_id] and not children[image_id]:
            delete(image_id)
    return list(outcomes.values())


def reported(records: Iterable[Mapping[str, str]], images: Iterable[Image]) -> list[ImageOutcome]:
    """The engine's ImagesDeleted as outcomes per image, each reference and id matched to the images listed just
    before; a Deleted entry that is no image listed is a layer, and left to the records."""
    by_ref: dict[str, str] = {}
    known: set[str] = set()
    for image in images:
        known.add(image["Id"])
        for ref in references(image):
            by_ref[ref] = image["Id"]
    outcomes: dict[str, ImageOutcome] = {}
    for record in records:
        if (ref := record.get("Untagged")) is not None:
            image_id = by_ref.get(ref, "")
            outcomes.setdefault(image_id, ImageOutcome(image_id)).untagged.append(ref)
        elif (deleted := record.get("Deleted")) in known:
            outcomes.setdefault(deleted, ImageOutcome(deleted)).deleted = True
    return list(outcomes.values())
