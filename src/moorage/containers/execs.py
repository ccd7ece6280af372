"""One command run in a running container: its output kept apart by stream and capped, its exit code, and a
command that outlives its timeout, or whose caller leaves, killed rather than left running.

The engine has no call that kills an exec (moby#9098), and ends nothing when its connection closes. So every
exec moorage starts (this one-shot one and the interactive session's) carries a variable of its own,
`MOORAGE_EXEC=<random>`, which its children inherit, and `kill` runs, as root in the container, a shell that
SIGKILLs every process whose environment holds it: the whole tree, a shell's background jobs too. Where the
container has no `sh`, `tr`, `grep` or `kill` for that, the exec's own process is killed: the engine's inspect
names its PID on the host, the host's /proc which PID that is inside the container (the last of `NSpid`), and
`kill` there ends it; moorage itself may not signal another user's process (it runs without capabilities), but
as root it signals the host PID when the container has no `kill` at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiodocker
from aiodocker.exceptions import DockerError
from aiodocker.execs import Exec
from aiodocker.stream import Stream

from moorage.background import to_the_end
from moorage.engine.errors import ENGINE_CALL_ERRORS
from moorage.errors import Conflict

_LOGGER = logging.getLogger(__name__)
STDOUT, STDERR = 1, 2
MARKER = "MOORAGE_EXEC"
# Kills every process whose environment holds "$1" (NAME=value), twice over: a child forked while the first
# round read /proc is found by the second. It does not hold "$1" in its own environment, only in its arguments.
# Exits 3 when a tool it needs is missing, so that the exec's own process is killed instead.
_KILL_MARKED = (
    "for tool in tr grep kill; do command -v $tool >/dev/null || exit 3; done; "
    "for round in 1 2; do for e in /proc/[0-9]*/environ; do p=${e#/proc/}; p=${p%/environ}; "
    'tr "\\0" "\\n" < "$e" 2>/dev/null | grep -qxF "$1" && kill -KILL "$p" 2>/dev/null; done; done; true'
)
# How long the output still arriving after a kill is read, and how long the killed process has to go.
_AFTER_KILL_SECONDS = 2.0
_POLL_SECONDS = 0.05
_HEAD_BYTES = 512
_START_FAILED = b"OCI runtime exec failed"
_EXEC_OF = b'unable to start container process: exec: "'
_NOT_FOUND = (b"executable file not found", b"no such file or directory")

# Where an output chunk goes as it arrives (a stream's lines); None keeps it for the answer.
OnOutput = Callable[[int, bytes], Awaitable[None]]


@dataclass(frozen=True)
class ExecRequest:
    command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    working_dir: str | None = None
    stdin: bytes | None = None
    timeout: float = 60.0
    max_output: int = 1024 * 1024


@dataclass
class ExecResult:
    exit_code: int | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    timed_out: bool = False
    duration: float = 0.0
    bytes_out: int = 0
    # The first bytes of stdout, kept whoever took the output: where the engine writes why a start failed.
    head: bytes = b""

    def heard(self, stream: int, data: bytes) -> None:
        self.bytes_out += len(data)
        if stream == STDOUT and len(self.head) < _HEAD_BYTES:
            self.head += data[: _HEAD_BYTES - len(self.head)]

    def not_found(self) -> bool:
        """The runtime could not find the program: the engine (20.10) says 126, as for one it cannot run, and
        puts its reason on stdout. A shell says 127, and so does moorage."""
        return (
            self.exit_code == 126
            and self.head.startswith(_START_FAILED)
            and _EXEC_OF in self.head  # not, say, a working dir that is not there
            and any(words in self.head for words in _NOT_FOUND)
        )

    def keep(self, stream: int, data: bytes, cap: int) -> None:
        """Keep what fits within `cap` bytes of both streams together; the rest is counted, not kept."""
        room = cap - len(self.stdout) - len(self.stderr)
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        (self.stdout if stream == STDOUT else self.stderr).extend(data)


async def running_container(docker: aiodocker.Docker, ref: str) -> str:
    """The container's full id; a 409 when it is not running, since only a running one can run a command."""
    state = await docker.containers.container(ref).show()
    if not state["State"]["Running"] or state["State"]["Paused"]:
        raise Conflict(
            f"container {ref} is {state['State']['Status']}: a command runs only in a running container",
            errors=[{"field": "container_id", "message": "not running"}],
        )
    return str(state["Id"])


