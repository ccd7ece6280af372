"""Log dump throughput: moorage (format=text) against the engine's own socket, side by side in one run.

    bash scripts/setup.sh && .venv/bin/python bench/logs.py [--lines 2000000] [--rounds 3]

A container writes N lines; its log is read whole, alternately through a moorage daemon started for
the run and straight from the engine's socket, both by curl. Prints lines/s for each, their ratio (target >= 0.9),
and the daemon's peak RSS growth while dumping (target <= 30 MB); --json writes the figures too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiodocker

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "127.0.0.1:5000/moorage-test/busybox:latest"
LABEL = "moorage.bench"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def curl(url: str, *args: str) -> tuple[int, float]:
    """(bytes, seconds) of one GET by curl: an equally lean client for both sides, so neither is the bottleneck."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", *args, url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"curl {url} failed with {proc.returncode}")
    size, seconds = out.split()
    return int(size), float(seconds)


async def sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        await asyncio.sleep(0.02)


def start_daemon(workdir: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    config = workdir / "bench.toml"
    config.write_text(f'[server]\nstate_dir = "{workdir}/state"\nport = {port}\n')
    log = (workdir / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "moorage", "serve", "--config", str(config)], stdout=log, stderr=log)
    for _ in range(100):
        text = (workdir / "daemon.log").read_text()
        if "listening" in text:
            key = next(word for word in text.split() if word.startswith("mrg_"))
            return proc, key
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"moorage did not start: {(workdir / 'daemon.log').read_text()}")


async def run(lines: int, rounds: int, port: int) -> dict[str, float]:
    async with aiodocker.Docker() as docker:
        container = await docker.containers.run(
            {"Image": IMAGE, "Cmd": ["seq", "1", str(lines)], "Labels": {LABEL: "logs"}}, name=None
        )
        await container.wait()
        with tempfile.TemporaryDirectory() as tmp:
            proc, key = start_daemon(Path(tmp), port)
            try:
                return await measure(container.id, lines, rounds, port, key, proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                await container.delete(force=True)


async def measure(container_id: str, lines: int, rounds: int, port: int, key: str, pid: int) -> dict[str, float]:
    engine_url = f"http://docker/containers/{container_id}/logs?stdout=1&stderr=1"
    daemon_url = f"http://127.0.0.1:{port}/api/v1/containers/{container_id}/logs?format=text"
    engine_rates, daemon_rates = [], []
    baseline = rss_kib(pid)
    peak = [baseline]
    for _ in range(rounds):
        _, seconds = await curl(engine_url, "--unix-socket", "/var/run/docker.sock")
        engine_rates.append(lines / seconds)
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(pid, peak, stop))
        size, seconds = await curl(daemon_url, "-H", f"X-API-Key: {key}")
        daemon_rates.append(lines / seconds)
        stop.set()
        await sampler
    expected = sum(len(str(n)) + 1 for n in range(1, lines + 1))
    if size != expected:
        raise RuntimeError(f"moorage returned {size} bytes, the log holds {expected}")
    print("rounds (lines/s), engine:", [round(r) for r in engine_rates], "moorage:", [round(r) for r in daemon_rates])
    engine_rate, daemon_rate = statistics.median(engine_rates), statistics.median(daemon_rates)
    return {
        "lines": lines,
        "engine_lines_per_s": round(engine_rate),
        "moorage_lines_per_s": round(daemon_rate),
        "ratio": round(daemon_rate / engine_rate, 3),
        "moorage_rss_growth_mb": round((peak[0] - baseline) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "engine"], check=True)
    figures = asyncio.run(run(args.lines, args.rounds, args.port))
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
