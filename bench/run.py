"""moorage's overhead over the Docker engine, every scenario side by side in one run (issue 9).

    bash scripts/setup.sh && .venv/bin/python -m bench.run [--json bench.json]

Sets up the engine and test image, starts `moorage serve` with a bench config, makes the containers, volumes
and networks (labelled moorage.bench=RUN), measures every scenario against its baseline in the same run (the engine's
socket with the same client library, keep-alive on both; Glances; a bare aiohttp handler), samples the
RSS of moorage and Glances throughout, prints a table, writes it as JSON, and removes all it made.
--only SCENARIO (repeatable) runs a few: list, detail, cycle, logs, follow, merged, grep, metrics, host, recreate,
exec, volumes, networks; --profile DIR records moorage with py-spy in each scenario (which costs it a little: not for
the figures of record).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiodocker

from . import execs, grep, hostload, latency, merged, objects, recreate, streams
from .harness import Bench, Containers, RssPeaks, sessions, setup_engine, start_moorage, stop
from .profile import profiled
from .report import Row, markdown

SCENARIOS: dict[str, Callable[[Bench], Awaitable[list[Row]]]] = {
    "list": latency.listing,
    "detail": latency.detail,
    "cycle": latency.cycle,
    "logs": streams.dump,
    "follow": streams.follow,
    "merged": merged.merged_follow,
    "grep": grep.search,
    "metrics": latency.metrics,
    "host": hostload.host_load,
    "recreate": recreate.recreate,
    "exec": execs.one_shot,
    "volumes": objects.volumes,
    "networks": objects.networks,
}
# Glances' RSS on this machine with 50 containers, the bar when Glances is not run beside moorage.
GLANCES_RSS_MB = 85.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def positive(text: str) -> int:
    """A count of rounds: a figure needs one at least."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def csv_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def machine(engine_version: dict[str, Any]) -> dict[str, Any]:
    os_name = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line).get(
        "PRETTY_NAME", platform.system()
    )
    return {
        "cores": len(os.sched_getaffinity(0)),
        "os": os_name.strip('"'),
        "python": platform.python_version(),
        "docker": engine_version.get("Version"),
    }


def rss_row(rss: RssPeaks) -> Row:
    moorage = {"rss_mb": round(rss.peak_mb["moorage"], 1)}
    if "glances" in rss.peak_mb:
        baseline, glances = "Glances", {"rss_mb": round(rss.peak_mb["glances"], 1)}
    else:
        baseline, glances = "Glances here, earlier", {"rss_mb": GLANCES_RSS_MB}
    return Row("RSS, highest through the run", baseline, moorage, glances, "rss_mb", "< 1.0")


async def run(options: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    rows: list[tuple[str, Row]] = []
    rss = RssPeaks()
    async with aiodocker.Docker() as docker, sessions() as (http, engine):
        containers = Containers(docker, run_id)
        with tempfile.TemporaryDirectory(prefix="moorage-bench-") as tmp:
            workdir = Path(tmp)
            daemon = start_moorage(workdir, options.port)
            bench = Bench(options, http, engine, daemon, containers, rss, workdir, [daemon.proc])
            rss.watch("moorage", daemon.proc.pid)
            try:
                async with rss.sampling():
                    for name in [name for name in SCENARIOS if name in (options.only or SCENARIOS)]:
                        started = time.monotonic()
                        with profiled(options.profile, name, daemon.proc.pid):
                            rows += [(name, row) for row in await SCENARIOS[name](bench)]
                        print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
                rows.append(("rss", rss_row(rss)))
            finally:
                for proc in bench.children:
                    stop(proc)
                await containers.remove_all()
        info = machine(await docker.version())
    return {
        "run_id": run_id,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": shlex.join([".venv/bin/python", "-m", "bench.run", *sys.argv[1:]]),
        "machine": info,
        "rows": [{"name": name, **row.as_json()} for name, row in rows],
        "markdown": markdown([row for _, row in rows]),
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=csv_ints, default=[10, 100, 500], help="containers present when listing")
    parser.add_argument("--requests", type=int, default=200, help="calls per participant in a latency scenario")
    parser.add_argument("--log-lines", type=int, default=2_000_000)
    parser.add_argument("--log-rounds", type=int, default=3, help="dumps per side")
    parser.add_argument("--grep-rounds", type=positive, default=3, help="greps of the --log-lines log per side")
    parser.add_argument("--grep-seconds", type=float, default=90.0, help="no grep round begins after this")
    parser.add_argument("--followers", type=int, default=100, help="concurrent follow streams (per side)")
    parser.add_argument("--follow-rate", type=int, default=100, help="lines a second each followed container writes")
    parser.add_argument("--follow-seconds", type=float, default=10.0)
    parser.add_argument("--merged-containers", type=positive, default=20, help="containers in the merged follow")
    parser.add_argument("--merged-rate", type=positive, default=1000, help="lines a second each of them writes")
    parser.add_argument("--merged-seconds", type=float, default=10.0)
    parser.add_argument("--metrics-containers", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=10.0, help="per target, host metrics under load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--load-generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--recreate-rounds", type=positive, default=10, help="measured recreates per side")
    parser.add_argument("--exec-rounds", type=positive, default=100, help="measured one-shot execs per side")
    parser.add_argument("--objects", type=positive, default=200, help="volumes, and networks, present when listing")
    parser.add_argument("--glances", type=Path, help="a glances binary (default: installed under .bench/)")
    parser.add_argument("--no-glances", action="store_true")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", type=Path, help="py-spy moorage in each scenario, stacks and summaries here")
    parser.add_argument("--port", type=int, default=0, help="moorage's (default: a free one)")
    parser.add_argument("--glances-port", type=int, default=0)
    parser.add_argument("--bare-port", type=int, default=0)
    parser.add_argument("--proxy-port", type=int, default=0)
    return parser


def main() -> None:
    options = parser().parse_args()
    for name in ("port", "glances_port", "bare_port", "proxy_port"):
        setattr(options, name, getattr(options, name) or free_port())
    setup_engine()
    loop = asyncio.new_event_loop()
    main_task = loop.create_task(run(options))
    # SIGTERM (as from `kill` or a CI timeout) ends the run like Ctrl-C: through the finally blocks that clean up.
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    loop.add_signal_handler(signal.SIGINT, main_task.cancel)
    try:
        results = loop.run_until_complete(main_task)
    except asyncio.CancelledError:
        sys.exit("interrupted: what the run made is removed")
    finally:
        loop.close()
    info = results["machine"]
    print(f"\n{results['date']}; {info['cores']} cores, {info['os']}, Python {info['python']}, Docker {info['docker']}")
    print(f"{results['command']}\n\n{results['markdown']}")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
