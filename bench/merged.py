"""A merged follow (GET /logs) of many chatty containers, beside the same containers each followed on its own."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from .harness import Bench
from .report import Row
from .streams import THROUGHPUT_TARGET, count_moorage


async def count_merged(resp: aiohttp.ClientResponse) -> tuple[int, int]:
    """(lines, containers told stopped) in a merged NDJSON stream, read to its end."""
    lines = stopped = 0
    async with resp:
        async for raw in resp.content:
            item = json.loads(raw)
            lines += "line" in item
            stopped += item.get("notice") == "container_stopped"
    return lines, stopped


async def one_round(bench: Bench, name: str, merged: bool) -> dict[str, Any]:
    """A fresh set of containers that print together once the streams are open; the lines that came through and
    their rate from the start to the last line, and the CPU moorage spent on them."""
    count, rate, seconds = bench.options.merged_containers, bench.options.merged_rate, bench.options.merged_seconds
    batches, per_batch = round(seconds * 10), max(1, rate // 10)
    script = (
        "while [ ! -e /go/go ]; do usleep 50000; done; i=0; "
        f"while [ $i -lt {batches} ]; do seq 1 {per_batch}; usleep 100000; i=$((i+1)); done"
    )
    expected = batches * per_batch * count
    moorage = psutil.Process(bench.moorage.proc.pid)
    with tempfile.TemporaryDirectory(dir=bench.workdir) as go:
        ids = await bench.containers.make_many(name, count, ["sh", "-c", script], start=True, binds=(f"{go}:/go:ro",))
        base = f"{bench.moorage.url}/api/v1"
        if merged:
            query = "&".join(f"container={i}" for i in ids)
            streams = [await bench.http.get(f"{base}/logs?{query}&follow=true", headers=bench.moorage.auth)]
        else:
            streams = [
                await bench.http.get(
                    f"{base}/containers/{i}/logs?follow=true&format=ndjson", headers=bench.moorage.auth
                )
                for i in ids
            ]
        for resp in streams:
            resp.raise_for_status()
        cpu = sum(moorage.cpu_times()[:2])
        started = time.monotonic()
        await asyncio.to_thread((Path(go) / "go").touch)
        if merged:
            lines, stopped = await count_merged(streams[0])
        else:
            lines, stopped = sum(await asyncio.gather(*(count_ndjson(resp) for resp in streams))), count
        elapsed = time.monotonic() - started
        cpu = sum(moorage.cpu_times()[:2]) - cpu
        await bench.containers.remove(ids)
    return {
        "lines_per_s": round(lines / elapsed),
        "lines": lines,
        "expected": expected,
        "all_arrived": lines == expected and stopped == count,
        "moorage_cpu_s": round(cpu, 2),
    }


async def count_ndjson(resp: aiohttp.ClientResponse) -> int:
    """Lines of one followed NDJSON log (its last line says why it ended)."""
    async with resp:
        return await count_moorage(resp) - 1


async def merged_follow(bench: Bench) -> list[Row]:
    """The same load twice: once as one merged stream of every container, once as a stream each."""
    singles = await one_round(bench, "single", merged=False)
    merged = await one_round(bench, "merged", merged=True)
    count, rate = bench.options.merged_containers, bench.options.merged_rate
    scenario = f"4. merged follow of {count} containers, {rate} lines/s each"
    return [
        Row(
            scenario,
            f"{count} single follows",
            merged,
            singles,
            "lines_per_s",
            THROUGHPUT_TARGET,
            merged["all_arrived"],
        )
    ]
