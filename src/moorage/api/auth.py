"""Bearer tokens: issued to an API key, revoked by an admin; and what the caller may do."""

from __future__ import annotations

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.errors import BadRequest, Forbidden
from moorage.schemas.auth import TokenRef, TokenRequest
from moorage.schemas.lifecycle import NoQuery
from moorage.selectors import Scope
from moorage.settings import Permission
from moorage.timestamps import rfc3339
from moorage.web.operations import documented, listing, shape
from moorage.web.requests import load_json, load_path, load_query
from moorage.web.responses import ok
from moorage.web.roles import AUTHENTICATED, requires
from moorage.web.state import PRINCIPAL, TOKEN_ID, TOKENS, live

routes = web.RouteTableDef()

_NULLABLE_STRING = {"type": ["string", "null"]}
_PERMISSIONS = listing({"type": "string", "enum": sorted(Permission)})
# A scope as the caller is told it: the selector's canonical text, and each set of name globs (the key's, then
# a token's), a name matching one glob of every set.
_SCOPE = {"selector": _NULLABLE_STRING, "names": listing(listing({"type": "string"}))}


@routes.post(f"{API_PREFIX}/auth/tokens")
@requires(Permission.TOKENS_ISSUE)
@documented(
    "Issue a token",
    tag="auth",
    body=TokenRequest,
    status=201,
    data=shape(
        token="string",
        jti="string",
        role=_NULLABLE_STRING,
        permissions=_PERMISSIONS,
        **_SCOPE,
        expires_at="string",
    ),
)
async def issue_token(request: web.Request) -> web.Response:
    """A token for the calling key, at its role or a lower one asked for, with the key's permissions or fewer
    asked for (never more: a token only narrows its key); 201 with the token, shown once. It expires after `ttl`
    seconds, and with its key at the latest."""
    if request.get(TOKEN_ID):
        raise Forbidden("tokens are issued to API keys, not to other tokens")
    body = await load_json(request, TokenRequest)
    key, settings = request[PRINCIPAL], live(request).auth
    role = body.get("role", key.role)
    asked = frozenset(body["permissions"]) if "permissions" in body else None
    ttl = body.get("ttl", settings.token_ttl)
    if ttl > settings.token_max_ttl:
        raise BadRequest("ttl too long", errors=[{"field": "ttl", "message": f"at most {settings.token_max_ttl}"}])
    scope = Scope.of(body.get("selector"), body.get("names"))
    issued = request.config_dict[TOKENS].issue(key, role, asked, ttl, scope)
    return ok(
        {
            "token": issued["token"],
            "jti": issued["jti"],
            "role": role.value if role is not None else None,
            "permissions": sorted(issued["granted"]),
            **issued["scope"].described(),
            "expires_at": rfc3339(issued["exp"]),
        },
        status=201,
        headers={"Location": f"{API_PREFIX}/auth/tokens/{issued['jti']}"},  # where it is revoked
    )


@routes.delete(f"{API_PREFIX}/auth/tokens/{{jti}}")
@requires(Permission.TOKENS_REVOKE)
@documented("Revoke a token", tag="auth", path=TokenRef, data=shape(jti="string", revoked="boolean"))
async def revoke_token(request: web.Request) -> web.Response:
    jti = load_path(request, TokenRef)["jti"]
    request.config_dict[TOKENS].revoke(jti)
    return ok({"jti": jti, "revoked": True})


@routes.get(f"{API_PREFIX}/auth/whoami")
@requires(AUTHENTICATED)
@documented(
    "Say what the caller may do",
    tag="auth",
    query=NoQuery,
    data=shape(
        key="string",
        token_id=_NULLABLE_STRING,
        role=_NULLABLE_STRING,
        permissions=_PERMISSIONS,
        **_SCOPE,
        expires_at=_NULLABLE_STRING,
    ),
)
async def get_whoami(request: web.Request) -> web.Response:
    """The key (and token) the call was made with, its role, what it may do now (a token's: no more than its
    key's), and when it expires (null: never)."""
    load_query(request, NoQuery)
    principal = request[PRINCIPAL]
    return ok(
        {
            "key": principal.name,
            "token_id": request.get(TOKEN_ID),
            "role": principal.role.value if principal.role is not None else None,
            "permissions": sorted(principal.granted),
            **principal.scope.described(),
            "expires_at": rfc3339(principal.expires_at) if principal.expires_at is not None else None,
        }
    )
