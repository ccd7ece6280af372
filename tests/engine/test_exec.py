"""POST /containers/{id}/exec: one command in a running container, its output apart by stream, its exit code, and
a command that outlives its timeout or its caller killed (issue 16)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from ..helpers import MakeContainer, app_client, assert_error, docker_cli, key_headers

ADMIN = key_headers("admin-key")
# The container's own command, which no exec below runs: a process list shows the exec's apart from it.
IDLE = ["sleep", "3600"]


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, exec={"max_timeout": 30, "max_output": 4096})


@pytest.fixture
async def running(make_container: MakeContainer) -> str:
    return str((await make_container(cmd=IDLE, start=True))["Id"])


async def run(api: TestClient, container: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post(f"/api/v1/containers/{container}/exec", json=body, headers=ADMIN)
    answer = await resp.json()
    assert resp.status == 200, answer
    return dict(answer["data"])


def processes(container: str) -> str:
    return docker_cli("exec", container, "ps", "-o", "args")


async def gone(container: str, command: str) -> bool:
    """Whether `command` leaves the container's process list within a few seconds."""
    for _ in range(100):
        if command not in processes(container):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_output_and_exit_codes_as_a_shell_gives_them(api: TestClient, running: str) -> None:
    hi = await run(api, running, {"command": ["echo", "hi"]})
    assert (hi["exit_code"], hi["stdout"], hi["stderr"], hi["timed_out"], hi["truncated"]) == (
        0,
        "hi\n",
        "",
        False,
        False,
    )
    assert hi["duration"] > 0
    three = await run(api, running, {"command": "echo out; echo err >&2; exit 3"})
    assert (three["exit_code"], three["stdout"], three["stderr"]) == (3, "out\n", "err\n")
    missing = await run(api, running, {"command": ["no-such-program"]})
    assert missing["exit_code"] == 127 and missing["stdout"] == ""
    assert "no-such-program" in missing["stderr"]
    nowhere = await run(api, running, {"command": ["true"], "working_dir": "/no/such/dir"})
    assert nowhere["exit_code"] == 126  # the engine's: it could not start, and not for want of the program


async def test_stdin_environment_user_and_working_dir_reach_the_command(api: TestClient, running: str) -> None:
    piped = await run(api, running, {"command": ["cat"], "stdin": "line one\nline two\n"})
    assert piped["stdout"] == "line one\nline two\n"
    body = {"command": 'id -u; pwd; echo "$GREETING"', "environment": {"GREETING": "hello"}}
    asked = await run(api, running, {**body, "user": "65534", "working_dir": "/tmp"})
    assert asked["stdout"].split("\n")[:3] == ["65534", "/tmp", "hello"]


async def test_bytes_that_are_not_utf8_are_replaced_or_given_as_base64(api: TestClient, running: str) -> None:
    command = {"command": r"printf 'a\377b'"}
    assert (await run(api, running, command))["stdout"] == "a\ufffdb"
    raw = await run(api, running, {**command, "encoding": "base64"})
    assert (raw["encoding"], base64.b64decode(raw["stdout"])) == ("base64", b"a\xffb")


async def test_output_past_max_output_is_cut_and_said(api: TestClient, running: str) -> None:
    capped = await run(api, running, {"command": "yes | head -c 100000; echo done >&2", "max_output": 1000})
    assert capped["truncated"] is True and capped["exit_code"] == 0
    assert len(capped["stdout"]) + len(capped["stderr"]) == 1000


async def test_a_command_past_its_timeout_is_killed_not_left_running(api: TestClient, running: str) -> None:
    late = await run(api, running, {"command": "echo begun; exec sleep 600", "timeout": 1})
    assert late["timed_out"] is True and late["stdout"] == "begun\n"
    assert late["exit_code"] == 137  # SIGKILL
    assert 1 <= late["duration"] < 10
    assert "sleep 600" not in processes(running)
    # A shell's children go with it: its background job, and the command it waits on.
    tree = await run(api, running, {"command": "sleep 602 & sleep 603; echo never", "timeout": 1})
    assert tree["timed_out"] is True and tree["stdout"] == ""
    assert "sleep 602" not in processes(running) and "sleep 603" not in processes(running)


