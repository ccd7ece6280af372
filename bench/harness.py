"""What every benchmark needs: the engine and test image, a moorage daemon, Glances, labelled containers,
RSS sampling and side-by-side latency figures. No scenario lives here."""

from __future__ import annotations

import asyncio
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "127.0.0.1:5000/moorage-test/busybox:latest"
# Every container a benchmark makes carries this label, its value the run's id, so that a run removes exactly its own.
LABEL = "moorage.bench"
ENGINE_SOCKET = "/var/run/docker.sock"
ENGINE = "http://docker"
GLANCES_VENV = ROOT / ".bench" / "glances"
# The benchmark's containers need no network: without one, neither side's figures depend on the bridge
# (its veth pairs cost the engine alike on both sides, and a bridge can be missing on a shared engine).
NETWORK_MODE = "none"

Call = Callable[[], Awaitable[None]]


def setup_engine() -> None:
    """The engine, the local registry and the test image, as the tests have them (idempotent)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "engine"], check=True)


def glances_binary() -> Path:
    """Glances in a venv of its own (installed from PyPI on first use), so its dependencies never meet moorage's."""
    binary = GLANCES_VENV / "bin" / "glances"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(GLANCES_VENV)], check=True)
        subprocess.run([str(GLANCES_VENV / "bin" / "pip"), "install", "-q", "glances[web,containers]"], check=True)
    return binary


def start_glances(binary: Path, port: int) -> subprocess.Popen[bytes]:
    command = [str(binary), "-w", "--disable-webui", "--quiet", "--bind", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wrk_summary(text: str) -> dict[str, Any]:
    """wrk's summary: requests, rate, latency percentiles, socket errors and non-2xx/3xx answers."""
    requests, took, unit = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", text).groups()  # type: ignore[union-attr]
    seconds = float(took) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]  # wrk writes a minute as "1.00m"
    figures: dict[str, Any] = {"requests": int(requests), "seconds": seconds}
    figures["requests_per_s"] = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    for percent in ("50", "99"):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if match:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
            figures[f"p{percent}_ms"] = round(float(match.group(1)) * scale, 2)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    figures["socket_errors"] = sum(int(n) for n in socket.groups()) if socket else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    figures["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    return figures


@dataclass
class Moorage:
    """A `moorage serve` child with a bench config; it prints the admin key it generates into its log."""

    proc: subprocess.Popen[bytes]
    url: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


def start_moorage(workdir: Path, port: int) -> Moorage:
    config = workdir / "bench.toml"
    config.write_text(f'[server]\nstate_dir = "{workdir}/state"\nport = {port}\n')
    log_path = workdir / "daemon.log"
    with log_path.open("wb") as log:
        command = [sys.executable, "-m", "moorage", "serve", "--config", str(config)]
        proc = subprocess.Popen(command, stdout=log, stderr=log)
    for _ in range(150):
        text = log_path.read_text(errors="replace")
        if "listening" in text:
            key = next(word for word in text.split() if word.startswith("mrg_"))
            return Moorage(proc, f"http://127.0.0.1:{port}", key)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"moorage did not start: {log_path.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RssPeaks:
    """The highest RSS (MB) each watched process reached, sampled every 100 ms for as long as the run lasts."""

    def __init__(self) -> None:
        self.watched: dict[str, psutil.Process] = {}
        self.peak_mb: dict[str, float] = {}

    def watch(self, name: str, pid: int) -> None:
        self.watched[name] = psutil.Process(pid)
        self.peak_mb.setdefault(name, 0.0)

    def sample(self) -> None:
        for name, process in self.watched.items():
            with suppress(psutil.Error):
                self.peak_mb[name] = max(self.peak_mb[name], process.memory_info().rss / 2**20)

    @asynccontextmanager
    async def sampling(self) -> AsyncIterator[RssPeaks]:
        async def loop() -> None:
            while True:
                self.sample()
                await asyncio.sleep(0.1)

        task = asyncio.create_task(loop())
        try:
            yield self
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            self.sample()


@asynccontextmanager
async def sessions() -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    """One client library for both sides, keeping connections alive: (loopback HTTP, the engine's socket)."""
    timeout = aiohttp.ClientTimeout(total=600)
    engine_connector = aiohttp.UnixConnector(ENGINE_SOCKET, limit=0)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as http,
        aiohttp.ClientSession(connector=engine_connector, timeout=timeout) as engine,
    ):
        yield http, engine


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> bytes:
    async with session.request(method, url, **kwargs) as resp:
        body = await resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"{method} {url}: {resp.status} {body[:300]!r}")
        return body


@dataclass
class Latency:
    """Milliseconds of each call of one participant."""

    samples: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {"p50_ms": round(statistics.median(ordered), 3), "p99_ms": round(p99, 3), "calls": len(ordered)}


def seconds(samples: list[float]) -> dict[str, Any]:
    """Median, p90 (nearest rank) and max of a side's rounds, in seconds."""
    ordered = sorted(samples)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
    return {
        "p50_s": round(statistics.median(ordered), 4),
        "p90_s": round(p90, 4),
        "max_s": round(ordered[-1], 4),
        "rounds": [round(sample, 4) for sample in samples],
    }


