"""Streams: a whole log dumped (throughput), and many followed logs at once (every line, at what rate)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from .harness import ENGINE, ENGINE_SOCKET, Bench
from .report import Row

THROUGHPUT_TARGET = ">= 0.9"


async def curl(url: str, *args: str) -> tuple[int, float]:
    """(bytes, seconds) of one GET by curl. A dump is read by curl on both sides: the engine sends one HTTP
    chunk per line, and a Python client would spend more per chunk than the engine does."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", *args, url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"curl {url} failed with {proc.returncode}")
    size, seconds = out.split()
    return int(size), float(seconds)


async def dump(bench: Bench) -> list[Row]:
    """A container writes N lines; its log is read whole, alternately through moorage and from the engine."""
    lines = bench.options.log_lines
    container_id = await bench.containers.make("logs", ["seq", "1", str(lines)], start=True)
    await bench.containers.docker.containers.container(container_id).wait()
    expected = sum(len(str(n)) + 1 for n in range(1, lines + 1))
    engine_url = f"{ENGINE}/containers/{container_id}/logs?stdout=1&stderr=1"
    moorage_url = f"{bench.moorage.url}/api/v1/containers/{container_id}/logs?format=text"
    rates: dict[str, list[float]] = {"engine": [], "moorage": []}
    for _ in range(bench.options.log_rounds):
        _, seconds = await curl(engine_url, "--unix-socket", ENGINE_SOCKET)
        rates["engine"].append(lines / seconds)
        size, seconds = await curl(moorage_url, "-H", f"X-API-Key: {bench.moorage.key}")
        rates["moorage"].append(lines / seconds)
        if size != expected:
            raise RuntimeError(f"moorage returned {size} bytes, the log holds {expected}")
    figures = {
        side: {"lines_per_s": round(statistics.median(r)), "rounds": [round(x) for x in r]} for side, r in rates.items()
    }
    scenario = f"4. log dump, {lines:,} lines"
    return [Row(scenario, "engine", figures["moorage"], figures["engine"], "lines_per_s", THROUGHPUT_TARGET)]


async def count_moorage(resp: aiohttp.ClientResponse) -> int:
    lines = 0
    async for chunk in resp.content.iter_any():
        lines += chunk.count(b"\n")
    return lines


async def count_engine(resp: aiohttp.ClientResponse) -> int:
    """Lines in the engine's multiplexed stream: 8-byte frame headers (stream, size) before each payload."""
    lines = 0
    while True:
        try:
            header = await resp.content.readexactly(8)
        except asyncio.IncompleteReadError:
            return lines
        payload = await resp.content.readexactly(int.from_bytes(header[4:], "big"))
        lines += payload.count(b"\n")


Counter = Callable[[aiohttp.ClientResponse], Awaitable[int]]


async def delivered(
    responses: list[aiohttp.ClientResponse], counter: Counter, expected: int, since: float
) -> dict[str, Any]:
    """Lines that came through the streams, a second since `since`, and whether each stream had every line."""

    async def one(resp: aiohttp.ClientResponse) -> int:
        async with resp:
            return await counter(resp)

    counts = await asyncio.gather(*(one(resp) for resp in responses))
    rate = sum(counts) / (time.monotonic() - since)
    arrived = all(count == expected for count in counts)
    return {
        "lines_per_s": round(rate),
        "lines": sum(counts),
        "expected": expected * len(counts),
        "all_arrived": arrived,
    }


async def follow(bench: Bench) -> list[Row]:
    """F containers each print `rate` lines a second for `seconds`, once every stream is open (they wait for a
    file); each container is followed through moorage and straight from the engine at the same time."""
    count, seconds, rate = bench.options.followers, bench.options.follow_seconds, bench.options.follow_rate
    batches, per_batch = round(seconds * 10), max(1, rate // 10)
    script = (
        "while [ ! -e /go/go ]; do usleep 50000; done; i=0; "
        f"while [ $i -lt {batches} ]; do seq 1 {per_batch}; usleep 100000; i=$((i+1)); done"
    )
    expected = batches * per_batch
    with tempfile.TemporaryDirectory(dir=bench.workdir) as go:
        ids = await bench.containers.make_many(
            "follow", count, ["sh", "-c", script], start=True, binds=(f"{go}:/go:ro",)
        )
        through_moorage = [
            await bench.http.get(
                f"{bench.moorage.url}/api/v1/containers/{i}/logs?follow=true", headers=bench.moorage.auth
            )
            for i in ids
        ]
        on_engine = [await bench.engine.get(f"{ENGINE}/containers/{i}/logs?follow=1&stdout=1&stderr=1") for i in ids]
        for resp in through_moorage + on_engine:
            resp.raise_for_status()
        started = time.monotonic()
        await asyncio.to_thread((Path(go) / "go").touch)
        moorage, engine = await asyncio.gather(
            delivered(through_moorage, count_moorage, expected, started),
            delivered(on_engine, count_engine, expected, started),
        )
    scenario = f"4. {count} follow streams, {per_batch * 10} lines/s each"
    # Every line must come through moorage; the engine's own streams are the yardstick for the rate only.
    return [Row(scenario, "engine", moorage, engine, "lines_per_s", THROUGHPUT_TARGET, moorage["all_arrived"])]
