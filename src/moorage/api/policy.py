"""The host-safety policy in force."""

from __future__ import annotations

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.schemas.policy import PolicyInForceSchema, policy_in_force
from moorage.settings import Permission
from moorage.web.operations import documented
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.state import live

routes = web.RouteTableDef()


@routes.get(f"{API_PREFIX}/policy")
@requires(Permission.POLICY_READ)
@documented("Show the host-safety policy", tag="policy", data=PolicyInForceSchema)
async def get_policy(request: web.Request) -> web.Response:
    """[policy] as it is in force (a SIGHUP reload included), each key named as config.toml names it, and the
    rules no key changes. Admin only: it tells what a create may get away with."""
    return ok(policy_in_force(live(request).policy))