async def test_a_stream_gives_each_line_as_it_comes_then_the_end(api: TestClient, running: str) -> None:
    body = {"command": "echo one; sleep 0.5; echo two >&2; exit 4"}
    resp = await api.post(f"/api/v1/containers/{running}/exec?stream=true", json=body, headers=ADMIN)
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    first = json.loads(await resp.content.readline())
    assert first == {"stream": "stdout", "line": "one"}  # before the command has ended
    rest = [json.loads(line) for line in (await resp.read()).splitlines()]
    assert rest[0] == {"stream": "stderr", "line": "two"}
    assert rest[-1]["exit_code"] == 4 and rest[-1]["timed_out"] is False


async def test_a_client_that_leaves_a_stream_kills_its_command(api: TestClient, running: str) -> None:
    body = {"command": "echo begun; exec sleep 601"}
    url = str(api.make_url(f"/api/v1/containers/{running}/exec?stream=true"))
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=ADMIN) as resp:
        assert json.loads(await resp.content.readline()) == {"stream": "stdout", "line": "begun"}
        assert "sleep 601" in processes(running)
    assert await gone(running, "sleep 601")


async def test_the_audit_line_has_the_words_and_outcome_not_the_secrets(
    api: TestClient, running: str, tmp_path: Path
) -> None:
    body = {"command": ["sh", "-c", "cat; echo x"], "environment": {"TOKEN": "s3cret-value"}, "stdin": "private"}
    await run(api, running, body)
    [line] = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    detail = line["detail"]
    assert (line["method"], line["result"], line["target"]) == ("POST", 200, running)
    assert detail["command"] == ["sh", "-c", "cat; echo x"]
    assert (detail["exit_code"], detail["bytes_in"], detail["bytes_out"]) == (0, 7, 9)
    assert detail["duration"] > 0 and detail["timed_out"] is False
    text = json.dumps(line)
    assert "s3cret-value" not in text and "private" not in text


async def test_only_an_admin_runs_a_command(api: TestClient, running: str) -> None:
    for key in ("viewer-key", "operator-key"):
        resp = await api.post(
            f"/api/v1/containers/{running}/exec", json={"command": ["true"]}, headers=key_headers(key)
        )
        assert resp.status == 403, key
    assert "true" not in processes(running)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": []}, "command"),
        ({"command": ""}, "command"),
        ({"command": [""]}, "command"),
        ({}, "command"),
        ({"command": ["true"], "timeout": 31}, "timeout"),
        ({"command": ["true"], "timeout": 0}, "timeout"),
        ({"command": ["true"], "max_output": 4097}, "max_output"),
        ({"command": ["true"], "encoding": "latin-1"}, "encoding"),
        ({"command": ["true"], "working_dir": "tmp"}, "working_dir"),
        ({"command": ["true"], "user": "root;id"}, "user"),
        ({"command": ["true"], "environment": {"A=B": "c"}}, "environment"),
        ({"command": ["true"], "privileged": True}, "privileged"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    api: TestClient, running: str, body: dict[str, Any], field: str
) -> None:
    resp = await api.post(f"/api/v1/containers/{running}/exec", json=body, headers=ADMIN)
    answer = await resp.json()
    assert resp.status == 400, answer
    assert_error(answer, 400)
    assert any(error["field"].startswith(field) for error in answer["errors"]), answer


async def test_a_stopped_container_is_409_and_an_unknown_one_404(
    api: TestClient, make_container: MakeContainer
) -> None:
    stopped = (await make_container(cmd=IDLE))["Id"]
    resp = await api.post(f"/api/v1/containers/{stopped}/exec", json={"command": ["true"]}, headers=ADMIN)
    answer = await resp.json()
    assert resp.status == 409 and answer["errors"][0]["field"] == "container_id", answer
    resp = await api.post("/api/v1/containers/no-such-container-x/exec", json={"command": ["true"]}, headers=ADMIN)
    assert resp.status == 404
