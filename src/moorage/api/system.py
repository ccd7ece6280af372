"""The host's Docker as a whole: disk usage."""

from __future__ import annotations

from aiohttp import web

from moorage.api.paths import API_PREFIX
from moorage.containers.diskusage import engine_disk_usage
from moorage.schemas.system import DiskUsageQuery, DiskUsageSchema, disk_usage
from moorage.settings import Permission
from moorage.web.operations import ENGINE, documented
from moorage.web.requests import load_query
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.scoping import check_scoped_host_wide
from moorage.web.state import docker

routes = web.RouteTableDef()


@routes.get(f"{API_PREFIX}/system/df")
@requires(Permission.SYSTEM_READ)
@documented("Show disk usage", tag="system", query=DiskUsageQuery, data=DiskUsageSchema, errors=ENGINE)
async def get_disk_usage(request: web.Request) -> web.Response:
    """Like `docker system df` (with ?verbose=true, `-v`): images, containers, volumes and build cache, each with
    its count, how many are in use, its size and what a prune could reclaim, figured as the CLI does."""
    verbose = load_query(request, DiskUsageQuery)["verbose"]
    check_scoped_host_wide(request, "the disk usage")
    return ok(disk_usage(await engine_disk_usage(docker(request)), verbose))
