"""Reading the engine's log stream: demultiplexing its frames and cutting them into whole lines.

A container without a TTY gets a multiplexed stream: frames of an 8-byte header (stream type, three
zero bytes, a big-endian payload length) and the payload. A TTY container's stream is the raw
bytes. Frames and reads cut lines anywhere, so each stream keeps its own unfinished line. The work
is per chunk, not per line, where the output allows it: dumping millions of lines must cost about
what the engine's own socket costs.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

STDOUT, STDERR = 1, 2
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
# Stream type, three zero bytes, payload length (big-endian).
_HEADER = struct.Struct(">BxxxL")
MAX_LINE = 1024 * 1024


class Demuxer:
    """Docker's multiplexed stream into runs of (stream, payloads) of consecutive frames of one stream.

    The payloads are views into the read, not copies, and the header is read with one struct call:
    this loop runs once per line the container wrote.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[tuple[int, list[memoryview]]]:
        buf = self._pending + data if self._pending else data
        view = memoryview(buf)
        unpack = _HEADER.unpack_from
        runs: list[tuple[int, list[memoryview]]] = []
        current, parts = -1, []
        pos, end = 0, len(buf)
        while end - pos >= _HEADER.size:
            stream, size = unpack(buf, pos)
            start = pos + _HEADER.size
            stop = start + size
            if stop > end:
                break
            if stream != current:
                current, parts = stream, []
                runs.append((stream, parts))
            parts.append(view[start:stop])
            pos = stop
        self._pending = bytes(view[pos:])
        return runs


class LineJoiner:
    """One stream's frames as runs of whole lines; the unfinished tail waits for the next frames.

    With timestamps, the engine stamps every piece of a line it stored in pieces (lines over 16 KiB):
    a piece that continues a line loses its stamp, so the joined line carries the first one only.
    """

    def __init__(self, stamped: bool) -> None:
        self._partial = b""
        self._stamped = stamped
        self._open = False  # the last piece did not end its line

    def feed(self, pieces: Sequence[bytes | memoryview]) -> bytes:
        if self._stamped:
            pieces = [self._unstamp(bytes(piece)) for piece in pieces]
        data = b"".join(pieces)
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial += data
            return self._overlong()
        whole = self._partial + data[: cut + 1] if self._partial else data[: cut + 1]
        self._partial = data[cut + 1 :]
        return whole

    def _overlong(self) -> bytes:
        """A line longer than MAX_LINE is cut there: a container that never writes a newline must not
        make moorage hold its whole output."""
        if len(self._partial) <= MAX_LINE:
            return b""
        cut, self._partial = self._partial, b""
        return cut + b"\n"

    def _unstamp(self, piece: bytes) -> bytes:
        if self._open:
            piece = piece[piece.find(b" ") + 1 :]
        self._open = not piece.endswith(b"\n")
        return piece

    def flush(self) -> bytes:
        """The last line of a stream that did not end with a newline, given one."""
        rest, self._partial = self._partial, b""
        return rest + b"\n" if rest else b""


async def whole_lines(chunks: AsyncIterator[bytes], tty: bool, stamped: bool) -> AsyncIterator[tuple[int, bytes]]:
    """(stream, a run of whole lines) from the engine's log stream, in the order the engine sent them.

    Consecutive frames of one stream in a read are joined into one run: the engine sends a frame per
    line, and work per line is what must be avoided.
    """
    demuxer = None if tty else Demuxer()
    # A TTY's stream is not framed, so there are no pieces to tell apart.
    joiners = {STDOUT: LineJoiner(stamped and not tty), STDERR: LineJoiner(stamped and not tty)}
    async for chunk in chunks:
        runs = [(STDOUT, [chunk])] if demuxer is None else demuxer.feed(chunk)
        for stream, pieces in runs:
            joiner = joiners.get(stream)
            if joiner is None:  # stdin (0) or a stream type this engine version invented: not a log line
                continue
            if lines := joiner.feed(pieces):
                yield stream, lines
    for stream, joiner in joiners.items():
        if rest := joiner.flush():
            yield stream, rest


@dataclass(frozen=True, slots=True)
class LogLine:
    stream: str
    timestamp: str | None
    line: str


def split_lines(stream: int, run: bytes, timestamps: bool) -> Iterator[LogLine]:
    """A run of whole lines as LogLines; with timestamps, the engine's RFC 3339 prefix is split off.

    Bytes that are not UTF-8 are replaced, and a TTY's carriage return is dropped from the line's end.
    """
    name = STREAM_NAMES[stream]
    for raw in run.decode("utf-8", "replace").split("\n")[:-1]:
        text = raw[:-1] if raw.endswith("\r") else raw
        if timestamps:
            stamp, _, text = text.partition(" ")
            yield LogLine(name, stamp, text)
        else:
            yield LogLine(name, None, text)
