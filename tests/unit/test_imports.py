"""Every module of moorage imports alone, as in a fresh interpreter: no import cycle holds only because of the order
in which other modules happened to be imported first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..helpers import ROOT

SRC = ROOT / "src"
MODULES = sorted(
    ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for path in (SRC / "moorage").rglob("*.py")
)
SCRIPT = Path(__file__).with_name("imports_alone.py")


def imports_alone(package: str, modules: list[str], path: Path | None = None) -> dict[str, str | None]:
    """The error of importing each of `modules` (of `package`) alone, or None. Each is imported in a child forked
    from an interpreter that has imported what the modules import from outside `package` and nothing of it
    (imports_alone.py): `path` is put before the others on its sys.path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path or ""), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-P", str(SCRIPT), package, *modules], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    errors: dict[str, str | None] = json.loads(done.stdout.splitlines()[-1])
    return errors


def test_the_modules_are_found() -> None:
    assert {"moorage", "moorage.config.loader", "moorage.app", "moorage.api.containers"} <= set(MODULES)


def test_every_module_imports_alone() -> None:
    failures = imports_alone("moorage", MODULES)
    assert list(failures) == MODULES
    assert {module: error for module, error in failures.items() if error} == {}


def test_a_module_that_cannot_import_alone_is_named() -> None:
    failures = imports_alone("moorage", ["moorage.settings", "moorage.no_such_module"])
    assert failures["moorage.settings"] is None
    assert "ModuleNotFoundError: No module named 'moorage.no_such_module'" in str(failures["moorage.no_such_module"])


def test_a_cycle_that_holds_only_in_one_order_is_found_whatever_went_first(tmp_path: Path) -> None:
    # pkg.b alone imports pkg.a, which finds pkg.b half made but needs nothing of it yet: fine. pkg.a alone imports
    # pkg.b, which wants a name pkg.a has not defined yet. After pkg.b, pkg.a imports in one interpreter.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("import pkg.b\n\nVALUE = 1\n")
    (tmp_path / "pkg" / "b.py").write_text("from pkg.a import VALUE\n")
    failures = imports_alone("pkg", ["pkg.b", "pkg.a"], path=tmp_path)
    assert failures["pkg.b"] is None
    assert "ImportError: cannot import name 'VALUE' from partially initialized module 'pkg.a'" in str(failures["pkg.a"])
