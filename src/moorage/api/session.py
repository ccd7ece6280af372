"""An interactive session in a running container over a WebSocket: `docker exec -it` for a script or a terminal
client. The key goes in a header, as on every route (a browser's WebSocket cannot send one: it needs a proxy that
adds it); with no cookie, no other site's page can open a session in its visitor's name.

Binary frames from the client are the process's stdin; its output comes back as binary frames (with a terminal,
stdout and stderr are one stream, as `docker exec -t` shows them; without one, binary frames are stdout and
stderr comes as text frames `{"stderr": text}`). A text frame `{"resize": [cols, rows]}` resizes the terminal.
The last frame says why the session ended: `{"end": "exited", "exit_code": N}`, or moorage's own reason
(`idle_timeout`, `shutdown`, `engine_gone`), then the close. A client that leaves ends the session, and what it
ran in the container is killed (containers/session.py). A session is one of its key's streams.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from marshmallow import ValidationError

from moorage.api.paths import API_PREFIX
from moorage.background import to_the_end
from moorage.containers.execs import STDERR, running_container
from moorage.containers.session import ExecSession, SessionRequest
from moorage.engine.errors import ENGINE_STREAM_ERRORS
from moorage.errors import ApiError, ServiceUnavailable, flatten_errors
from moorage.schemas.containers import ContainerRef
from moorage.schemas.session import SessionQuery, terminal_size
from moorage.settings import Permission
from moorage.web.middlewares import write_audit
from moorage.web.operations import STREAM, documented
from moorage.web.requests import load_query
from moorage.web.roles import requires
from moorage.web.scoping import container_ref
from moorage.web.state import AUDIT, docker, exec_docker, live, stream_slot, streams

routes = web.RouteTableDef()

# Why a session ended; every reason but the client's own is told to the client in the last frame.
EXITED, CLIENT_GONE, IDLE, SHUTDOWN, ENGINE_GONE = "exited", "client_gone", "idle_timeout", "shutdown", "engine_gone"
_SWITCHING = 101
_CLOSE_SECONDS = 2.0  # how long a client that does not answer moorage's close frame is waited for


class UpgradeRequired(ApiError):
    status = 426
    default_message = "this route is a WebSocket: send the upgrade (Connection: Upgrade, Upgrade: websocket)"


@dataclass
class Tally:
    """What a session moved, for its audit line; when it last moved a byte, for its idle timeout (the one in force
    when it began: a SIGHUP applies to the sessions after it)."""

    idle: float
    began: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    bytes_in: int = 0
    bytes_out: int = 0

    def heard(self, size: int) -> None:
        self.bytes_in += size
        self.last = time.monotonic()

    def sent(self, size: int) -> None:
        self.bytes_out += size
        self.last = time.monotonic()


@routes.get(f"{API_PREFIX}/containers/{{container_id}}/exec/ws")
@requires(Permission.CONTAINERS_EXEC)
@documented(
    "An interactive session in a running container, over a WebSocket",
    tag="containers",
    path=ContainerRef,
    query=SessionQuery,
    status=_SWITCHING,
    errors=(404, 409, 426, *STREAM),
)
async def open_exec_session(request: web.Request) -> web.StreamResponse:
    """A WebSocket upgrade (101, then frames, not the envelope); `command` is one string split as a shell would,
    run without a shell around it. Binary frames from the client are stdin; output comes as binary frames (with
    `tty=false`, stderr as text frames `{"stderr": text}`); a text frame `{"resize": [cols, rows]}` resizes the
    terminal (a bad one is answered `{"error", "field"}` and the session goes on). The last frame is
    `{"end": "exited", "exit_code": N}`, or `{"end": "idle_timeout" | "shutdown" | "engine_gone", "message"}`
    (nothing moved either way for [exec] idle_timeout seconds; moorage stops; the engine broke the session),
    then the close. A client that leaves ends the session, and what it ran in the container is killed. The
    session is one of the key's streams ([server] max_streams_per_key). Audited when it starts and ends."""
    wanted = load_query(request, SessionQuery)
    ref = await container_ref(request)
    container_id = await running_container(docker(request), ref)
    with stream_slot(request, "application/octet-stream"):
        ws = web.WebSocketResponse(heartbeat=streams(request).heartbeat, timeout=_CLOSE_SECONDS)
        if not ws.can_prepare(request):
            raise UpgradeRequired(errors=[{"field": "Upgrade", "message": "must be websocket"}])
        if not request.config_dict[AUDIT].writable:
            raise ServiceUnavailable("the audit log cannot be written: refusing to act unaudited")
        session = await ExecSession.open(exec_docker(request), container_id, wanted)
        # A GET the middleware does not audit: a session has lines of its own, at its start and its end.
        write_audit(request, _SWITCHING, {"session": "started", "exec_id": session.exec_id, **_described(wanted)})
        tally = Tally(idle=live(request).exec.idle_timeout)
        try:
            await ws.prepare(request)
            reason = await converse(ws, session, wanted.tty, tally)
        except BaseException:
            # Cancelled: moorage stops (end_all), or the client left; the engine and the audit are still open.
            reason = SHUTDOWN if streams(request).ending_all else CLIENT_GONE
            await to_the_end(finish(ws, session, reason, tally, request))
            raise
        await finish(ws, session, reason, tally, request)
        return ws


