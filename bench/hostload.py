"""Host metrics under load: requests/s at C concurrent connections against moorage, a bare aiohttp handler
answering moorage's own body (the ceiling for this stack) and Glances' /api/4/cpu and /api/4/mem."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys

from .harness import ROOT, Bench, wrk_summary
from .report import Row

RESOURCES = "/api/v1/metrics/resources"
# The figures come in halves, taken in turn for each target, so that a drift of the machine falls on all of them.
ROUNDS = 2


def generator(options: object) -> str:
    """wrk where it is installed (C: it saturates the bare handler with a fraction of a core); else load.py."""
    choice = getattr(options, "load_generator", "auto")
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    return str(choice)


async def wrk(url: str, connections: int, seconds: float, headers: dict[str, str]) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    proc = await asyncio.create_subprocess_exec(*command, url, stdout=asyncio.subprocess.PIPE)
    out = (await proc.communicate())[0].decode()
    if proc.returncode:
        raise RuntimeError(f"wrk failed: {out}")
    figures = wrk_summary(out)
    failed = figures["non_2xx"] + figures["socket_errors"]
    return {"requests": figures["requests"], "seconds": figures["seconds"], "failed": failed}


async def python_load(url: str, connections: int, seconds: float, headers: dict[str, str]) -> dict[str, float]:
    command = [sys.executable, str(ROOT / "bench" / "load.py"), url, f"--connections={connections}"]
    command += [f"--seconds={seconds}", *(f"--header={name}: {value}" for name, value in headers.items())]
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out = (await proc.communicate())[0]
    if proc.returncode:
        raise RuntimeError(f"load.py failed on {url}")
    return dict(json.loads(out))


async def host_load(bench: Bench) -> list[Row]:
    options = bench.options
    tool = generator(options)
    load = wrk if tool == "wrk" else python_load
    moorage_url = f"{bench.moorage.url}{RESOURCES}"
    await bench.wait_until(moorage_url, lambda body: body["code"] == 200, headers=bench.moorage.auth)
    body = bench.workdir / "resources.json"
    async with bench.http.get(moorage_url, headers=bench.moorage.auth) as resp:
        body.write_bytes(await resp.read())
    port = options.bare_port
    bare = [sys.executable, str(ROOT / "bench" / "bare.py"), f"--port={port}", f"--path={RESOURCES}", f"--body={body}"]
    bench.spawn("bare aiohttp", bare)
    bare_url = f"http://127.0.0.1:{port}{RESOURCES}"
    await bench.wait_until(bare_url, lambda answer: answer["code"] == 200)
    targets = {"moorage": (moorage_url, bench.moorage.auth), "bare aiohttp": (bare_url, {})}
    glances = await bench.glances()
    if glances is not None:
        for plugin in ("cpu", "mem"):
            await bench.wait_until(f"{glances}/{plugin}", lambda answer: bool(answer))
            targets[f"Glances /api/4/{plugin}"] = (f"{glances}/{plugin}", {})
    totals = {name: {"requests": 0, "seconds": 0.0, "failed": 0} for name in targets}
    for _ in range(ROUNDS):
        for name, (url, headers) in targets.items():
            figures = await load(url, options.connections, options.load_seconds / ROUNDS, headers)
            for key in totals[name]:
                totals[name][key] += figures[key]
    rates = {
        name: {**total, "requests_per_s": round(total["requests"] / total["seconds"], 1), "generator": tool}
        for name, total in totals.items()
    }
    label = f"6. host metrics, {options.connections} connections"
    served = all(total["failed"] == 0 for total in totals.values())
    rows = [Row(label, "bare aiohttp", rates["moorage"], rates["bare aiohttp"], "requests_per_s", ">= 0.8", served)]
    rows += [
        Row(label, name, rates["moorage"], rates[name], "requests_per_s", "> 1.0", served)
        for name in targets
        if name.startswith("Glances")
    ]
    return rows
