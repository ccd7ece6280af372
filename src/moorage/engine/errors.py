"""Where the engine's failures become API errors: the one mapping, from aiodocker's DockerError (and the
client's own failures) to the ApiError the caller is told about, keeping Docker's own text."""

from __future__ import annotations

import logging

import aiohttp
from aiodocker.exceptions import DockerError

from moorage.errors import ApiError, BadGateway, BadRequest, Conflict, EngineTimeout, EngineUnavailable, NotFound

_LOGGER = logging.getLogger(__name__)

# aiodocker reports "cannot connect to the engine" as this pseudo status.
DOCKER_UNREACHABLE = 900
# What a call to the engine can raise: its answer, a broken connection, no answer in time.
ENGINE_CALL_ERRORS = (DockerError, aiohttp.ClientError, TimeoutError)
# Failures of the engine's side of a stream once our headers are out (a line that does not parse among them):
# logged, and the stream ends.
ENGINE_STREAM_ERRORS = (*ENGINE_CALL_ERRORS, ValueError)
# What the engine says of a pull whose repository or tag does not exist (its status is often 500).
_NOT_FOUND = ("not found", "manifest unknown", "does not exist")
# What it says of a start whose host port is taken.
_PORT_TAKEN = ("address already in use", "port is already allocated")
# And of one whose program the runtime could not run (runc's words: `exec: "/bin/x": stat ...`).
_CANNOT_EXEC = 'unable to start container process: exec: "'


class EngineLate(TimeoutError):
    """The engine did not answer a call's head in time; the text names the call."""


_BY_ENGINE_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    404: NotFound,
    409: Conflict,
    DOCKER_UNREACHABLE: EngineUnavailable,
}


# Engine 500s (and 403s) that are the request's fault, not the engine's (Docker 20.10), known by their text.
_BY_ENGINE_MESSAGE: tuple[tuple[str, type[ApiError]], ...] = (
    ("is not paused", Conflict),  # unpause of a container that is not paused
    ("is marked for removal", Conflict),  # an action on a container being removed
    ("Multiple IDs found with provided prefix", BadRequest),  # a short id that names several objects
    ("Address already in use", Conflict),  # a start (403) whose fixed address another container holds
    ("a disk usage operation is already running", Conflict),  # one `GET /system/df` at a time
)


def from_docker_error(err: DockerError) -> ApiError:
    """Map an engine error to ours, keeping Docker's own text: it is what a Docker user knows."""
    message = str(err.message).strip()
    cls = _BY_ENGINE_STATUS.get(err.status)
    if cls is None and err.status in (403, 500):
        cls = next((found for text, found in _BY_ENGINE_MESSAGE if text in message), None)
    return (cls or BadGateway)(message or None)


def as_api_error(exc: Exception) -> ApiError:
    """Whatever a handler raised, as the ApiError the client is told about."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DockerError):
        return from_docker_error(exc)
    if isinstance(exc, TimeoutError):
        # Only our own late-head error names the engine's call; aiohttp's and asyncio's say nothing of the engine.
        return EngineTimeout(str(exc) if isinstance(exc, EngineLate) else None)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return EngineUnavailable(f"{EngineUnavailable.default_message}: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return BadGateway(f"{BadGateway.default_message}: {exc}")
    # The traceback goes to the log only; the client learns nothing about the internals.
    return ApiError()


def pull_error(err: DockerError, reference: str) -> ApiError:
    """What a failed pull tells the caller: a missing repository or tag is 404, a registry failure 502."""
    message = str(err.message).strip()
    if err.status == DOCKER_UNREACHABLE:
        return EngineUnavailable(message)
    if err.status == 404 or any(words in message.lower() for words in _NOT_FOUND):
        return NotFound(f"{reference}: {message}", errors=[{"field": "name", "message": "no such repository or tag"}])
    _LOGGER.warning("pull of %s failed at the registry: %s", reference, message)
    return BadGateway(f"the registry failed the pull of {reference}: {message}")


def start_failure(err: DockerError) -> ApiError:
    """A failed start, named by its field: a host port already in use is the request's conflict; a program the
    runtime cannot run (not in the image, not executable) is the command's (or the entrypoint's) error."""
    if any(words in str(err.message) for words in _PORT_TAKEN):
        return Conflict(str(err.message), errors=[{"field": "ports", "message": "a host port is already in use"}])
    failure = from_docker_error(err)
    if _CANNOT_EXEC in str(err.message):
        failure.errors = [
            {"field": "command", "message": "the runtime cannot run it: not in the image, or not executable"}
        ]
    return failure


def rename_failure(err: DockerError) -> ApiError:
    """A failed rename: a name another container holds is the request's conflict, named by its field."""
    if err.status == 409:
        return Conflict(str(err.message).strip(), errors=[{"field": "name", "message": "another container has it"}])
    return from_docker_error(err)


def update_failure(err: DockerError) -> ApiError:
    """A failed live update: the engine's conflicts (a memory limit above the swap already set, a reservation
    above the limit) are the request's, named by the field."""
    message = str(err.message).strip()
    if err.status in (400, 409) and "memory" in message.lower():
        field = "memory_reservation" if "reservation" in message.lower() else "memory"
        return Conflict(message, errors=[{"field": field, "message": message}])
    return from_docker_error(err)
