"""The engine's tar of one file (a container's archive API), read as it streams: the file's size and its bytes,
past the PAX and GNU headers before it, so that a download is never held whole."""

from __future__ import annotations

import tarfile
from collections.abc import AsyncIterator

from moorage.errors import BadGateway

_BLOCK = 512
_MAX_EXTENDED_HEADER = 1024 * 1024  # bytes of a PAX or GNU header before the file


class _Blocks:
    """An async byte stream read in exact amounts (tar headers), then passed on as it comes."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._held = b""

    async def read(self, count: int) -> bytes:
        while len(self._held) < count:
            chunk = await anext(self._chunks, b"")
            if not chunk:
                raise ValueError("the engine's tar ended in the middle of an entry")
            self._held += chunk
        out, self._held = self._held[:count], self._held[count:]
        return out

    async def passed_on(self, count: int) -> AsyncIterator[bytes]:
        """The next `count` bytes, as they come."""
        if self._held:
            out, self._held = self._held[:count], self._held[count:]
            count -= len(out)
            yield out
        while count > 0:
            chunk = await anext(self._chunks, b"")
            if not chunk:
                raise ValueError("the engine's tar ended in the middle of the file")
            out, self._held = chunk[:count], chunk[count:]
            count -= len(out)
            yield out


def _pax_records(data: bytes) -> dict[str, str]:
    """A PAX extended header's `length key=value\\n` records."""
    records: dict[str, str] = {}
    while data:
        length, _, rest = data.partition(b" ")
        record, data = rest[: int(length) - len(length) - 1], data[int(length) :]
        key, _, value = record.rstrip(b"\n").partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
    return records


async def first_file(chunks: AsyncIterator[bytes]) -> tuple[int, AsyncIterator[bytes]]:
    """The size and the bytes (as they stream) of the regular file the engine's tar of a file holds, read past
    the PAX and GNU headers before it; 502 when the tar holds no regular file first (a file replaced since its
    stat, or a tar that does not parse). A tar that ends within the file fails its stream (ValueError)."""
    try:
        return await _first_file(_Blocks(chunks))
    except (ValueError, tarfile.TarError) as err:
        raise BadGateway(f"the Docker engine's tar of the file cannot be read: {err}") from None


async def _first_file(blocks: _Blocks) -> tuple[int, AsyncIterator[bytes]]:
    size: int | None = None  # a PAX header's, which holds a size past the header's 8 GiB
    while True:
        header = tarfile.TarInfo.frombuf(await blocks.read(_BLOCK), "utf-8", "surrogateescape")
        if header.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            if header.size > _MAX_EXTENDED_HEADER:
                raise ValueError(f"an extended header of {header.size} bytes")
            data = (await blocks.read(header.size + -header.size % _BLOCK))[: header.size]
            if header.type == tarfile.XHDTYPE and "size" in (records := _pax_records(data)):
                size = int(records["size"])
            continue
        if not header.isreg():
            raise ValueError(f"it holds a {header.type!r} entry, not the file")
        size = header.size if size is None else size
        return size, blocks.passed_on(size)
