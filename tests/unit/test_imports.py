"""Every module of moorage imports alone, in a fresh interpreter: no import cycle holds only because of the order
in which other modules happened to be imported first."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from ..helpers import ROOT

SRC = ROOT / "src"
MODULES = sorted(
    ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for path in (SRC / "moorage").rglob("*.py")
)


def import_alone(module: str) -> str | None:
    """The error of importing `module` in an interpreter of its own, or None."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    return None if done.returncode == 0 else done.stderr


def test_the_modules_are_found() -> None:
    assert {"moorage", "moorage.config.loader", "moorage.app", "moorage.api.containers"} <= set(MODULES)


def test_every_module_imports_alone() -> None:
    # Interpreters side by side: each spends most of its time importing aiohttp and marshmallow, one at a time
    # that was a quarter of the unit tests' minute.
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = dict(zip(MODULES, pool.map(import_alone, MODULES), strict=True))
    assert {module: error for module, error in failures.items() if error} == {}


def test_a_module_that_cannot_import_alone_is_named() -> None:
    assert import_alone("moorage.no_such_module") is not None
