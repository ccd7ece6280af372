"""Copying files out of and into a container, as `docker cp` does through the engine's archive API: the path
policy, the engine's stat of a path, where the engine resolves a path to, and the checks of an uploaded tar."""

from __future__ import annotations

import asyncio
import base64
import binascii
import posixpath
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote

import aiodocker
import orjson
from aiodocker.exceptions import DockerError

from moorage.engine.client import engine_head
from moorage.errors import BadGateway, BadRequest, Forbidden, NotFound
from moorage.settings import FilesSettings

# The header the engine's archive API answers a path's stat in: base64 of {name, size, mode, mtime, linkTarget}.
STAT_HEADER = "X-Docker-Container-Path-Stat"
MAX_DEPTH = 64  # components of a path: each is a stat of the engine while the path is resolved
_SAFE = "/!$&'()*+,;=:@-._~"  # what a header's percent-encoded name keeps as it is
# Go's os.FileMode: the type bits above the Unix permission bits.
_GO_DIR, _GO_SYMLINK = 1 << 31, 1 << 27
_GO_OTHER = (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)  # device, pipe, socket, char device, irregular
_GO_SPECIAL = ((1 << 23, 0o4000), (1 << 22, 0o2000), (1 << 20, 0o1000))  # setuid, setgid, sticky


@dataclass(frozen=True)
class PathStat:
    """A path's stat as the engine tells it; `link_target` is where a symlink leads, resolved by the engine."""

    name: str
    size: int
    mode: int  # Go's os.FileMode
    mtime: str  # RFC 3339, as the engine wrote it
    link_target: str

    @property
    def kind(self) -> str:
        if self.mode & _GO_DIR:
            return "directory"
        if self.mode & _GO_SYMLINK:
            return "symlink"
        return "other" if self.mode & _GO_OTHER else "file"

    @property
    def permissions(self) -> int:
        """The Unix permission bits (with setuid, setgid and sticky), as `stat -c %a` shows them."""
        return (self.mode & 0o777) | sum(unix for go, unix in _GO_SPECIAL if self.mode & go)


def parse_stat(header: str) -> PathStat:
    """The engine's stat header; ValueError when it is not one."""
    try:
        raw = orjson.loads(base64.b64decode(header, validate=True))
        return PathStat(
            str(raw["name"]), int(raw["size"]), int(raw["mode"]), str(raw["mtime"]), raw["linkTarget"] or ""
        )
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"the engine's {STAT_HEADER} header is not a stat: {err}") from None


def container_path(text: str) -> str:
    """An absolute path in the container, normalized (`//`, `.` and a trailing `/` dropped); ValueError for a
    relative one, or one with a `..` component (refused rather than resolved: the engine resolves symlinks, and
    `a/..` need not be where `a` is)."""
    if not text.startswith("/"):
        raise ValueError("must be an absolute path")
    if "\x00" in text:
        raise ValueError("must not hold a NUL")
    if ".." in text.split("/"):
        raise ValueError("must not hold a '..' component")
    normal = posixpath.normpath(text)
    normal = "/" + normal.lstrip("/")  # normpath keeps a leading "//"
    if normal.count("/") > MAX_DEPTH:
        raise ValueError(f"must have at most {MAX_DEPTH} components")
    return normal


