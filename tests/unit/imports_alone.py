"""Run as a script by test_imports.py, in an interpreter of its own: `python -P imports_alone.py PACKAGE MODULE...`
imports each MODULE of PACKAGE in a child forked for it alone and prints, as JSON, each module's error (its
output, with the traceback) or null.

Before the first fork this interpreter imports what PACKAGE's modules import from outside it (aiohttp,
marshmallow, ...: the names a throwaway child finds in sys.modules after importing every MODULE), and nothing of
PACKAGE itself. So each child starts as a fresh interpreter would as far as PACKAGE is concerned, and spends its
time on PACKAGE's own code: a fresh interpreter per module spent three quarters of its time importing the others
again. What a child cannot see is a module that uses another package's submodule without importing it
(`aiohttp.web` after a bare `import aiohttp`), which works only where something else imported it: this checks
the order of PACKAGE's own imports."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import IO


def _own(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _fork(run: Callable[..., object], *args: str) -> tuple[int, IO[bytes]]:
    """A child running `run(*args)` with its output in a temporary file: its pid and the file. An exception is
    the child's traceback and exit status 1."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _ended, once the child has ended)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never back into the parent's code, its buffers or its atexit
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        status = 0
        try:
            run(*args)
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return pid, out


def _ended(out: IO[bytes], wait_status: int) -> tuple[int, str]:
    """The exit status and the output of a child that has ended."""
    with out:
        out.seek(0)
        return os.waitstatus_to_exitcode(wait_status), out.read().decode(errors="replace")


def _outside_names(package: str, *modules: str) -> None:
    """Print, as the last line, the modules from outside `package` that importing all of `modules` imports."""
    for module in modules:
        with contextlib.suppress(Exception):  # the module's own child reports it
            importlib.import_module(module)
    print(json.dumps([name for name in sys.modules if not _own(name, package) and name != "__main__"]))


def main(package: str, modules: list[str]) -> None:
    pid, out = _fork(_outside_names, package, *modules)
    _, names = _ended(out, os.waitpid(pid, 0)[1])
    for name in json.loads(names.splitlines()[-1]):
        with contextlib.suppress(Exception):  # only a head start: a child imports what it needs anyway
            importlib.import_module(name)
    preloaded = sorted(name for name in sys.modules if _own(name, package))
    assert not preloaded, f"the parent imported {preloaded}"
    # As many children at once as there are cores: each is busy importing from its start to its end.
    jobs = len(os.sched_getaffinity(0))
    pending = list(modules)
    running: dict[int, tuple[str, IO[bytes]]] = {}
    errors: dict[str, str | None] = {}
    while pending or running:
        if pending and len(running) < jobs:
            module = pending.pop(0)
            pid, out = _fork(importlib.import_module, module)
            running[pid] = (module, out)
            continue
        pid, wait_status = os.wait()
        module, out = running.pop(pid)
        status, output = _ended(out, wait_status)
        errors[module] = None if status == 0 else output or f"exit status {status}"
    print(json.dumps({module: errors[module] for module in modules}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
