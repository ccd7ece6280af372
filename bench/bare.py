"""The ceiling for this stack: a bare aiohttp app answering one GET with a fixed JSON body.

    python bench/bare.py --port PORT --path /api/v1/metrics/resources --body FILE

No middleware, no auth, no schema: what is left is aiohttp itself, the same server moorage runs on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvloop
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", type=Path, required=True)
    args = parser.parse_args()
    body = args.body.read_bytes()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(args.path, answer)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
