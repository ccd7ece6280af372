"""--profile: py-spy records moorage during each scenario; the stacks go to a file and the hottest frames
are summed up beside them, so that a missed target comes with where moorage spent its time."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOP = 15


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


@contextmanager
def profiled(directory: Path | None, name: str, pid: int) -> Iterator[None]:
    """Collapsed stacks of `pid` while the block runs, in DIRECTORY/NAME.txt (flamegraph.pl and speedscope
    read them), and DIRECTORY/NAME.top.txt: the frames most often on top of the stack, then in it."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    stacks = directory / f"{name}.txt"
    # Non-blocking: moorage is not paused for each sample, so the profile costs it next to nothing.
    command = [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--nonblocking"]
    recorder = subprocess.Popen([*command, "--output", str(stacks)], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        recorder.wait(timeout=60)
        if stacks.exists():
            (directory / f"{name}.top.txt").write_text(summary(stacks.read_text()))


def summary(collapsed: str) -> str:
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        own[frames[-1]] += int(count)
        for frame in set(frames):
            within[frame] += int(count)
    total = sum(own.values()) or 1
    parts = []
    for title, counter in (("own time (on top of the stack)", own), ("total time (anywhere in the stack)", within)):
        parts.append(f"{title}, of {total} samples:")
        parts += [f"{count / total:7.1%}  {frame}" for frame, count in counter.most_common(TOP)]
    return "\n".join(parts) + "\n"
