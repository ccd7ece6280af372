"""The layers as the import contracts in pyproject.toml state them, and what import-linter cannot say: only the
HTTP edge (web/, api/, the app factory, the daemon's runner) sees aiohttp's server side. The engine's layer
uses aiohttp's client, so the forbidden contract cannot name aiohttp there; this test does."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from ..helpers import ROOT

SRC = ROOT / "src"
EDGE = ("moorage.web", "moorage.api", "moorage.app", "moorage.daemon")
SERVER_SIDE = ("aiohttp.web", "aiohttp.web_request", "aiohttp.web_response", "aiohttp.typedefs")


def server_side_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith(SERVER_SIDE)]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module.startswith(SERVER_SIDE):
                found.append(node.module)
            elif node.module == "aiohttp":
                found += [f"aiohttp.{a.name}" for a in node.names if f"aiohttp.{a.name}".startswith(SERVER_SIDE)]
    return found


def test_only_the_edge_sees_aiohttp_server_side() -> None:
    offenders = {}
    for path in (SRC / "moorage").rglob("*.py"):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith(EDGE):
            continue
        if found := server_side_imports(path):
            offenders[module] = found
    assert offenders == {}


def test_the_check_sees_an_import_of_aiohttp_web(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from aiohttp import hdrs, web\nimport aiohttp.web_request\n")
    assert server_side_imports(module) == ["aiohttp.web", "aiohttp.web_request"]


def test_the_import_contracts_are_kept() -> None:
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert linter is not None, "import-linter is a test dependency (pyproject.toml)"
    done = subprocess.run([linter], cwd=SRC.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:]
