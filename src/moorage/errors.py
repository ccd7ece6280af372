"""Errors that carry their HTTP status, and the one place where engine errors become API errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

from aiodocker.exceptions import DockerError

# aiodocker reports "cannot connect to the engine" as this pseudo status.
DOCKER_UNREACHABLE = 900


class ApiError(Exception):
    status = 500
    default_message = "internal server error"
    # Headers every error of the class carries (a 401's challenge); those given to one are added to them.
    default_headers: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.errors = list(errors)
        self.headers = {**self.default_headers, **(headers or {})}
        super().__init__(self.message)


class BadRequest(ApiError):
    status = 400
    default_message = "bad request"


class Unauthorized(ApiError):
    status = 401
    default_message = "a valid API key is required"
    default_headers = MappingProxyType({"WWW-Authenticate": 'Bearer realm="moorage"'})


class Forbidden(ApiError):
    status = 403
    default_message = "forbidden"


class NotFound(ApiError):
    status = 404
    default_message = "not found"


class Conflict(ApiError):
    status = 409
    default_message = "conflict"


class RequestTimeout(ApiError):
    status = 408
    default_message = "the request did not arrive in time"


class TooManyRequests(ApiError):
    status = 429
    default_message = "too many requests"


class UnsupportedMediaType(ApiError):
    status = 415
    default_message = "unsupported media type"


class ClientGone(ApiError):
    """The client left before its request was read, or before its answer (middlewares.CLIENT_GONE); nginx's 499,
    for the audit and the metrics (nobody reads it)."""

    status = 499
    default_message = "the client closed the connection"


class BadGateway(ApiError):
    status = 502
    default_message = "the Docker engine answered with an error"


class ServiceUnavailable(ApiError):
    """moorage itself cannot answer yet (the host sampler has no sample): not the engine's fault."""

    status = 503
    default_message = "not available yet"


class EngineUnavailable(ApiError):
    status = 503
    default_message = "the Docker engine is not reachable"


class EngineTimeout(ApiError):
    status = 504
    default_message = "the Docker engine did not answer in time"


_BY_ENGINE_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    404: NotFound,
    409: Conflict,
    DOCKER_UNREACHABLE: EngineUnavailable,
}


# Engine 500s that are the request's fault, not the engine's (Docker 20.10), known by their text.
_BY_ENGINE_MESSAGE: tuple[tuple[str, type[ApiError]], ...] = (
    ("is not paused", Conflict),  # unpause of a container that is not paused
    ("is marked for removal", Conflict),  # an action on a container being removed
    ("Multiple IDs found with provided prefix", BadRequest),  # a short id that names several objects
)


def from_docker_error(err: DockerError) -> ApiError:
    """Map an engine error to ours, keeping Docker's own text: it is what a Docker user knows."""
    message = str(err.message).strip()
    cls = _BY_ENGINE_STATUS.get(err.status)
    if cls is None and err.status == 500:
        cls = next((found for text, found in _BY_ENGINE_MESSAGE if text in message), None)
    return (cls or BadGateway)(message or None)
