"""A zip written as it is made, for downloads of many files: stdlib zipfile, which writes to a stream it cannot
seek by putting each entry's sizes and CRC after its data, into a spool drained after every write."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import AsyncIterator

ZIP = "application/zip"


class _Spool(io.RawIOBase):
    """Where zipfile writes; `drained` hands over what it wrote so far. Not seekable, so zipfile never seeks."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def drained(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


async def zipped(entries: AsyncIterator[tuple[str, AsyncIterator[bytes]]]) -> AsyncIterator[bytes]:
    """A zip of each (name, chunks) entry in turn, deflated at level 1 (logs pack about tenfold even so), with
    ZIP64 sizes so that an entry may be of any size."""
    spool = _Spool()
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        async with contextlib.aclosing(entries):
            async for name, chunks in entries:
                with archive.open(name, "w", force_zip64=True) as entry:
                    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                        async for chunk in chunks:
                            entry.write(chunk)
                            if out := spool.drained():
                                yield out
                if out := spool.drained():
                    yield out
    yield spool.drained()
