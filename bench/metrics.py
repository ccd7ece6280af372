"""Container metrics latency and idle cost: moorage beside the engine's stats call and Glances, in one run.

    bash scripts/setup.sh && .venv/bin/python bench/metrics.py [--containers 50] [--calls 200] [--idle 60]

Starts N sleeping containers, a moorage daemon and Glances (`glances[web,containers]` in its own venv
under .bench/, `glances -w --disable-webui` on loopback), then measures, alternating, p50/p99 of
moorage's single-container and all-container calls, Glances' /api/4/containers, and the engine's own
stats call (one-shot) for the same containers; then each daemon's CPU and RSS while idle. Cleans up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiodocker
import aiohttp

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "127.0.0.1:5000/moorage-test/busybox:latest"
LABEL = "moorage.bench"
GLANCES_VENV = ROOT / ".bench" / "glances"
TICKS = os.sysconf("SC_CLK_TCK")


def glances() -> Path:
    """Glances in a venv of its own (installed from PyPI on first use)."""
    binary = GLANCES_VENV / "bin" / "glances"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(GLANCES_VENV)], check=True)
        pip = [str(GLANCES_VENV / "bin" / "pip"), "install", "-q", "glances[web,containers]"]
        subprocess.run(pip, check=True)
    return binary


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def wait_http(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], ready: Callable[[object], bool]
) -> None:
    for _ in range(300):
        try:
            async with session.get(url, headers=headers) as resp:
                if resp.status == 200 and ready(await resp.json()):
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


async def timed(call: Callable[[], Awaitable[None]], count: int) -> tuple[float, float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return statistics.median(latencies), latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


async def get(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> None:
    async with session.get(url, headers=headers) as resp:
        resp.raise_for_status()
        await resp.read()


async def measure(
    args: argparse.Namespace, key: str, moorage_pid: int, glances_pid: int, ids: list[str]
) -> dict[str, object]:
    auth = {"X-API-Key": key}
    moorage = f"http://127.0.0.1:{args.port}"
    glances_url = f"http://127.0.0.1:{args.glances_port}/api/4/containers"
    engine_connector = aiohttp.UnixConnector("/var/run/docker.sock")
    async with aiohttp.ClientSession() as session, aiohttp.ClientSession(connector=engine_connector) as engine:
        await wait_http(session, f"{moorage}/api/v1/metrics/containers", auth, lambda d: d["data"]["total"] >= len(ids))  # type: ignore[index]
        await wait_http(session, glances_url, {}, lambda d: len(d) >= len(ids))  # type: ignore[arg-type]
        calls: dict[str, tuple[Callable[[], Awaitable[None]], int]] = {
            "moorage one container": (
                lambda: get(session, f"{moorage}/api/v1/metrics/containers/{ids[0]}", auth), args.calls
            ),
            "moorage all containers": (lambda: get(session, f"{moorage}/api/v1/metrics/containers", auth), args.calls),
            "glances /api/4/containers": (lambda: get(session, glances_url), args.calls),
            # About a second each (the engine waits for a second reading): fewer of them.
            "engine stats (one-shot)": (
                lambda: get(engine, f"http://docker/containers/{ids[0]}/stats?stream=false&one-shot=true"),
                max(5, args.calls // 20),
            ),
        }  # fmt: skip
        latency = {}
        for name, (call, count) in calls.items():
            p50, p99 = await timed(call, count)
            latency[name] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "calls": count}
    before = {pid: cpu_seconds(pid) for pid in (moorage_pid, glances_pid)}
    await asyncio.sleep(args.idle)
    idle = {
        name: {
            "cpu_percent_of_a_core": round((cpu_seconds(pid) - before[pid]) / args.idle * 100, 2),
            "rss_mb": round(rss_mb(pid), 1),
        }
        for name, pid in (("moorage", moorage_pid), ("glances", glances_pid))
    }
    return {"containers": len(ids), "latency": latency, "idle_seconds": args.idle, "idle": idle}


def start_daemons(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """moorage (printing its generated key to daemon.log) and Glances, both on loopback."""
    config = tmp / "bench.toml"
    config.write_text(f'[server]\nstate_dir = "{tmp}/state"\nport = {args.port}\n')
    log = (tmp / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "moorage", "serve", "--config", str(config)], stdout=log, stderr=log
    )
    command = [str(args.glances or glances()), "-w", "--disable-webui", "--quiet"]
    command += ["--bind", "127.0.0.1", "--port", str(args.glances_port)]
    peer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return daemon, peer


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with aiodocker.Docker() as docker:
        made = []
        try:
            for index in range(args.containers):
                container = await docker.containers.run(
                    {"Image": IMAGE, "Cmd": ["sleep", "3600"], "Labels": {LABEL: "metrics"}},
                    name=f"bench-metrics-{index}",
                )
                made.append(container)
            with tempfile.TemporaryDirectory() as tmp:
                daemon, peer = start_daemons(args, Path(tmp))
                try:
                    await asyncio.sleep(1.5)
                    text = (Path(tmp) / "daemon.log").read_text()
                    key = next(word for word in text.split() if word.startswith("mrg_"))
                    return await measure(args, key, daemon.pid, peer.pid, [c.id for c in made])
                finally:
                    for process in (daemon, peer):
                        process.terminate()
                        process.wait(timeout=30)
        finally:
            for container in made:
                await container.delete(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--glances-port", type=int, default=61208)
    parser.add_argument("--glances", type=Path, help="a glances binary to use (default: installed under .bench/)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "engine"], check=True)
    figures = asyncio.run(run(args))
    print(f"{figures['containers']} running containers")
    for name, row in figures["latency"].items():  # type: ignore[attr-defined]
        print(f"  {name:<28} p50 {row['p50_ms']:>8} ms   p99 {row['p99_ms']:>8} ms   ({row['calls']} calls)")
    print(f"idle over {figures['idle_seconds']} s")
    for name, row in figures["idle"].items():  # type: ignore[attr-defined]
        print(f"  {name:<28} {row['cpu_percent_of_a_core']:>6} % of a core   RSS {row['rss_mb']} MB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
