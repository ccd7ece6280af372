"""The pure parts of /files: paths as given, where a path leads from its prefixes' stats, and the file read out
of a tar as it streams (the engine's, whatever headers come before the file)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator

import pytest

from moorage.containers.files import PathStat, container_path, resolved_from
from moorage.engine.archive import first_file
from moorage.errors import BadGateway


def link(target: str) -> PathStat:
    return PathStat("x", 1, 1 << 27 | 0o777, "2026-01-01T00:00:00Z", target)


def test_a_path_is_normalized_and_dot_dot_refused() -> None:
    assert container_path("//etc/./hostname/") == "/etc/hostname"
    assert container_path("/") == "/"
    for bad in ("etc", "/a/../b", "/a/..", "/a\x00b", "/" + "a/" * 70):
        with pytest.raises(ValueError):
            container_path(bad)


def test_the_deepest_symlink_among_the_prefixes_decides() -> None:
    assert resolved_from("/tmp/p/x", [None, link("/proc"), None]) == "/proc/x"
    assert resolved_from("/a/b/c", [link("/x"), link("/y/z"), None]) == "/y/z/c"
    assert resolved_from("/a/b", [None, None]) == "/a/b"


async def chunked(data: bytes, size: int = 700) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def tar_of(name: str, data: bytes, fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
async def test_the_file_comes_out_of_the_tar_past_its_headers(fmt: int) -> None:
    data = bytes(range(256)) * 40
    name = "n" * (150 if fmt != tarfile.USTAR_FORMAT else 50)
    size, body = await first_file(chunked(tar_of(name, data, fmt)))
    assert size == len(data)
    assert b"".join([chunk async for chunk in body]) == data


async def test_a_tar_that_holds_no_file_or_ends_early() -> None:
    out = io.BytesIO()
    directory = tarfile.TarInfo("dir")
    directory.type = tarfile.DIRTYPE
    with tarfile.open(fileobj=out, mode="w") as archive:
        archive.addfile(directory)
    with pytest.raises(BadGateway):
        await first_file(chunked(out.getvalue()))
    with pytest.raises(BadGateway):
        await first_file(chunked(b"\0" * 100))
    _, body = await first_file(chunked(tar_of("f", b"x" * 5000, tarfile.PAX_FORMAT)[:2000]))
    with pytest.raises(ValueError, match="ended"):
        _ = [chunk async for chunk in body]
