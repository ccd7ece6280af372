"""Recreate with the latest image (issue 15): one call to moorage beside the steps an operator's script runs with
the docker CLI (inspect, pull, create, stop, start, rm, rename), round by round in turn, each on a running
container of the same settings."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from typing import Any

from .harness import Bench, fetch, seconds
from .report import Row

TARGET = "<= 1.1"
# Exits at once on SIGTERM: as PID 1 without a handler, `sleep` would ignore it and every stop would wait out
# the grace (10 s on both sides). `wait` returns on the signal, where a foreground `sleep` would delay the trap.
STOPS_ON_TERM = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done']
# moorage's timeline steps, in order; the script's steps are named after them.
STEPS = ("inspected", "pulled", "created", "old_stopped", "new_started", "running", "old_removed", "renamed")


def step_medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each step's median time (seconds) over the rounds, in the order the steps ran."""
    names = [name for name in (*STEPS, "outside") if any(name in steps for steps in rounds)]
    return {name: round(statistics.median(steps.get(name, 0.0) for steps in rounds), 4) for name in names}


def timeline_steps(timeline: list[dict[str, Any]], total: float) -> dict[str, float]:
    """What each step of moorage's timeline took (from the elapsed of the one before), and "outside": the call's
    time the timeline does not cover (the HTTP hop and authentication, the inspect before its clock starts,
    the answer's detail after its last step)."""
    steps, before = {}, 0.0
    for entry in timeline:
        steps[entry["step"]] = entry["elapsed"] - before
        before = entry["elapsed"]
    steps["outside"] = total - before
    return steps


async def docker_cli(*args: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"docker {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out


async def by_script(name: str) -> dict[str, float]:
    """The operator's script: the settings read back from `docker inspect` (those this bench's containers have:
    image, command, labels, network mode), each step one CLI call. The time of each step, in seconds."""
    steps: dict[str, float] = {}
    started = time.perf_counter()

    async def step(label: str, *args: str) -> bytes:
        nonlocal started
        out = await docker_cli(*args)
        now = time.perf_counter()
        steps[label], started = now - started, now
        return out

    (old,) = json.loads(await step("inspected", "inspect", "--type", "container", name))
    config, image, temporary = old["Config"], old["Config"]["Image"], f"{name}-new-{uuid.uuid4().hex[:8]}"
    await step("pulled", "pull", "--quiet", image)
    labels = [f"--label={key}={value}" for key, value in (config.get("Labels") or {}).items()]
    network = f"--network={old['HostConfig']['NetworkMode']}"
    await step("created", "create", f"--name={temporary}", network, *labels, image, *config["Cmd"])
    await step("old_stopped", "stop", old["Id"])
    await step("new_started", "start", temporary)
    await step("old_removed", "rm", old["Id"])
    await step("renamed", "rename", temporary, name)
    return steps


async def recreate(bench: Bench) -> list[Row]:
    """Alternately, moorage recreates its container and the script its own, `--recreate-rounds` times each,
    after one unmeasured round each (the first pull and the connections). Both pull `always` from the local
    registry (the image is there already, as when nothing new was pushed) and stop a container that exits on
    SIGTERM, so that neither waits out a grace."""
    names = {side: f"bench-{bench.containers.run_id}-recreate-{side}" for side in ("moorage", "cli")}
    container_id = await bench.containers.make("recreate-moorage", STOPS_ON_TERM, start=True)
    await bench.containers.make("recreate-cli", STOPS_ON_TERM, start=True)
    auth, body = bench.moorage.auth, {"pull": "always", "wait": "running"}
    totals: dict[str, list[float]] = {"moorage": [], "cli": []}
    steps: dict[str, list[dict[str, float]]] = {"moorage": [], "cli": []}
    for round_ in range(bench.options.recreate_rounds + 1):
        url = f"{bench.moorage.url}/api/v1/containers/{container_id}/recreate"
        started = time.perf_counter()
        data = json.loads(await fetch(bench.http, "POST", url, json=body, headers=auth))["data"]
        moorage_seconds = time.perf_counter() - started
        new = data["container"]
        if data["old_id"] != container_id or new["name"] != names["moorage"] or not new["state"]["running"]:
            raise RuntimeError(f"moorage's recreate of {container_id} answered {data}")
        container_id = new["id"]
        started = time.perf_counter()
        script_steps = await by_script(names["cli"])
        cli_seconds = time.perf_counter() - started
        if round_:
            totals["moorage"].append(moorage_seconds)
            totals["cli"].append(cli_seconds)
            steps["moorage"].append(timeline_steps(data["timeline"], moorage_seconds))
            steps["cli"].append(script_steps)
    (after,) = json.loads(await docker_cli("inspect", "--type", "container", names["cli"]))
    if not after["State"]["Running"]:
        raise RuntimeError(f"{names['cli']} is not running after the script's recreate")
    figures = {side: {**seconds(totals[side]), "steps_p50_s": step_medians(steps[side])} for side in totals}
    baseline = "docker CLI: inspect, pull, create, stop, start, rm, rename"
    scenario = "7. recreate, pull always, wait running"
    return [Row(scenario, baseline, figures["moorage"], figures["cli"], "p50_s", TARGET)]
