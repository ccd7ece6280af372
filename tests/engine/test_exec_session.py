"""GET /containers/{id}/exec/ws: an interactive session over a WebSocket, with aiohttp's own client, against the
real engine; what is left in the container is checked with the docker CLI."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from ..helpers import MakeContainer, app_client, docker_cli, key_headers, until

READ = 10.0  # seconds a frame may take on a busy machine
Frames = list[aiohttp.WSMessage]


def session_path(container: str, query: str = "command=sh") -> str:
    return f"/api/v1/containers/{container}/exec/ws?{query}"


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, exec={"idle_timeout": 30})


@pytest.fixture
async def running(make_container: MakeContainer) -> str:
    made = await make_container(start=True)
    return str(made["Id"])


async def connect(client: TestClient, container: str, query: str = "command=sh") -> aiohttp.ClientWebSocketResponse:
    return await client.ws_connect(session_path(container, query), headers=key_headers("admin-key"))


async def read_until(ws: aiohttp.ClientWebSocketResponse, wanted: bytes) -> bytes:
    """The output, binary frames joined, up to and including `wanted` (bounded by READ)."""
    seen = b""
    deadline = time.monotonic() + READ
    while wanted not in seen:
        message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert message.type is aiohttp.WSMsgType.BINARY, (message, seen)
        seen += message.data
    return seen


async def rest(ws: aiohttp.ClientWebSocketResponse) -> tuple[bytes, Frames]:
    """Every frame up to the close: the binary output joined, and the text frames."""
    output, texts = b"", []
    for _ in range(10_000):
        message = await ws.receive(timeout=READ)
        if message.type is aiohttp.WSMsgType.BINARY:
            output += message.data
        elif message.type is aiohttp.WSMsgType.TEXT:
            texts.append(message)
        else:
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
            return output, texts
    raise AssertionError("the session did not close")


def processes(container: str) -> str:
    return docker_cli("exec", container, "ps", "-o", "pid,args")


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    text = (tmp_path / "state" / "audit.log").read_text()
    return [json.loads(line) for line in text.splitlines() if '"session"' in line]


async def test_typed_into_sh_the_echo_comes_back_and_exit_3_is_the_last_frame(
    client: TestClient, running: str, tmp_path: Path
) -> None:
    ws = await connect(client, running)
    await ws.send_bytes(b"echo hel''lo\n")  # the terminal echoes what was typed; only the shell's output joins it
    assert b"hello" in await read_until(ws, b"hello\r\n")
    await ws.send_bytes(b"exit 3\n")
    _, texts = await rest(ws)
    assert json.loads(texts[-1].data) == {"end": "exited", "exit_code": 3}
    assert ws.closed
    started, ended = audit_lines(tmp_path)
    assert started["key"] == "admin-key" and started["target"] == running and started["method"] == "GET"
    assert started["detail"]["session"] == "started"
    assert started["detail"]["command"] == ["sh"] and started["detail"]["tty"] is True
    assert ended["detail"]["session"] == "ended" and ended["detail"]["exit_code"] == 3
    assert ended["detail"]["ended"] == "exited" and ended["detail"]["duration"] > 0
    assert ended["detail"]["bytes_in"] == len(b"echo hel''lo\n") + len(b"exit 3\n")
    assert ended["detail"]["bytes_out"] > len(b"hello")
    assert started["request_id"] == ended["request_id"]
    assert "echo" not in json.dumps([started, ended])  # what was typed is never audited


async def test_a_resize_is_what_stty_size_says(client: TestClient, running: str) -> None:
    ws = await connect(client, running)
    await ws.send_json({"resize": [132, 43]})
    await ws.send_bytes(b"stty size; exit\n")
    output, texts = await rest(ws)
    assert b"43 132" in output, output
    assert json.loads(texts[-1].data)["exit_code"] == 0


async def test_a_bad_control_frame_is_answered_and_the_session_goes_on(client: TestClient, running: str) -> None:
    ws = await connect(client, running)
    await ws.send_json({"resize": [0, 24]})
    refused = json.loads((await ws.receive(timeout=READ)).data)
    assert refused["field"].startswith("resize") and refused["error"]
    await ws.send_str("not json")
    assert json.loads((await ws.receive(timeout=READ)).data)["field"] == "frame"
    await ws.send_bytes(b"exit 4\n")
    _, texts = await rest(ws)
    assert json.loads(texts[-1].data) == {"end": "exited", "exit_code": 4}


async def test_without_a_tty_stdout_is_binary_and_stderr_text_frames(client: TestClient, running: str) -> None:
    script = "sh -c 'echo out; echo err >&2; exit 5'"
    ws = await connect(client, running, f"command={quote(script)}&tty=false")
    output, texts = await rest(ws)
    assert output == b"out\n"
    frames = [json.loads(text.data) for text in texts]
    assert frames == [{"stderr": "err\n"}, {"end": "exited", "exit_code": 5}]


async def test_a_program_that_is_not_there_exits_127_with_the_engine_s_reason(client: TestClient, running: str) -> None:
    ws = await connect(client, running, "command=no-such-program-xs")
    output, texts = await rest(ws)
    assert b"no-such-program-xs" in output
    assert json.loads(texts[-1].data) == {"end": "exited", "exit_code": 127}


async def test_user_and_working_dir_are_the_process_s(client: TestClient, running: str) -> None:
    ws = await connect(client, running, "command=sh -c 'id -u; pwd'&tty=false&user=65534&working_dir=/tmp")
    output, _ = await rest(ws)
    assert output == b"65534\n/tmp\n"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "command"),
        ("command=", "command"),
        ("command=%20%20", "command"),
        ("command='unclosed", "command"),
        ("command=sh&command=ls", "command"),
        ("command=sh&tty=maybe", "tty"),
        ("command=sh&user=bad%20user", "user"),
        ("command=sh&working_dir=relative", "working_dir"),
        ("command=sh&privileged=true", "privileged"),
    ],
)
async def test_a_bad_query_is_a_400_naming_the_field_before_the_upgrade(
    client: TestClient, running: str, query: str, field: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(client, running, query)
    assert refused.value.status == 400
    resp = await client.get(session_path(running, query), headers=key_headers("admin-key"))
    assert resp.status == 400
    assert field in [problem["field"] for problem in (await resp.json())["errors"]]


async def test_a_stopped_container_is_409_an_unknown_one_404(client: TestClient, make_container: MakeContainer) -> None:
    stopped = await make_container()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(client, stopped["Id"])
    assert refused.value.status == 409
    with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
        await connect(client, "no-such-container-xs")
    assert missing.value.status == 404


async def test_a_get_without_the_upgrade_is_426_and_runs_nothing(client: TestClient, running: str) -> None:
    resp = await client.get(session_path(running, "command=sleep 601"), headers=key_headers("admin-key"))
    assert resp.status == 426
    assert (await resp.json())["errors"][0]["field"] == "Upgrade"
    assert "sleep 601" not in processes(running)


async def test_viewer_and_operator_get_403(client: TestClient, running: str) -> None:
    for name in ("viewer-key", "operator-key"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(session_path(running), headers=key_headers(name))
        assert refused.value.status == 403


async def test_a_client_that_leaves_leaves_no_process(client: TestClient, running: str, tmp_path: Path) -> None:
    for tty in ("true", "false"):
        ws = await connect(client, running, f"command=sh&tty={tty}")
        # A background job and a foreground one: neither outlives the session.
        await ws.send_bytes(b"sleep 601 & sleep 602; echo never\n")
        await until_in(running, "sleep 602")
        await ws.close()
        await until_gone(running, ("sleep 601", "sleep 602", " sh"))

    def ended() -> list[dict[str, Any]]:
        return [line["detail"] for line in audit_lines(tmp_path) if line["detail"]["session"] == "ended"]

    await until(lambda: len(ended()) == 2, "both ends audited", READ)  # written once the kill is done
    assert [detail["ended"] for detail in ended()] == ["client_gone", "client_gone"]
    assert all(detail["exit_code"] is not None for detail in ended())


async def until_in(container: str, text: str) -> None:
    for _ in range(100):
        if text in processes(container):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} never ran: {processes(container)}")


async def until_gone(container: str, texts: tuple[str, ...]) -> None:
    for _ in range(100):
        listing = processes(container)
        if not any(text in listing for text in texts):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still running: {listing}")


async def test_an_idle_session_is_closed_with_a_frame_saying_why(
    aiohttp_client: Any, tmp_path: Path, running: str
) -> None:
    client = await app_client(aiohttp_client, tmp_path, exec={"idle_timeout": 1})
    ws = await connect(client, running, "command=sleep 603&tty=false")
    _, texts = await rest(ws)
    last = json.loads(texts[-1].data)
    assert last["end"] == "idle_timeout" and "idle_timeout" in last["message"]
    await until_gone(running, ("sleep 603",))
    [ended] = [line for line in audit_lines(tmp_path) if line["detail"]["session"] == "ended"]
    assert ended["detail"]["ended"] == "idle_timeout"


async def test_a_session_is_a_stream_capped_by_max_streams(aiohttp_client: Any, tmp_path: Path, running: str) -> None:
    client = await app_client(aiohttp_client, tmp_path, server={"max_streams": 1, "admin_reserved_streams": 0})
    ws = await connect(client, running)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(client, running)
    assert refused.value.status == 429
    await ws.send_bytes(b"exit\n")
    await rest(ws)


async def test_moorage_stopping_ends_the_session_and_its_process(
    aiohttp_client: Any, tmp_path: Path, running: str
) -> None:
    client = await app_client(aiohttp_client, tmp_path)
    ws = await connect(client, running, "command=sleep 604")
    await until_in(running, "sleep 604")
    closing = asyncio.create_task(client.server.close())
    _, texts = await rest(ws)
    await closing
    assert json.loads(texts[-1].data)["end"] == "shutdown"
    await until_gone(running, ("sleep 604",))
