"""An interactive exec in a running container: started hijacked (stdin in, output out, both as they come), resized,
and, when its client is gone, ended rather than left running.

The engine ends nothing when the hijacked connection closes (moby#9098): with a terminal the shell goes on
waiting on it, without one a program that reads no stdin runs on. So a session that did not end by itself is
killed as a one-shot exec is (execs.kill): its process and every child it started, a shell's background jobs too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import aiodocker
from aiodocker.execs import Exec
from aiodocker.stream import Stream

from moorage.containers import execs
from moorage.containers.execs import MARKER, ExecResult, new_marker
from moorage.engine.errors import ENGINE_CALL_ERRORS

# How long the engine may take to note an ended process's exit code.
_EXIT_SECONDS = 2.0


@dataclass(frozen=True)
class SessionRequest:
    command: tuple[str, ...]
    tty: bool = True
    user: str | None = None
    working_dir: str | None = None


class ExecSession:
    """One exec started hijacked; `open` it, read and write, and `end` it (which also kills what is left)."""

    def __init__(self, docker: aiodocker.Docker, container_id: str, execution: Exec, marker: str) -> None:
        self._docker = docker
        self._container_id = container_id
        self._execution = execution
        self._stream: Stream = execution.start(detach=False)
        self._marker = marker
        self._heard = ExecResult()  # the head of its output: where the engine says why a start failed

    @classmethod
    async def open(cls, docker: aiodocker.Docker, container_id: str, request: SessionRequest) -> ExecSession:
        """Create the exec (stdin, stdout and stderr attached; never privileged) and start it; the engine's
        errors raise as aiodocker's."""
        marker = new_marker()
        execution = await docker.containers.container(container_id).exec(
            list(request.command),
            stdin=True,
            tty=request.tty,
            user=request.user or "",
            workdir=request.working_dir,
            environment={MARKER: marker},
        )
        session = cls(docker, container_id, execution, marker)
        await session._stream.__aenter__()  # the hijack: the process runs from here on
        return session

    @property
    def exec_id(self) -> str:
        return self._execution.id

    async def read(self) -> tuple[int, bytes] | None:
        """The next output as it comes (STDOUT, or STDERR without a terminal); None once the process closed it."""
        message = await self._stream.read_out()
        if message is None:
            return None
        self._heard.heard(message.stream, message.data)
        return message.stream, message.data

    async def write(self, data: bytes) -> None:
        await self._stream.write_in(data)

    async def resize(self, cols: int, rows: int) -> None:
        await self._execution.resize(w=cols, h=rows)

    async def end(self, exited: bool = False) -> int | None:
        """Close the connection, kill what still runs of the session, and answer its exit code (None when the
        engine could not tell it; 127 for a program the runtime could not find). A process that `exited` (its
        output ended) is given the moment the engine takes to note it before anything is killed."""
        with contextlib.suppress(*ENGINE_CALL_ERRORS, OSError):
            await self._stream.close()
        if await self.exit_code(wait=_EXIT_SECONDS if exited else 0) is None:
            await execs.kill(self._docker, self._container_id, self._execution, self._marker)
        self._heard.exit_code = await self.exit_code()
        return 127 if self._heard.not_found() else self._heard.exit_code  # as a shell, and the one-shot exec, say

    async def exit_code(self, wait: float = _EXIT_SECONDS) -> int | None:
        return await execs.exit_code(self._execution, wait)
