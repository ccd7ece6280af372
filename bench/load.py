"""A load generator: C connections each sending GETs back to back for S seconds; prints requests/s as JSON.

    python bench/load.py URL [--connections 32] [--seconds 10] [--header 'Name: value']

Run in a process of its own, so that it takes none of the benchmark's event loop. It reports its own CPU
use too: a generator near 100 % of a core is the bottleneck rather than the server it loads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
import psutil


async def worker(session: aiohttp.ClientSession, url: str, deadline: float, counts: dict[str, int]) -> None:
    while time.monotonic() < deadline:
        async with session.get(url) as resp:
            await resp.read()
            counts["ok" if resp.status == 200 else "failed"] += 1


async def load(url: str, connections: int, seconds: float, headers: dict[str, str]) -> dict[str, float]:
    counts = {"ok": 0, "failed": 0}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async with session.get(url) as resp:  # one connection up before the clock starts
            await resp.read()
        cpu = psutil.Process().cpu_times()
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(worker(session, url, deadline, counts) for _ in range(connections)))
        elapsed = time.monotonic() - started
        used = psutil.Process().cpu_times()
    busy = (used.user + used.system - cpu.user - cpu.system) / elapsed
    return {
        "requests_per_s": round(counts["ok"] / elapsed, 1),
        "requests": counts["ok"],
        "failed": counts["failed"],
        "seconds": round(elapsed, 2),
        "generator_cpu_percent": round(busy * 100, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    args = parser.parse_args()
    headers = dict(header.split(": ", 1) for header in args.header)
    print(json.dumps(asyncio.run(load(args.url, args.connections, args.seconds, headers))))


if __name__ == "__main__":
    main()
