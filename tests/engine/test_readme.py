"""The README's examples work as written against a running daemon (only the daemon's port differs)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiodocker
import pytest

from ..helpers import ROOT, Daemon

EXAMPLES = (ROOT / "README.md").read_text().split("## Examples", 1)[1].split("\n## ", 1)[0]
EXAMPLE_NAME = "test-container"
EXAMPLE_PORT = 8080


def block(language: str) -> str:
    [code] = re.findall(rf"```{language}\n(.*?)```", EXAMPLES, re.S)
    return code


@pytest.fixture
async def daemon(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon], docker: aiodocker.Docker
) -> AsyncIterator[tuple[Daemon, str]]:
    started = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\n')
    key = started.generated_key()
    yield started, key
    try:
        await docker.containers.container(EXAMPLE_NAME).delete(force=True)
    except aiodocker.DockerError as err:
        if err.status != 404:
            raise


def run_example(command: list[str], code: str, daemon: tuple[Daemon, str]) -> str:
    started, key = daemon
    code = code.replace("localhost:8000", f"localhost:{started.port}")
    done = subprocess.run(
        [*command, code], capture_output=True, text=True, timeout=60, env={"MOORAGE_KEY": key, "PATH": "/usr/bin:/bin"}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def served_page() -> str:
    deadline = time.monotonic() + 5
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{EXAMPLE_PORT}/index.html", timeout=1) as page:
                return page.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def test_curl_examples(daemon: tuple[Daemon, str], docker: aiodocker.Docker) -> None:
    out = run_example(["bash", "-euo", "pipefail", "-c"], block("bash"), daemon)
    assert '"code":201' in out and f'"name":"{EXAMPLE_NAME}"' in out
    assert out.count('"code":200') == 4
    with pytest.raises(aiodocker.DockerError):
        await docker.containers.container(EXAMPLE_NAME).show()


async def test_python_example_creates_a_container_that_serves(daemon: tuple[Daemon, str]) -> None:
    out = run_example([sys.executable, "-c"], block("python"), daemon)
    assert "'code': 201" in out and "'running': True" in out
    assert "moorage test page" in served_page()
