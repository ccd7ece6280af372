"""Errors that carry their HTTP status, the `{field, message}` a bad field is named by, and ConfigError.

A leaf: the engine's errors become these in engine/errors.py, marshmallow's in web/requests.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar


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
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.errors = list(errors)
        self.headers = {**self.default_headers, **(headers or {})}
        # What a failure that did something has to tell besides the error (a recreate rolled back: its steps).
        self.data = data
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


class PayloadTooLarge(ApiError):
    status = 413
    default_message = "the request body is too large"


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


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


FieldError = dict[str, str]


def flatten_errors(messages: Any, path: str = "") -> list[FieldError]:
    """marshmallow's nested error dict as one `{field, message}` per bad field, `field` a dotted path."""
    if isinstance(messages, Mapping):
        out: list[FieldError] = []
        for key, sub in messages.items():
            sub_path = path if key == "_schema" else f"{path}.{key}" if path else str(key)
            out.extend(flatten_errors(sub, sub_path or "_schema"))
        return out
    return [{"field": path or "_schema", "message": _join(messages)}]


def _join(messages: Any) -> str:
    if isinstance(messages, list):
        return "; ".join(str(m) for m in messages)
    return str(messages)