async def side_by_side(calls: dict[str, tuple[Call, int]]) -> dict[str, dict[str, float]]:
    """Each participant's latency, its calls alternating with the others' one by one, so that the machine's
    drifts fall on all of them alike; a participant with fewer calls takes part in the first rounds only.
    One call each first, unmeasured, opens the connections."""
    for call, _ in calls.values():
        await call()
    measured = {name: Latency() for name in calls}
    for round_ in range(max(count for _, count in calls.values())):
        for name, (call, count) in calls.items():
            if round_ < count:
                started = time.perf_counter()
                await call()
                measured[name].samples.append((time.perf_counter() - started) * 1000)
    return {name: latency.figures() for name, latency in measured.items()}


class Containers:
    """The run's containers: made with its label, all removed at the end whatever happened."""

    def __init__(self, docker: aiodocker.Docker, run_id: str) -> None:
        self.docker = docker
        self.run_id = run_id

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL: self.run_id}

    async def make(self, name: str, cmd: list[str], *, start: bool = False, binds: tuple[str, ...] = ()) -> str:
        """A container named bench-RUN-name, with no network: it needs none (NETWORK_MODE)."""
        host_config = {"NetworkMode": NETWORK_MODE, "Binds": list(binds)}
        body = {"Image": IMAGE, "Cmd": cmd, "Labels": self.labels, "HostConfig": host_config}
        container = await self.docker.containers.create(body, name=f"bench-{self.run_id}-{name}")
        if start:
            await container.start()
        return container.id

    async def make_many(
        self,
        prefix: str,
        count: int,
        cmd: list[str],
        *,
        start: bool = False,
        first: int = 0,
        binds: tuple[str, ...] = (),
    ) -> list[str]:
        """`count` containers named prefix-first, prefix-first+1, ...; a few at a time: the engine serialises
        much of a create anyway."""
        gate = asyncio.Semaphore(4)

        async def one(index: int) -> str:
            async with gate:
                return await self.make(f"{prefix}-{index}", cmd, start=start, binds=binds)

        return list(await asyncio.gather(*(one(index) for index in range(first, first + count))))

    async def remove(self, ids: list[str]) -> None:
        gate = asyncio.Semaphore(8)

        async def one(container_id: str) -> None:
            async with gate:
                with suppress(aiodocker.DockerError):
                    await self.docker.containers.container(container_id).delete(force=True, v=True)

        await asyncio.gather(*(one(container_id) for container_id in ids))

    async def remove_all(self) -> None:
        """Everything carrying this run's label, including what moorage created for it."""
        found = await self.docker.containers.list(all=True, filters={"label": [f"{LABEL}={self.run_id}"]})
        await self.remove([container.id for container in found])


@dataclass
class Bench:
    """What a scenario runs against; child processes it starts are stopped with the run."""

    options: Any  # the command line's argparse.Namespace
    http: aiohttp.ClientSession
    engine: aiohttp.ClientSession
    moorage: Moorage
    containers: Containers
    rss: RssPeaks
    workdir: Path
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    glances_url: str | None = None
    proxy_url: str | None = None

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.children.append(proc)
        self.rss.watch(name, proc.pid)

    def spawn(self, name: str, command: list[str]) -> None:
        self.adopt(name, subprocess.Popen(command))

    async def glances(self) -> str | None:
        """Glances' API base URL (started on first use, then kept for the rest of the run); None with --no-glances."""
        if self.options.no_glances or self.glances_url is not None:
            return self.glances_url
        binary = self.options.glances or await asyncio.to_thread(glances_binary)
        port = self.options.glances_port
        self.adopt("glances", start_glances(binary, port))
        self.glances_url = f"http://127.0.0.1:{port}/api/4"
        return self.glances_url

    async def pass_through(self) -> str:
        """The base URL of a bare aiohttp proxy to the engine (started on first use): what a second HTTP hop
        costs with nothing else done, the floor under any call through moorage."""
        if self.proxy_url is None:
            port = self.options.proxy_port
            command = [sys.executable, str(ROOT / "bench" / "bare.py"), f"--port={port}", f"--engine={ENGINE_SOCKET}"]
            self.spawn("pass-through proxy", command)
            self.proxy_url = f"http://127.0.0.1:{port}/engine"
            await self.wait_until(f"{self.proxy_url}/version", lambda body: "ApiVersion" in body)
        return self.proxy_url

    async def wait_until(self, url: str, ready: Callable[[Any], bool], **kwargs: Any) -> None:
        """Until `url` answers 200 with JSON that `ready` accepts (a daemon starting, a first reading)."""
        for _ in range(300):
            with suppress(aiohttp.ClientError, ValueError):
                async with self.http.get(url, **kwargs) as resp:
                    if resp.status == 200 and ready(await resp.json()):
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{url} did not become ready")