def within(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def refused_path(path: str, files: FilesSettings) -> str | None:
    """Why the policy refuses `path` (a normalized absolute path), or None."""
    for denied in files.denied_paths:
        if within(path, denied):
            return f"{path} is under {denied}, which [files] denied_paths refuses"
    if not any(within(path, allowed) for allowed in files.allowed_paths):
        return f"{path} is outside [files] allowed_paths ({', '.join(files.allowed_paths)})"
    return None


def denied_below(path: str, files: FilesSettings) -> str | None:
    """A denied path inside the directory `path`: its tar would hold it."""
    return next((denied for denied in files.denied_paths if denied != path and within(denied, path)), None)


def check_path(given: str, resolved: str, files: FilesSettings) -> None:
    """403 naming `path` unless the policy admits both the path given and where the engine resolves it to."""
    for path in dict.fromkeys((given, resolved)):
        if (reason := refused_path(path, files)) is not None:
            raise Forbidden(f"path refused: {reason}", errors=[{"field": "path", "message": reason}])


def not_found(path: str) -> NotFound:
    return NotFound(f"no such path in the container: {path}", errors=[{"field": "path", "message": "not found"}])


async def stat(docker: aiodocker.Docker, container_id: str, path: str) -> PathStat | None:
    """The engine's stat of `path` (a symlink's own, with its resolved target); None when nothing is there."""
    try:
        headers = await engine_head(docker, f"containers/{container_id}/archive", {"path": path})
    except DockerError as err:
        if err.status == 404:
            return None
        raise
    return stat_of(headers)


def stat_of(headers: Mapping[str, str]) -> PathStat:
    """The stat in the headers of an archive call; 502 when the engine sent none that parses."""
    try:
        return parse_stat(headers[STAT_HEADER])
    except (KeyError, ValueError) as err:
        raise BadGateway(f"the Docker engine answered without a {STAT_HEADER}: {err}") from None


def prefixes(path: str) -> list[str]:
    """`/a/b/c` as `/a`, `/a/b`, `/a/b/c`."""
    parts = [part for part in path.split("/") if part]
    return ["/" + "/".join(parts[: end + 1]) for end in range(len(parts))]


def resolved_from(path: str, stats: Sequence[PathStat | None]) -> str:
    """Where `path` leads, from the stats of its prefixes: the deepest prefix that is a symlink stands for its
    target (which the engine resolved whole), the rest of the path after it."""
    parts = prefixes(path)
    for depth in range(len(parts) - 1, -1, -1):
        found = stats[depth]
        if found is not None and found.link_target:
            rest = path[len(parts[depth]) :]
            return container_path(found.link_target + rest)
    return path


async def resolve(docker: aiodocker.Docker, container_id: str, path: str) -> tuple[str, PathStat | None]:
    """Where the engine resolves `path` to, and the stat of `path` itself (None: nothing is there).

    The engine's stat follows a symlink among the parents but names only the last component's own target, so
    each prefix is asked (at once): `/tmp/p/x` with `/tmp/p -> /proc` is `/proc/x`."""
    parts = prefixes(path)
    stats = list(await asyncio.gather(*(stat(docker, container_id, part) for part in parts)))
    return resolved_from(path, stats), stats[-1] if stats else await stat(docker, container_id, "/")


@dataclass(frozen=True)
class Checked:
    """What a checked upload will write: its entries and the bytes of their regular files."""

    entries: int
    bytes: int


def _refused(index: int, name: str, reason: str) -> BadRequest:
    return BadRequest(
        f"tar entry {index} ({name!r}) refused: {reason}; nothing was written",
        errors=[{"field": f"entries.{index}", "message": f"{name!r}: {reason}"}],
    )


def _inside(relative: str) -> bool:
    """A normalized relative path that stays inside the extraction root."""
    return relative != ".." and not relative.startswith("../")


def _through_link(relative: str, links: set[str]) -> str | None:
    """The symlink of the archive among the parents of `relative` (a path of the archive), if one is."""
    return next((part for parent in prefixes(relative)[:-1] if (part := parent.lstrip("/")) in links), None)


def _entry_problem(member: tarfile.TarInfo, root: str, files: FilesSettings, links: set[str]) -> str | None:
    name = member.name
    if name.startswith("/"):
        return "an absolute name"
    if ".." in name.split("/"):
        return "a '..' component"
    relative = posixpath.normpath(name)
    if (through := _through_link(relative, links)) is not None:
        return f"it passes through the symlink {through!r} of the same archive"
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            if not within(posixpath.normpath(target), root):
                return f"a symlink to {target}, outside {root}"
            landing = posixpath.normpath(target)
        else:
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
            if not _inside(joined):
                return f"a symlink to {target}, which leaves {root}"
            landing = posixpath.normpath(posixpath.join(root, joined))
        if (reason := refused_path(landing, files)) is not None:
            return f"a symlink to {target}: {reason}"
        links.add(relative)
    elif member.islnk():
        # A hard link's target is a path of the archive, as its entries' names are.
        target = member.linkname
        if target.startswith("/") or ".." in target.split("/"):
            return f"a hard link to {target}, which leaves {root}"
        if (through := _through_link(posixpath.normpath(target), links)) is not None:
            return f"a hard link to {target}, through the symlink {through!r} of the same archive"
        if (reason := refused_path(posixpath.join(root, posixpath.normpath(target)), files)) is not None:
            return f"a hard link to {target}: {reason}"
    elif not (member.isreg() or member.isdir()):
        return "a device, fifo or other special file"
    if relative != "." and (reason := refused_path(posixpath.join(root, relative), files)) is not None:
        return reason
    return None


def checked_copy(upload: IO[bytes], out: IO[bytes], root: str, files: FilesSettings) -> Checked:
    """Every entry of the uploaded tar checked for extraction into `root` (the resolved destination), and
    written again to `out`, so that the engine reads the archive that was checked and not another reading of
    the same bytes (PAX and GNU headers leave room for two parsers to disagree); xattrs and other PAX records
    are not carried. A 400 names the first refused entry (an absolute name, a `..` component, a symlink or hard
    link that leaves `root`, a path through a symlink of the archive, a device or fifo, a path the policy
    refuses). Blocking: run in a thread."""
    entries = size = 0
    links: set[str] = set()
    try:
        with (
            tarfile.open(fileobj=upload, mode="r:") as archive,
            tarfile.open(
                fileobj=out, mode="w:", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
            ) as copy,
        ):
            for index, member in enumerate(archive):
                if (reason := _entry_problem(member, root, files, links)) is not None:
                    raise _refused(index, member.name, reason)
                member.pax_headers = {}
                copy.addfile(member, archive.extractfile(member) if member.isreg() else None)
                entries += 1
                size += member.size if member.isreg() else 0
    except tarfile.TarError as err:
        raise BadRequest(
            f"the body is not an uncompressed tar: {err}", errors=[{"field": "body", "message": "not a tar"}]
        ) from None
    return Checked(entries, size)


def single_file_copy(upload: IO[bytes], out: IO[bytes], name: str, root: str, files: FilesSettings) -> Checked:
    """The uploaded bytes as a tar of one regular file `name` (root's, 0644, now) for extraction into `root`,
    written to `out`; a 400 naming `name` when the policy refuses where it would land. Blocking: run in a
    thread."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = upload.seek(0, 2), 0o644, int(time.time())
    upload.seek(0)
    if (reason := _entry_problem(info, root, files, set())) is not None:
        raise BadRequest(f"name refused: {reason}", errors=[{"field": "name", "message": reason}])
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT, encoding="utf-8") as copy:
        copy.addfile(info, upload)
    return Checked(1, info.size)


def stat_headers(found: PathStat, path: str) -> dict[str, str]:
    """A path's stat as the X-Moorage-File-* headers of a GET or HEAD; names percent-encoded (RFC 3986), so that
    no byte of a file name can break a header."""
    headers = {
        "X-Moorage-File-Path": quote(path, safe=_SAFE),
        "X-Moorage-File-Name": quote(found.name, safe=_SAFE),
        "X-Moorage-File-Type": found.kind,
        "X-Moorage-File-Size": str(found.size),
        "X-Moorage-File-Mode": f"{found.permissions:04o}",
        "X-Moorage-File-Mtime": found.mtime,
    }
    if found.link_target:
        headers["X-Moorage-File-Link-Target"] = quote(found.link_target, safe=_SAFE)
    return headers