def _described(wanted: SessionRequest) -> dict[str, Any]:
    """What the start's audit line says of the session: its argv, user and terminal, never what it is sent."""
    return {"command": list(wanted.command), "user": wanted.user, "tty": wanted.tty}


async def converse(ws: web.WebSocketResponse, session: ExecSession, tty: bool, tally: Tally) -> str:
    """Both ways at once until one of them ends, or nothing moved for the idle timeout: why it ended."""
    output = asyncio.create_task(_output(ws, session, tty, tally))
    client = asyncio.create_task(_input(ws, session, tally))
    pending = {output, client}
    try:
        while True:
            quiet_left = tally.idle - (time.monotonic() - tally.last)
            if quiet_left <= 0:
                return IDLE
            done, _ = await asyncio.wait(pending, timeout=quiet_left, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pending.discard(task)
                if (reason := task.result()) is not None:
                    return reason
    finally:
        for task in (output, client):
            task.cancel()
        await asyncio.wait((output, client))


async def _output(ws: web.WebSocketResponse, session: ExecSession, tty: bool, tally: Tally) -> str:
    """The process's output to the client as it comes; why it stopped."""
    stderr = codecs.getincrementaldecoder("utf-8")("replace")  # a character split across two reads stays whole
    try:
        while (out := await session.read()) is not None:
            stream, data = out
            tally.sent(len(data))
            if stream == STDERR and not tty:
                await ws.send_json({"stderr": stderr.decode(data)})
            else:
                await ws.send_bytes(data)
    except ConnectionError:
        return CLIENT_GONE
    except ENGINE_STREAM_ERRORS:
        return ENGINE_GONE
    return EXITED


async def _input(ws: web.WebSocketResponse, session: ExecSession, tally: Tally) -> str | None:
    """The client's frames to the process until the client closes (why it stopped), or None when the process no
    longer takes stdin: it is ending, and the output's end says how."""
    try:
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                tally.heard(len(message.data))
                try:
                    await session.write(message.data)
                except (*ENGINE_STREAM_ERRORS, ConnectionError, RuntimeError):  # aiodocker: RuntimeError once closed
                    return None
            elif message.type is WSMsgType.TEXT:
                await _control(ws, session, message.data)
    except ConnectionError:  # an answer to a control frame found the client gone
        pass
    return CLIENT_GONE


async def _control(ws: web.WebSocketResponse, session: ExecSession, text: str) -> None:
    """A text frame: a resize; a frame that is not one, or a resize the engine refuses, is answered with an error
    frame and the session goes on."""
    try:
        cols, rows = terminal_size(json.loads(text))
        await session.resize(cols, rows)
    except (ValueError, ValidationError) as err:
        messages = err.messages if isinstance(err, ValidationError) else {"frame": ["not JSON"]}
        problem = flatten_errors(messages)[0]
        await ws.send_json({"error": problem["message"], "field": problem["field"]})
    except ENGINE_STREAM_ERRORS as err:
        await ws.send_json({"error": f"the engine refused the resize: {err}", "field": "resize"})


_TOLD = {
    IDLE: "nothing moved either way for {idle} s ([exec] idle_timeout): the session is closed",
    SHUTDOWN: "moorage is stopping",
    ENGINE_GONE: "the engine broke the session's connection",
}


async def finish(
    ws: web.WebSocketResponse, session: ExecSession, reason: str, tally: Tally, request: web.Request
) -> None:
    """End the process (killing what is left), tell the client why unless it left, audit the end, and close:
    a client that saw the close finds the end in the audit log."""
    exit_code = await session.end(exited=reason == EXITED)
    if reason != CLIENT_GONE and not ws.closed:
        frame: dict[str, Any] = {"end": reason, "exit_code": exit_code}
        if reason in _TOLD:
            frame["message"] = _TOLD[reason].format(idle=tally.idle)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json(frame)
    ended = {
        "session": "ended",
        "exec_id": session.exec_id,
        "ended": reason,
        "exit_code": exit_code,
        "duration": round(time.monotonic() - tally.began, 3),
        "bytes_in": tally.bytes_in,
        "bytes_out": tally.bytes_out,
    }
    write_audit(request, _SWITCHING, ended)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.close()
