"""`download=true` against the real engine, read by curl: a file named for its window, gzipped when asked, equal to
what `docker logs` gives for the same window, and nothing else in it (no heartbeat, no end line)."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import subprocess
from pathlib import Path

import aiodocker
from aiohttp.test_utils import TestClient

from ..helpers import MakeContainer, finished, inspected

LINES = 20_000
SCRIPT = f'i=0; while [ $i -lt {LINES} ]; do echo "line $i of the log"; i=$((i+1)); done'
COMPACT = r"[0-9]{8}T[0-9]{6}Z"


async def curl(client: TestClient, api_key: str, path: str, tmp_path: Path, *flags: str) -> tuple[str, bytes]:
    """The response headers and the body, exactly as curl saved them (not decoded unless a flag says so)."""
    head, body = tmp_path / "head", tmp_path / "body"
    cmd = ["curl", "-sS", "-f", "-D", str(head), "-o", str(body), "-H", f"X-API-Key: {api_key}", *flags]
    proc = await asyncio.create_subprocess_exec(*cmd, str(client.make_url(path)))
    assert await proc.wait() == 0
    return head.read_text(), body.read_bytes()


def header(head: str, name: str) -> str | None:
    found = re.search(rf"^{name}: (.*?)\r?$", head, re.IGNORECASE | re.MULTILINE)
    return found[1] if found else None


def docker_logs(container: str, *flags: str) -> bytes:
    return subprocess.run(["docker", "logs", *flags, container], capture_output=True, check=True).stdout


def compact(engine_time: str) -> str:
    return re.sub(r"[-:]", "", engine_time[:19]) + "Z"


async def test_a_download_is_the_whole_log_named_for_its_window_gzipped_when_accepted(
    client: TestClient, api_key: str, make_container: MakeContainer, docker: aiodocker.Docker, tmp_path: Path
) -> None:
    container = await finished(make_container, docker, SCRIPT)
    details = inspected(container)
    path = f"/api/v1/containers/{container}/logs?download=true"
    head, body = await curl(client, api_key, path, tmp_path, "-H", "Accept-Encoding: gzip")
    assert header(head, "Content-Encoding") == "gzip"
    assert gzip.decompress(body) == docker_logs(container)
    assert len(body) < len(docker_logs(container)) / 3
    name = details["Name"].lstrip("/")
    disposition = header(head, "Content-Disposition")
    assert disposition is not None
    named = rf'attachment; filename="{re.escape(name)}-{compact(details["Created"])}-{COMPACT}\.log"'
    assert re.fullmatch(named, disposition)
    head, body = await curl(client, api_key, path, tmp_path)
    assert header(head, "Content-Encoding") is None
    assert body == docker_logs(container)


async def test_a_downloaded_window_in_ndjson_holds_its_lines_and_nothing_else(
    client: TestClient, api_key: str, make_container: MakeContainer, docker: aiodocker.Docker, tmp_path: Path
) -> None:
    container = await finished(make_container, docker, SCRIPT)
    stamped = docker_logs(container, "--timestamps").decode().splitlines()
    since, until = stamped[100].split()[0], stamped[5000].split()[0]
    window = docker_logs(container, "--since", since, "--until", until).decode().splitlines()
    query = f"download=true&format=ndjson&since={since}&until={until}&grep=7$"
    head, body = await curl(client, api_key, f"/api/v1/containers/{container}/logs?{query}", tmp_path, "--compressed")
    items = [json.loads(line) for line in body.decode().splitlines()]
    assert [item["line"] for item in items] == [line for line in window if line.endswith("7")]
    assert all(set(item) == {"stream", "timestamp", "line"} for item in items)  # no heartbeat, no end line
    disposition = header(head, "Content-Disposition")
    assert disposition is not None and disposition.endswith(f'-{compact(since)}-{compact(until)}.ndjson"')
