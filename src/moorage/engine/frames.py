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


class CutLine(bytes):
    """A run of one line that was longer than max_line_bytes: its first max_line_bytes (its timestamp aside),
    CUT_MARK and a newline, as a text log shows it. The rest of the line is dropped as it comes, never held.

    A run of its own, so that finding it costs one type check per run, not a look at every line."""


CUT_MARK = " \u2026 [cut]".encode()
# The engine's timestamp (RFC 3339 with nanoseconds and a zone) and its space are within this.
_STAMP_ROOM = 40


class LineJoiner:
    """One stream's frames as runs of whole lines; the unfinished tail waits for the next frames.

    With timestamps, the engine stamps every piece of a line it stored in pieces (lines over 16 KiB):
    a piece that continues a line loses its stamp, so the joined line carries the first one only.
    A line longer than max_line bytes (its stamp aside) is cut there, as a CutLine, and the rest of it is
    dropped as it comes: a container that never writes a newline makes moorage hold max_line bytes, not its
    whole output. Lines are only looked at one by one in a run longer than max_line, and then by C-level
    searches that jump max_line bytes at a time.
    """

    def __init__(self, max_line: int, stamped: bool, framed: bool) -> None:
        self._max_line = max_line
        self._stamped = stamped  # each line begins with the engine's timestamp and a space
        self._unstamp_pieces = stamped and framed  # pieces come as frames, each with its own stamp
        self._partial = b""
        self._open = False  # the last piece did not end its line
        self._dropping = False  # the current line was cut: its rest is dropped up to its newline

    def feed(self, pieces: Sequence[bytes | memoryview]) -> list[bytes]:
        if self._unstamp_pieces:
            pieces = [self._unstamp(bytes(piece)) for piece in pieces]
        data = b"".join(pieces)
        if self._dropping:
            rest = data.find(b"\n")
            if rest < 0:
                return []
            self._dropping, data = False, data[rest + 1 :]
        end = data.rfind(b"\n")
        if end < 0:
            self._partial += data
            return self._cut_partial()
        whole = self._partial + data[: end + 1] if self._partial else data[: end + 1]
        self._partial = data[end + 1 :]
        runs = self._cut_long(whole) if len(whole) > self._max_line else [whole]
        if len(self._partial) > self._max_line:
            runs += self._cut_partial()
        return runs

    def _cut_long(self, data: bytes) -> list[bytes]:
        """The run with each line longer than max_line as a CutLine of its own; the lines between unchanged.

        Each search looks back from max_line bytes ahead for a newline: finding one clears every line up
        to it at once, so a run of short lines costs a search per max_line bytes."""
        runs: list[bytes] = []
        kept = line = 0  # where the lines not yet in runs begin; where the line under scrutiny begins
        size = len(data)
        while size - line > self._max_line:
            newline = data.rfind(b"\n", line, line + self._max_line + 1)
            if newline >= 0:
                line = newline + 1
                continue
            end = data.find(b"\n", line)  # a run ends with a newline
            if cut := self._cut(data, line, end):
                if line > kept:
                    runs.append(data[kept:line])
                runs.append(cut)
                kept = end + 1
            line = end + 1
        if kept < size:
            runs.append(data[kept:] if kept else data)
        return runs

    def _cut_partial(self) -> list[bytes]:
        """The unfinished line, cut as soon as it is longer than max_line; its rest is then dropped as it comes."""
        if len(self._partial) <= self._max_line or not (cut := self._cut(self._partial, 0, len(self._partial))):
            return []
        self._partial, self._dropping = b"", True
        return [cut]

    def _cut(self, data: bytes, start: int, end: int) -> CutLine | None:
        """data[start:end], one line without its newline, as a CutLine if it is longer than max_line after
        its stamp; the cut falls before a UTF-8 character that would not fit whole."""
        text = start
        if self._stamped:
            stamp_end = data.find(b" ", start, min(end, start + _STAMP_ROOM))
            if stamp_end < 0 and end - start < _STAMP_ROOM:
                return None  # an unfinished line whose stamp has not all come yet
            text = stamp_end + 1 or start
        if end - text <= self._max_line:
            return None
        cut = text + self._max_line
        for _ in range(3):
            if data[cut] & 0xC0 != 0x80:  # not a continuation byte: a character begins here
                break
            cut -= 1
        return CutLine(data[start:cut] + CUT_MARK + b"\n")

    def _unstamp(self, piece: bytes) -> bytes:
        if self._open:
            piece = piece[piece.find(b" ") + 1 :]
        self._open = not piece.endswith(b"\n")
        return piece

    def flush(self) -> bytes:
        """The last line of a stream that did not end with a newline, given one."""
        rest, self._partial = self._partial, b""
        return rest + b"\n" if rest else b""


async def whole_lines(
    chunks: AsyncIterator[bytes], tty: bool, stamped: bool, max_line: int
) -> AsyncIterator[tuple[int, bytes]]:
    """(stream, a run of whole lines) from the engine's log stream, in the order the engine sent them; a line
    longer than max_line is a CutLine run of its own.

    Consecutive frames of one stream in a read are joined into one run: the engine sends a frame per
    line, and work per line is what must be avoided.
    """
    demuxer = None if tty else Demuxer()
    # A TTY's stream is not framed, so there are no pieces to tell apart.
    joiners = {name: LineJoiner(max_line, stamped, framed=not tty) for name in (STDOUT, STDERR)}
    async for chunk in chunks:
        runs = [(STDOUT, [chunk])] if demuxer is None else demuxer.feed(chunk)
        for stream, pieces in runs:
            joiner = joiners.get(stream)
            if joiner is None:  # stdin (0) or a stream type this engine version invented: not a log line
                continue
            for lines in joiner.feed(pieces):
                yield stream, lines
    for stream, joiner in joiners.items():
        if rest := joiner.flush():
            yield stream, rest


def fitting(run: bytes, room: int) -> bytes:
    """The whole lines at the start of the run that fit in `room` bytes (none if its first line does not)."""
    if len(run) <= room:
        return run
    return b"" if isinstance(run, CutLine) else run[: run.rfind(b"\n", 0, max(room, 0)) + 1]


def first_line(run: bytes) -> bytes:
    """The run's first line: the one a page holds even when it alone is over the page's bytes."""
    return run if isinstance(run, CutLine) else run[: run.find(b"\n") + 1]


@dataclass(frozen=True, slots=True)
class LogLine:
    stream: str
    timestamp: str | None
    line: str


@dataclass(frozen=True, slots=True)
class CutLogLine(LogLine):
    """A LogLine that was cut at max_line_bytes: its items say `cut: true`, those of other lines say nothing."""


def split_lines(stream: int, run: bytes, timestamps: bool) -> Iterator[LogLine]:
    """A run of whole lines as LogLines; with timestamps, the engine's RFC 3339 prefix is split off.

    Bytes that are not UTF-8 are replaced, and a TTY's carriage return is dropped from the line's end.
    A CutLine is one CutLogLine, without its mark.
    """
    name = STREAM_NAMES[stream]
    if isinstance(run, CutLine):
        text, stamp = run[: -len(CUT_MARK) - 1].decode("utf-8", "replace"), None
        if timestamps:
            stamp, _, text = text.partition(" ")
        yield CutLogLine(name, stamp, text)
        return
    for raw in run.decode("utf-8", "replace").split("\n")[:-1]:
        text = raw[:-1] if raw.endswith("\r") else raw
        if timestamps:
            stamp, _, text = text.partition(" ")
            yield LogLine(name, stamp, text)
        else:
            yield LogLine(name, None, text)
