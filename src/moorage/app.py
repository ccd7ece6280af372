"""The application factory: settings in, a configured aiohttp Application out; no I/O here."""

from __future__ import annotations

from aiohttp import web

from .api import setup_routes
from .config import Settings
from .engine import end_streams, engine_ctx
from .keys import SETTINGS
from .middlewares import auth_middleware, error_middleware


async def hide_server_version(request: web.Request, response: web.StreamResponse) -> None:
    """Name no versions to unauthenticated callers: aiohttp's default Server header lists Python's and its own."""
    response.headers["Server"] = "moorage"


def create_app(settings: Settings) -> web.Application:
    # The error middleware is outermost, so that auth failures are rendered by it too.
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=settings.server.max_body_size
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(engine_ctx)
    app.on_shutdown.append(end_streams)
    app.on_response_prepare.append(hide_server_version)
    setup_routes(app)
    return app
