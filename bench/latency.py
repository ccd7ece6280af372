"""Request latency, moorage beside the engine's own call (and Glances'), alternating call by call:
listing, inspecting, a container's whole life, and container metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .harness import ENGINE, IMAGE, LABEL, NETWORK_MODE, Bench, Call, fetch, side_by_side
from .report import Row

# The targets: moorage adds at most a quarter to the engine's time; container metrics at least 40x
# faster than the engine's stats call and at least as fast as Glances.
ENGINE_TARGET = "<= 1.25"
STATS_TARGET = "<= 0.025"
GLANCES_TARGET = "<= 1.0"
SLEEPER = ["sleep", "3600"]


def getter(bench: Bench, url: str, *, engine: bool = False) -> Call:
    session, headers = (bench.engine, {}) if engine else (bench.http, bench.moorage.auth)

    async def call() -> None:
        await fetch(session, "GET", url, headers=headers)

    return call


async def compare(bench: Bench, scenario: str, moorage: Call, engine: Call, floor: Call | None = None) -> list[Row]:
    """moorage beside the engine; with `floor`, a bare pass-through proxy beside the engine too, in the same
    rounds: what the second hop alone costs, under any call through moorage."""
    count = bench.options.requests
    participants = {"moorage": (moorage, count), "engine": (engine, count)}
    if floor is not None:
        participants["floor"] = (floor, count)
    figures = await side_by_side(participants)
    rows = [Row(scenario, "engine", figures["moorage"], figures["engine"], "p50_ms", ENGINE_TARGET)]
    if floor is not None:
        subject = "bare aiohttp proxy"
        rows.append(
            Row(
                f"{scenario}, the floor",
                "engine",
                figures["floor"],
                figures["engine"],
                "p50_ms",
                ENGINE_TARGET,
                subject=subject,
            )
        )
    return rows


async def listing(bench: Bench) -> list[Row]:
    """The whole list of N created containers (limit=1000, so that moorage, too, answers all N)."""
    run_label = f"{LABEL}={bench.containers.run_id}"
    moorage_url = f"{bench.moorage.url}/api/v1/containers?label={run_label}&limit=1000"
    engine_url = f"{ENGINE}/containers/json?all=1&filters={json.dumps({'label': [run_label]})}"
    rows, made = [], 0
    for size in sorted(bench.options.sizes):
        await bench.containers.make_many("list", size - made, ["true"], first=made)
        made = size
        body = json.loads(await fetch(bench.http, "GET", moorage_url, headers=bench.moorage.auth))
        listed = json.loads(await fetch(bench.engine, "GET", engine_url))
        if body["data"]["total"] != size or len(body["data"]["items"]) != size or len(listed) != size:
            found = f"moorage lists {body['data']['total']}, the engine {len(listed)}"
            raise RuntimeError(f"expected {size} containers: {found}")
        moorage, engine = getter(bench, moorage_url), getter(bench, engine_url, engine=True)
        floor = getter(bench, engine_url.replace(ENGINE, await bench.pass_through(), 1))
        rows += await compare(bench, f"1. list, {size} containers", moorage, engine, floor)
    return rows


async def detail(bench: Bench) -> list[Row]:
    container_id = await bench.containers.make("detail", SLEEPER, start=True)
    moorage = getter(bench, f"{bench.moorage.url}/api/v1/containers/{container_id}")
    engine = getter(bench, f"{ENGINE}/containers/{container_id}/json", engine=True)
    floor = getter(bench, f"{await bench.pass_through()}/containers/{container_id}/json")
    return await compare(bench, "2. container detail", moorage, engine, floor)


async def cycle(bench: Bench) -> list[Row]:
    """create (with start) + stop + delete of a sleeping container; stop with no grace, sleep ignores SIGTERM."""
    api, auth = f"{bench.moorage.url}/api/v1/containers", bench.moorage.auth
    labels = bench.containers.labels

    async def through_moorage() -> None:
        body = {"image": IMAGE, "command": SLEEPER, "labels": labels, "network": NETWORK_MODE, "start": True}
        created = json.loads(await fetch(bench.http, "POST", api, json=body, headers=auth))
        container = f"{api}/{created['data']['id']}"
        await fetch(bench.http, "POST", f"{container}/stop?timeout=0", headers=auth)
        await fetch(bench.http, "DELETE", container, headers=auth)

    async def on_engine() -> None:
        body = {"Image": IMAGE, "Cmd": SLEEPER, "Labels": labels, "HostConfig": {"NetworkMode": NETWORK_MODE}}
        created = json.loads(await fetch(bench.engine, "POST", f"{ENGINE}/containers/create", json=body))
        container = f"{ENGINE}/containers/{created['Id']}"
        await fetch(bench.engine, "POST", f"{container}/start")
        await fetch(bench.engine, "POST", f"{container}/stop?t=0")
        await fetch(bench.engine, "DELETE", container)

    return await compare(bench, "3. create+start+stop+delete", through_moorage, on_engine)


async def metrics(bench: Bench) -> list[Row]:
    """One and all of M running containers: moorage, the engine's stats call (one-shot), Glances."""
    count = bench.options.metrics_containers
    ids = await bench.containers.make_many("metrics", count, SLEEPER, start=True)
    names = {f"bench-{bench.containers.run_id}-metrics-{index}" for index in range(count)}
    api = f"{bench.moorage.url}/api/v1/metrics/containers"

    def all_read(body: Any) -> bool:
        return names <= {item["name"] for item in body["data"]["items"]}

    await bench.wait_until(api, all_read, headers=bench.moorage.auth)
    calls = bench.options.requests
    # About a second each (the engine waits for a second reading): fewer of them.
    slow = max(3, calls // 20)
    one_stats = getter(bench, f"{ENGINE}/containers/{ids[0]}/stats?stream=false&one-shot=true", engine=True)

    async def all_stats() -> None:
        urls = [f"{ENGINE}/containers/{container_id}/stats?stream=false&one-shot=true" for container_id in ids]
        await asyncio.gather(*(fetch(bench.engine, "GET", url) for url in urls))

    participants: dict[str, tuple[Call, int]] = {
        "moorage one": (getter(bench, f"{api}/{ids[0]}"), calls),
        "moorage all": (getter(bench, api), calls),
        "engine one": (one_stats, slow),
        "engine all": (all_stats, slow),
    }
    glances = await bench.glances()
    if glances is not None:
        await bench.wait_until(f"{glances}/containers", lambda body: names <= {item["name"] for item in body})
        first = sorted(names)[0]
        one = f"{glances}/containers/name/value/{first}"
        await bench.wait_until(one, lambda body: len(body[first]) == 1)
        participants["glances one"] = (getter(bench, one), calls)
        participants["glances all"] = (getter(bench, f"{glances}/containers"), calls)
    figures = await side_by_side(participants)
    rows = []
    for which, scenario in (("one", "5. container metrics, one"), ("all", f"5. container metrics, all {count}")):
        baselines = {"engine": "engine stats (one-shot)" if which == "one" else f"engine stats x{count} at once"}
        if glances is not None:
            baselines["glances"] = "Glances /api/4/containers" + ("/name/value/NAME" if which == "one" else "")
        for side, baseline in baselines.items():
            target = STATS_TARGET if side == "engine" else GLANCES_TARGET
            moorage, reference = figures[f"moorage {which}"], figures[f"{side} {which}"]
            rows.append(Row(scenario, baseline, moorage, reference, "p50_ms", target))
    return rows
