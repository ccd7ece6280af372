"""The audit (every change and denial, as the client got it), the error envelope for every failure, and
default-deny authentication. The request id, mutations that run to their end and compression are middlewares
of their own (requestid.py, mutations.py, compression.py)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import ValidationError

from moorage.access.audit import READS, audited, cut
from moorage.access.keys import KEY_PREFIX, match_key
from moorage.engine.errors import as_api_error
from moorage.errors import (
    BadRequest,
    ClientGone,
    Forbidden,
    TooManyRequests,
    Unauthorized,
)
from moorage.settings import ApiKey, Permission
from moorage.web import responses
from moorage.web.requests import validation_failed
from moorage.web.responses import HeadAnswered
from moorage.web.roles import AUTHENTICATED, declared_permission, is_public
from moorage.web.state import (
    AUDIT,
    AUDIT_DETAIL,
    KEY_USE,
    LIMITER,
    PRINCIPAL,
    REQUEST_ID,
    TOKEN_ID,
    TOKENS,
    live,
)

_LOGGER = logging.getLogger(__name__)

# Headers of aiohttp's own exceptions that describe its plain-text body, not ours.
_BODY_HEADERS = {"Content-Type", "Content-Length"}
CLIENT_GONE = ClientGone.status


def status_sent(exc: BaseException) -> int:
    """The status the client gets for an exception that leaves every middleware: aiohttp answers 500 (504 for a
    timeout, the exception's own for an HTTPException); a cancelled handler answers nothing (499)."""
    if isinstance(exc, asyncio.CancelledError):
        return CLIENT_GONE
    if isinstance(exc, web.HTTPException):
        return exc.status
    if isinstance(exc, TimeoutError):
        return 504
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HeadAnswered as head:
        return head.response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k not in _BODY_HEADERS}
        # aiohttp's own text says more than the reason where it has one (413 names the limit).
        message = exc.reason if exc.text == f"{exc.status}: {exc.reason}" else exc.text
        return responses.error(exc.status, message, headers=headers)
    except Exception as exc:
        err = validation_failed(exc, "request") if isinstance(exc, ValidationError) else as_api_error(exc)
        if err.status >= 500:
            _LOGGER.log(
                logging.WARNING if err.status > 500 else logging.ERROR,
                "%s %s failed: %s",
                request.method,
                cut(request.path),
                err.message,
                exc_info=err.status == 500,
            )
        return responses.error(err.status, err.message, err.errors, err.headers, err.data)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside the error middleware, so that it sees every answer as the client gets it, denials included."""
    audit = request.config_dict[AUDIT]
    if request.method not in READS and not audit.writable:
        return responses.error(503, "the audit log cannot be written: refusing to act unaudited")
    try:
        response = await handler(request)
    except BaseException as exc:
        # A mutation runs to its end (run_to_end): a cancelled one is a stream whose client left.
        _audit(request, status_sent(exc))
        raise
    _audit(request, response.status)
    return response


def _audit(request: web.Request, status: int) -> None:
    if audited(request.method, status):
        write_audit(request, status, request.get(AUDIT_DETAIL))


def write_audit(request: web.Request, result: int, detail: Mapping[str, Any] | None = None) -> None:
    """One audit line of the request: the middleware's, of its answer; and a handler's own, of what no answer
    says (a file read, a session's start and end, a hook's outcome after its 202)."""
    principal = request.get(PRINCIPAL)
    needed = declared_permission(request.match_info.handler)
    request.config_dict[AUDIT].write(
        key=principal.name if principal else None,
        role=principal.role.value if principal and principal.role else None,
        token_id=request.get(TOKEN_ID),
        permission=needed.value if isinstance(needed, Permission) else None,
        client=request.remote,
        method=request.method,
        path=request.path,
        target=next((request.match_info[k] for k in _TARGETS if k in request.match_info), None),
        # The route's operationId (its handler's name); null for a path or method no route has.
        action=request.match_info.handler.__name__ if request.match_info.http_exception is None else None,
        result=result,
        request_id=request.get(REQUEST_ID),
        **({"detail": detail} if detail is not None else {}),
    )


# Path variables that name the object a call acts on, for the audit line.
_TARGETS = ("container_id", "image_id", "jti", "name")  # name: a hook's


def count_failed_authentication(request: web.Request) -> None:
    """One more failure for the client's address: a 429 when it was over its limit already (ratelimit.py)."""
    if (wait := request.config_dict[LIMITER].failed(request.remote)) is not None:
        raise TooManyRequests(
            "too many failed authentications from this address: try again later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        ) from None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_handler = request.match_info.handler
    if is_public(route_handler, live(request)):
        return await handler(request)
    try:
        key = authenticate(request)
    except CredentialMissing:
        raise
    except Unauthorized:
        # Only now, after the credential was checked: a valid one is never refused for its address's failures.
        count_failed_authentication(request)
        raise
    request[PRINCIPAL] = key
    request.config_dict[KEY_USE].touch(key)
    needed = declared_permission(route_handler)
    if request.match_info.http_exception is None:
        if not isinstance(needed, Permission) and needed != AUTHENTICATED:
            raise Forbidden("this route declares no permission and is refused")
        if isinstance(needed, Permission) and needed not in key.granted:
            raise Forbidden(
                f"permission {needed.value} is required; {key.name!r} does not have it",
                errors=[{"field": "permission", "message": f"needs {needed.value}"}],
            )
    return await handler(request)


# Query parameters that would carry a credential: refused, so that no key travels in a URL (and its logs).
_CREDENTIAL_PARAMS = {"api_key", "apikey", "api-key", "x-api-key", "key", "token", "access_token", "auth"}


def credentials_misplaced(request: web.Request) -> None:
    """400 for a credential in the query string, or for two of them, where one would be ignored."""
    misplaced = sorted({name for name in request.query if name.lower() in _CREDENTIAL_PARAMS})
    if misplaced:
        raise BadRequest(
            "credentials are accepted in headers only: X-API-Key or Authorization: Bearer",
            errors=[{"field": name, "message": "credentials may not be sent in the URL"} for name in misplaced],
        )
    if "X-API-Key" in request.headers and "Authorization" in request.headers:
        raise BadRequest(
            "send either X-API-Key or Authorization, not both",
            errors=[{"field": "Authorization", "message": "given with X-API-Key"}],
        )


class CredentialMissing(Unauthorized):
    """No credential at all (a CORS preflight, a probe on the wrong path): a 401, but not a guess to limit."""


def authenticate(request: web.Request) -> ApiKey:
    """The key (X-API-Key, or Bearer mrg_...) or token (Bearer JWT) presented; 401 when absent or not valid."""
    credentials_misplaced(request)
    settings = live(request)
    presented = request.headers.get("X-API-Key")
    field = "X-API-Key"
    if presented is None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            presented, field = credentials.strip(), "Authorization"
    if not presented:
        raise CredentialMissing(
            "authentication required: send an API key in X-API-Key or Authorization: Bearer",
            errors=[{"field": "X-API-Key", "message": "missing"}],
        )
    if field == "Authorization" and not presented.startswith(KEY_PREFIX):
        principal, request[TOKEN_ID] = request.config_dict[TOKENS].verify(presented, settings.auth.api_keys)
        return principal
    key = match_key((k for k in settings.auth.api_keys if not k.disabled), presented)
    if key is None:
        raise Unauthorized("invalid API key", errors=[{"field": field, "message": "not a valid key"}])
    if key.expired():
        raise Unauthorized("key expired", errors=[{"field": field, "message": "expired"}])
    return key
