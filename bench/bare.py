"""The ceilings for this stack: bare aiohttp apps that do only what no API server can avoid.

    python bench/bare.py --port PORT --path /api/v1/metrics/resources --body FILE
    python bench/bare.py --port PORT --engine /var/run/docker.sock

With --body, one GET answered with a fixed JSON body. With --engine, `GET /engine/PATH?QUERY` passed to the
engine's socket and its answer passed back as it is, over one keep-alive client: the second HTTP hop that
a call through moorage costs before moorage does anything. No middleware, no auth, no schema, no parsing:
what is left is aiohttp itself, on uvloop, as moorage runs.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web


def answering(path: str, body: bytes) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(path, answer)
    return app


def passing_through(socket: str) -> web.Application:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def client(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(socket)) as session:
            app[session_key] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        url = f"http://docker/{request.match_info['tail']}"
        async with request.app[session_key].get(url, params=request.query) as answer:
            body = await answer.read()
            return web.Response(body=body, status=answer.status, content_type=answer.content_type)

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/engine/{tail:.+}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", help="with --body: the path answered")
    parser.add_argument("--body", type=Path, help="the fixed body to answer with")
    parser.add_argument("--engine", help="the engine's unix socket, to pass calls through to")
    args = parser.parse_args()
    if args.engine:
        app = passing_through(args.engine)
    elif args.path and args.body:
        app = answering(args.path, args.body.read_bytes())
    else:
        parser.error("give --engine, or --path and --body")
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