async def run_exec(
    docker: aiodocker.Docker, container_id: str, req: ExecRequest, on_output: OnOutput | None = None
) -> ExecResult:
    """Run the command to its end, its timeout, or the caller's cancellation; in the last two the command is
    killed first. The result holds the output unless `on_output` took it."""
    container = docker.containers.container(container_id)
    marker = new_marker()
    execution = await container.exec(
        list(req.command),
        stdin=req.stdin is not None,
        environment={**req.environment, MARKER: marker},
        workdir=req.working_dir,
        user=req.user or "",
    )
    result = ExecResult()
    began = time.monotonic()
    stream = execution.start(detach=False)
    try:
        async with stream:
            if req.stdin is not None:
                await stream.write_in(req.stdin)
                end_stdin(stream)
            try:
                async with asyncio.timeout(req.timeout):
                    await _read(stream, result, req.max_output, on_output)
            except TimeoutError:
                result.timed_out = True
                await to_the_end(kill(docker, container_id, execution, marker))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_AFTER_KILL_SECONDS):
                        await _read(stream, result, req.max_output, on_output)
    except asyncio.CancelledError:
        await to_the_end(kill(docker, container_id, execution, marker))
        raise
    result.exit_code = await exit_code(execution)
    result.duration = round(time.monotonic() - began, 3)
    if result.not_found():
        result.exit_code = 127
        if on_output is None:  # the reason is an error: stderr's
            result.stderr, result.stdout = result.stdout, bytearray()
    return result


def end_stdin(stream: Stream) -> None:
    """Half-close the hijacked connection, so that the command reads the end of its stdin and the output keeps
    coming (aiodocker's close() would end both ways)."""
    connection = stream._resp.connection if stream._resp is not None else None
    transport = connection.transport if connection is not None else None
    if transport is not None and transport.can_write_eof():
        transport.write_eof()


async def _read(stream: Stream, result: ExecResult, cap: int, on_output: OnOutput | None) -> None:
    while (message := await stream.read_out()) is not None:
        result.heard(message.stream, message.data)
        if on_output is not None:
            await on_output(message.stream, message.data)
        else:
            result.keep(message.stream, message.data, cap)


def new_marker() -> str:
    """The value of MARKER for one exec."""
    return secrets.token_hex(16)


async def exit_code(execution: Exec, wait: float = _AFTER_KILL_SECONDS) -> int | None:
    """The exit code once the engine has noted the end, which can come a moment after the output's; None when it
    has not within `wait` seconds, or cannot be asked."""
    deadline = time.monotonic() + wait
    while True:
        try:
            inspected = await execution.inspect()
        except ENGINE_CALL_ERRORS as err:
            _LOGGER.warning("exec %s could not be inspected: %s", execution.id[:12], err)
            return None
        if not inspected["Running"]:
            code = inspected.get("ExitCode")
            return None if code is None else int(code)
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(_POLL_SECONDS)


async def kill(docker: aiodocker.Docker, container_id: str, execution: Exec, marker: str) -> None:
    """SIGKILL the exec's process and every process it started (those holding its `marker`); where the container
    cannot run that, its own process, inside the container if the host says which PID it has there, else from
    the host when moorage may. Logged when nothing could."""
    if await _in_container(docker, container_id, ["sh", "-c", _KILL_MARKED, "moorage-kill", f"{MARKER}={marker}"]):
        return
    try:
        inspected = await execution.inspect()
    except ENGINE_CALL_ERRORS as err:
        _LOGGER.error("exec %s could not be inspected to be killed: %s", execution.id[:12], err)
        return
    pid = inspected.get("Pid") or 0
    if not inspected.get("Running") or pid <= 0:
        return
    inner = pid_in_container(pid)
    if inner is not None and await _in_container(docker, container_id, ["kill", "-KILL", str(inner)]):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as err:
        _LOGGER.error("exec %s (pid %d) was not killed: %s", execution.id[:12], pid, err)


def pid_in_container(host_pid: int) -> int | None:
    """The PID in the innermost PID namespace of the host's `host_pid`: the last of /proc/PID/status's NSpid."""
    try:
        status = Path(f"/proc/{host_pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


async def _in_container(docker: aiodocker.Docker, container_id: str, argv: list[str]) -> bool:
    """`argv` run to its end in the container as root; whether it exited 0."""
    try:
        killer = await docker.containers.container(container_id).exec(argv, user="0")
        async with killer.start(detach=False) as stream:
            while await stream.read_out() is not None:
                pass
        return await exit_code(killer) == 0
    except (*ENGINE_CALL_ERRORS, DockerError) as err:
        _LOGGER.warning("%s in container %s failed: %s", argv[0], container_id[:12], err)
        return False
