"""Every module of moorage imports alone, in a fresh interpreter: no import cycle holds only because of the order
in which other modules happened to be imported first."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..helpers import ROOT

SRC = ROOT / "src"
MODULES = sorted(
    ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for path in (SRC / "moorage").rglob("*.py")
)


def test_the_modules_are_found() -> None:
    assert {"moorage", "moorage.config", "moorage.app", "moorage.api.containers"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_a_module_imports_alone(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
