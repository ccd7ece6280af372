"""Deploy hooks: `POST /hooks/{name}`, signed as GitHub and Gitea sign theirs, recreates the hook's container.

A hook call carries no API key, only `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>` made with the
hook's secret, so a CI job or a registry's webhook needs no key that could do more. A call that is not
signed right (or names no hook: names are not probed) is a 401 counted as a failed login.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.api.recreate import answer_recreate, start_recreate
from moorage.containers.model import PullPolicy
from moorage.containers.recreate import RecreateOptions, WaitFor
from moorage.errors import ApiError, Unauthorized
from moorage.schemas.hooks import HookQuery, HookRef
from moorage.schemas.recreate import RecreatedSchema
from moorage.web.middlewares import count_failed_authentication, write_audit
from moorage.web.operations import ENGINE, any_of, documented, shape
from moorage.web.requests import load_path, load_query, read_body
from moorage.web.responses import ok
from moorage.web.roles import public
from moorage.web.state import AUDIT_DETAIL, live

routes = web.RouteTableDef()

SIGNATURE = "X-Hub-Signature-256"


def signed(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the body's HMAC-SHA256 with `secret`, compared in constant time."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected.encode(), header.strip().lower().encode())


@routes.post(f"{API_PREFIX}/hooks/{{name}}")
@public
@documented(
    "Run a deploy hook: recreate its container",
    tag="hooks",
    path=HookRef,
    query=HookQuery,
    data=any_of(RecreatedSchema, shape(accepted="boolean", hook="string", container="string")),
    errors=(401, 403, 404, 409, 429, *ENGINE),
)
async def run_hook(request: web.Request) -> web.StreamResponse:
    """No API key: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with the hook's secret. The
    hook's container is recreated with the hook's `pull`, `wait` and `timeout`, answered as a recreate is; with
    `?async=true`, 202 as soon as the settings are rebuilt and passed, and the outcome goes to the audit log."""
    name = load_path(request, HookRef)["name"]
    run_async = load_query(request, HookQuery)["run_async"]
    body = await read_body(request)
    hook = next((h for h in live(request).hooks if h.name == name), None)
    if hook is None or not signed(hook.secret, body, request.headers.get(SIGNATURE)):
        count_failed_authentication(request)
        raise Unauthorized(
            f"a hook call must be signed with the hook's secret in {SIGNATURE}",
            errors=[{"field": SIGNATURE, "message": "missing, or not the body's HMAC-SHA256 with the hook's secret"}],
        )
    options = RecreateOptions(pull=PullPolicy(hook.pull), wait=WaitFor(hook.wait), timeout=hook.timeout)
    if not run_async:
        return await answer_recreate(request, hook.container, options, stream=False)
    task = await start_recreate(request, hook.container, options, lambda _step: None)
    task.add_done_callback(lambda done: _audit_outcome(request, done))
    request[AUDIT_DETAIL] = {**request[AUDIT_DETAIL], "outcome": "started"}
    return ok({"accepted": True, "hook": hook.name, "container": hook.container}, status=202, message="accepted")


def _audit_outcome(request: web.Request, done: asyncio.Task[Any]) -> None:
    """The audit line of a recreate the hook's 202 did not wait for: how it ended (its path names the hook)."""
    failure = None if done.cancelled() else done.exception()
    if done.cancelled():
        status = 503  # moorage stopped, and the recreate rolled back
    else:
        status = 200 if failure is None else failure.status if isinstance(failure, ApiError) else 500
    write_audit(request, status, {**request.get(AUDIT_DETAIL, {}), "async": True})
