"""One-shot exec (issue 16): `echo hi` through moorage beside the engine's own three calls (exec create, start,
inspect) and beside `docker exec`, call by call in turn."""

from __future__ import annotations

import asyncio
import json

from .harness import ENGINE, Bench, fetch, side_by_side
from .report import Row

ENGINE_TARGET = "<= 1.2"
CLI_TARGET = "< 1.0"
COMMAND = ["echo", "hi"]


async def one_shot(bench: Bench) -> list[Row]:
    container_id = await bench.containers.make("exec", ["sleep", "3600"], start=True)
    url = f"{bench.moorage.url}/api/v1/containers/{container_id}/exec"

    async def through_moorage() -> None:
        body = json.loads(await fetch(bench.http, "POST", url, json={"command": COMMAND}, headers=bench.moorage.auth))
        if body["data"]["stdout"] != "hi\n" or body["data"]["exit_code"] != 0:
            raise RuntimeError(f"moorage's exec answered {body}")

    async def on_engine() -> None:
        asked = {"AttachStdout": True, "AttachStderr": True, "Cmd": COMMAND}
        created = json.loads(await fetch(bench.engine, "POST", f"{ENGINE}/containers/{container_id}/exec", json=asked))
        # Without an upgrade the engine answers the output as the response body, multiplexed, to the end.
        output = await fetch(bench.engine, "POST", f"{ENGINE}/exec/{created['Id']}/start", json={"Detach": False})
        inspected = json.loads(await fetch(bench.engine, "GET", f"{ENGINE}/exec/{created['Id']}/json"))
        if not output.endswith(b"hi\n") or inspected["ExitCode"] != 0:
            raise RuntimeError(f"the engine's exec gave {output!r}, {inspected['ExitCode']}")

    async def by_cli() -> None:
        proc = await asyncio.create_subprocess_exec(
            "docker", "exec", container_id, *COMMAND, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        if proc.returncode or out != b"hi\n":
            raise RuntimeError(f"docker exec gave {proc.returncode}: {out!r} {err!r}")

    count = bench.options.exec_rounds
    figures = await side_by_side(
        {"moorage": (through_moorage, count), "engine": (on_engine, count), "cli": (by_cli, count)}
    )
    scenario = "8. exec echo hi, one-shot"
    return [
        Row(
            scenario,
            "engine: exec create, start, inspect",
            figures["moorage"],
            figures["engine"],
            "p50_ms",
            ENGINE_TARGET,
        ),
        Row(scenario, "docker exec (the CLI)", figures["moorage"], figures["cli"], "p50_ms", CLI_TARGET),
    ]
