"""Bearer tokens: issued to an API key, revoked by an admin."""

from __future__ import annotations

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.errors import BadRequest, Forbidden
from moorage.schemas.auth import TokenRef, TokenRequest
from moorage.settings import Role
from moorage.timestamps import rfc3339
from moorage.web.operations import documented, shape
from moorage.web.requests import load_json, load_path
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.state import PRINCIPAL, TOKENS, VIA_TOKEN, live

routes = web.RouteTableDef()


@routes.post(f"{API_PREFIX}/auth/tokens")
@requires(Role.VIEWER)
@documented(
    "Issue a token",
    tag="auth",
    body=TokenRequest,
    status=201,
    data=shape(token="string", jti="string", role="string", expires_at="string"),
)
async def issue_token(request: web.Request) -> web.Response:
    """A token for the calling key, at its role or a lower one asked for; 201 with the token, shown once."""
    if request.get(VIA_TOKEN):
        raise Forbidden("tokens are issued to API keys, not to other tokens")
    body = await load_json(request, TokenRequest)
    key, settings = request[PRINCIPAL], live(request).auth
    role = body.get("role", key.role)
    if not key.role.allows(role):
        raise Forbidden(f"key {key.name!r} has role {key.role.value}: it cannot issue a {role.value} token")
    ttl = body.get("ttl", settings.token_ttl)
    if ttl > settings.token_max_ttl:
        raise BadRequest("ttl too long", errors=[{"field": "ttl", "message": f"at most {settings.token_max_ttl}"}])
    issued = request.config_dict[TOKENS].issue(key, role, ttl)
    expires = rfc3339(issued["exp"])
    return ok(
        {"token": issued["token"], "jti": issued["jti"], "role": role.value, "expires_at": expires},
        status=201,
        headers={"Location": f"{API_PREFIX}/auth/tokens/{issued['jti']}"},  # where it is revoked
    )


@routes.delete(f"{API_PREFIX}/auth/tokens/{{jti}}")
@requires(Role.ADMIN)
@documented("Revoke a token", tag="auth", path=TokenRef, data=shape(jti="string", revoked="boolean"))
async def revoke_token(request: web.Request) -> web.Response:
    jti = load_path(request, TokenRef)["jti"]
    request.config_dict[TOKENS].revoke(jti)
    return ok({"jti": jti, "revoked": True})
