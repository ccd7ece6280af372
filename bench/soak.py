"""The load run of issue 8: wrk at 64 connections for 60 s over the list, detail, metrics and log endpoints.

    bash scripts/setup.sh && .venv/bin/python -m bench.soak [--seconds 60] [--connections 64] [--json PATH]

Starts moorage and 20 labelled containers (10 running, each with 2,000 log lines), takes the daemon's RSS
and open file descriptors, runs wrk (scripts/setup.sh installs it) cycling through the endpoints, then
takes them again once the daemon has been idle for 32 s (aiohttp closes an idle engine connection at its
next sweep after 15 s idle: within 30 s).
Errors are wrk's non-2xx answers and socket errors. The run fails (exit status 1, saying why) on any error,
on more than --fd-slack open fds after than before, or on RSS grown by more than --rss-slack MB. Cleans up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import psutil

from bench.harness import Containers, RssPeaks, setup_engine, start_moorage, stop, wrk_summary

LINES = "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; exec sleep 3600"
# Each wrk thread walks these paths in turn; {id} takes each running container in turn.
PATHS = (
    "/api/v1/containers",
    "/api/v1/containers/{id}",
    "/api/v1/metrics/resources",
    "/api/v1/metrics/containers",
    "/api/v1/metrics/containers/{id}",
    "/api/v1/containers/{id}/logs?tail=100",
)


def wrk_script(ids: list[str], key: str) -> str:
    paths = [path.replace("{id}", cid) for cid in ids for path in PATHS]
    listed = ", ".join(json.dumps(path) for path in paths)
    return (
        f'wrk.headers["X-API-Key"] = "{key}"\n'
        f"local paths = {{{listed}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        '  return wrk.format("GET", paths[(i % #paths) + 1])\n'
        "end\n"
    )


def footprint(pid: int) -> dict[str, float]:
    process = psutil.Process(pid)
    return {"rss_mb": round(process.memory_info().rss / 2**20, 1), "fds": process.num_fds()}


async def soak(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    setup_engine()
    moorage = start_moorage(workdir, options.port)
    try:
        async with aiodocker.Docker() as docker:
            containers = Containers(docker, uuid.uuid4().hex[:8])
            try:
                running = await containers.make_many("log", 10, ["sh", "-c", LINES], start=True)
                await containers.make_many("idle", 10, ["true"])
                async with aiohttp.ClientSession(headers=moorage.auth) as http:
                    for path in ("/api/v1/containers", "/api/v1/metrics/containers"):  # warm: first readings in
                        async with http.get(f"{moorage.url}{path}") as resp:
                            assert resp.status == 200, await resp.text()
                    await asyncio.sleep(2)
                before = footprint(moorage.proc.pid)
                script = workdir / "paths.lua"
                script.write_text(wrk_script(running, moorage.key))
                command = [
                    "wrk",
                    "-t2",
                    f"-c{options.connections}",
                    f"-d{options.seconds}s",
                    "--timeout=10s",
                    "--latency",
                    "-s",
                    str(script),
                    moorage.url,
                ]
                rss = RssPeaks()
                rss.watch("moorage", moorage.proc.pid)
                async with rss.sampling():
                    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=True)
                figures = wrk_summary(done.stdout)
                await asyncio.sleep(options.settle)
                after = footprint(moorage.proc.pid)
            finally:
                await containers.remove_all()
    finally:
        stop(moorage.proc)
    return {
        "connections": options.connections,
        "seconds": options.seconds,
        **figures,
        "errors": figures["socket_errors"] + figures["non_2xx"],
        "before": before,
        "peak_rss_mb": round(rss.peak_mb["moorage"], 1),
        "after": after,
    }


def problems(result: dict[str, Any], options: argparse.Namespace) -> list[str]:
    """What keeps the run from passing: errors under load, or a daemon that did not come back to its start."""
    before, after = result["before"], result["after"]
    found = [f"{result['errors']} errors under load"] if result["errors"] else []
    if after["fds"] > before["fds"] + options.fd_slack:
        found.append(f"open fds {before['fds']} before, {after['fds']} after")
    if after["rss_mb"] > before["rss_mb"] + options.rss_slack:
        found.append(f"RSS {before['rss_mb']} MB before, {after['rss_mb']} MB after")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--settle", type=float, default=32.0, help="idle seconds before the 'after' figures")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--fd-slack", type=int, default=4, help="open fds the daemon may keep beyond its start")
    parser.add_argument("--rss-slack", type=float, default=15.0, help="MB of RSS it may keep beyond its start")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moorage-soak-") as workdir:
        result = asyncio.run(soak(options, Path(workdir)))
    result["problems"] = problems(result, options)
    text = json.dumps(result, indent=2)
    print(text)
    if options.json:
        options.json.write_text(text + "\n")
    if result["problems"]:
        raise SystemExit("; ".join(result["problems"]))


if __name__ == "__main__":
    main()
