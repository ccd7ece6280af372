"""The middlewares, outermost first: the request's id, the audit, mutations run to their end, the error
envelope for every failure, default-deny auth; and the headers every answer carries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import uuid
import zlib

import aiohttp
from aiodocker.exceptions import DockerError
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from marshmallow import ValidationError

from . import envelope
from .audit import READS, audited, cut
from .auth import KEY_PREFIX, declared_role, is_public, match_key
from .config import ApiKey, Role
from .errors import (
    ApiError,
    BadGateway,
    BadRequest,
    ClientGone,
    EngineTimeout,
    EngineUnavailable,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    from_docker_error,
)
from .keys import AUDIT, LIMITER, PRINCIPAL, REQUEST_ID, TOKENS, VIA_TOKEN, live
from .requestctx import HANDLING, Handling
from .streams import EngineLate, HeadAnswered
from .validation import validation_failed

_LOGGER = logging.getLogger(__name__)

# Headers of aiohttp's own exceptions that describe its plain-text body, not ours.
_BODY_HEADERS = {"Content-Type", "Content-Length"}
# A request id the client may choose: short, and nothing a log line or a header would need to escape.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CLIENT_GONE = ClientGone.status


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: the request's id (the client's own X-Request-Id if sane, else a new one), for its answer, its
    audit line and every log line logged while it is handled (requestctx)."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    # Not reset: each request is handled in a task of its own, whose context ends with it (aiohttp #3406).
    HANDLING.set(Handling(request_id))
    return await handler(request)


async def answer_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: on every answer, streams and aiohttp's own errors included, just before its head goes."""
    if request_id := request.get(REQUEST_ID):
        response.headers["X-Request-Id"] = request_id
    # What an authenticated caller reads is theirs, and a refusal no cache should keep either: only the health
    # probes (and what the config opens to all) may be stored. A caller that authenticated is no probe.
    if request.get(PRINCIPAL) is not None or not is_public(request.match_info.handler, live(request)):
        response.headers["Cache-Control"] = "no-store"


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
        return envelope.error(exc.status, message, headers=headers)
    except Exception as exc:
        err = as_api_error(exc)
        if err.status >= 500:
            _LOGGER.log(
                logging.WARNING if err.status > 500 else logging.ERROR,
                "%s %s failed: %s",
                request.method,
                cut(request.path),
                err.message,
                exc_info=err.status == 500,
            )
        return envelope.error(err.status, err.message, err.errors, err.headers)


def as_api_error(exc: Exception) -> ApiError:
    """Whatever a handler raised, as the ApiError the client is told about."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError):
        return validation_failed(exc, "request")
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


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside the error middleware, so that it sees every answer as the client gets it, denials included."""
    audit = request.config_dict[AUDIT]
    if request.method not in READS and not audit.writable:
        return envelope.error(503, "the audit log cannot be written: refusing to act unaudited")
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
        principal = request.get(PRINCIPAL)
        request.config_dict[AUDIT].write(
            key=principal.name if principal else None,
            role=principal.role.value if principal else None,
            client=request.remote,
            method=request.method,
            path=request.path,
            target=next((request.match_info[k] for k in _TARGETS if k in request.match_info), None),
            result=status,
            request_id=request.get(REQUEST_ID),
        )


@web.middleware
async def run_to_end(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A call that changes something runs to its end, or fails and rolls back as it would on an engine error,
    whatever its client does: cancelled half-way (aiohttp cancels the handler of a client that leaves), a create
    would leave a container created but not started, or started while the audit says nothing was done. A stream
    (a streamed pull) still ends when its client leaves; reads are cancelled as before."""
    if request.method in READS:
        return await handler(request)
    task = asyncio.create_task(handler(request), name=f"{request.method} {request.path}")
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            handling = HANDLING.get()
            if task.cancelled() or (handling is not None and handling.stream):
                task.cancel()
                with contextlib.suppress(BaseException):  # whatever the stream ended with, it was cancelled
                    await task
                raise
            # Nobody reads this answer, but the audit and the metrics record it: what the engine did.
            current = asyncio.current_task()
            assert current is not None
            current.uncancel()


# gzip from about 1 KB: below, the header and the CPU outweigh the bytes saved. Level 1: on a 500-container list
# (239 KB) it takes 1.3 ms for 24.5 % of the size, where zlib's default (6, which aiohttp's enable_compression
# always uses) takes 4.3 ms for 22.5 %. Above 16 KB in a thread (aiohttp: above 4 KB): there a hand-off costs
# about what compressing inline does (190 us, on 2 busy cores), and a large answer does not stall the loop.
_COMPRESS_FROM = 1024
_GZIP_LEVEL = 1
_COMPRESS_IN_THREAD = 16 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS


@web.middleware
async def compress_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON answers over about 1 KB gzipped for a client that accepts it; streams never (they are prepared,
    written as they come, before this sees them)."""
    response = await handler(request)
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or len(body) < _COMPRESS_FROM or response.content_type != envelope.JSON:
        return response
    response.headers.add(hdrs.VARY, hdrs.ACCEPT_ENCODING)
    if hdrs.CONTENT_ENCODING in response.headers or not accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, "")):
        return response
    if len(body) > _COMPRESS_IN_THREAD:
        response.body = await asyncio.to_thread(zlib.compress, body, _GZIP_LEVEL, _GZIP_WBITS)
    else:
        response.body = zlib.compress(body, _GZIP_LEVEL, _GZIP_WBITS)
    response.headers[hdrs.CONTENT_ENCODING] = "gzip"
    return response


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether Accept-Encoding admits gzip (RFC 9110 12.5.3): named, or `*`, with a q-value above 0."""
    weights: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                weight = _qvalue(value)
        weights.setdefault(coding, weight)
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def _qvalue(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


# Path variables that name the object a call acts on, for the audit line.
_TARGETS = ("container_id", "image_id", "jti")


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
        if (wait := request.config_dict[LIMITER].failed(request.remote)) is not None:
            raise TooManyRequests(
                "too many failed authentications from this address: try again later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            ) from None
        raise
    request[PRINCIPAL] = key
    needed = declared_role(route_handler)
    if request.match_info.http_exception is None:
        if not isinstance(needed, Role):
            raise Forbidden("this route declares no role and is refused")
        if not key.role.allows(needed):
            raise Forbidden(
                f"role {needed.value} or higher is required; {key.name!r} has role {key.role.value}",
                errors=[{"field": "role", "message": f"requires {needed.value}"}],
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
        request[VIA_TOKEN] = True
        return request.config_dict[TOKENS].verify(presented, settings.auth.api_keys)
    key = match_key((k for k in settings.auth.api_keys if not k.disabled), presented)
    if key is None:
        raise Unauthorized("invalid API key", errors=[{"field": field, "message": "not a valid key"}])
    return key
