"""The README's examples work as written against a running daemon (only the port differs)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ROOT, Daemon, MakeContainer

EXAMPLES = (ROOT / "README.md").read_text().split("## Examples", 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", EXAMPLES, re.S)


@pytest.fixture
def daemon(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> tuple[Daemon, str]:
    started = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\n')
    [key] = [word for word in started.output().split() if word.startswith("mrg_")]
    return started, key


def run_example(kind: list[str], code: str, daemon: tuple[Daemon, str]) -> str:
    started, key = daemon
    code = code.replace("localhost:8000", f"localhost:{started.port}")
    done = subprocess.run([*kind, code], capture_output=True, text=True, timeout=60, env={"MOORAGE_KEY": key, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("index", range(len(blocks("bash"))))
async def test_curl_examples(daemon: tuple[Daemon, str], make_container: MakeContainer, index: int) -> None:
    await make_container(start=True, labels={"app": "web"})
    out = run_example(["bash", "-euo", "pipefail", "-c"], blocks("bash")[index], daemon)
    assert '"code":200' in out and '"message":"success"' in out


async def test_python_example(daemon: tuple[Daemon, str], make_container: MakeContainer) -> None:
    made = await make_container(start=True)
    [code] = blocks("python")
    out = run_example([sys.executable, "-c"], code, daemon)
    assert "'code': 200" in out and "'running': True" in out
    assert made["Id"] in out or made["Name"].lstrip("/") in out
