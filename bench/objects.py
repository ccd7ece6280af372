"""Listing volumes and networks (issue 17): N of each, made on the engine directly and labelled with the run's id,
moorage's whole list beside the engine's own in the same rounds (and the bare proxy's, the floor), as for
containers. Whatever a scenario made is removed when it ends, however it ends.

The networks are internal bridges on /28s of 10.232.0.0/16: the engine's default address pools (15 /16s of
172.17-31 and 16 /20s of 192.168) hold 31 networks, and a bridge that is internal needs no NAT rule. The host
routes none of that range and no test uses it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from itertools import islice
from typing import Any, TypeVar
from urllib.parse import quote

from .harness import ENGINE, LABEL, Bench, fetch
from .latency import compare, getter
from .report import Row

SUBNETS = ipaddress.ip_network("10.232.0.0/16")
SUBNET_PREFIX = 28
# The engine serialises much of a create or a removal: a few at a time are as fast as many.
AT_ONCE = 4
REMOVAL_LOOKS = 5
T = TypeVar("T")


async def _each(arguments: Iterable[T], one: Callable[[T], Awaitable[object]]) -> None:
    """`one` of each argument, a few at a time; the first failure stops the rest before it is raised, so that
    nothing is still being made while the run removes what it made."""
    gate = asyncio.Semaphore(AT_ONCE)

    async def gated(argument: T) -> None:
        async with gate:
            await one(argument)

    try:
        async with asyncio.TaskGroup() as group:
            for argument in arguments:
                group.create_task(gated(argument))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _label_filter(bench: Bench) -> str:
    return quote(json.dumps({"label": [f"{LABEL}={bench.containers.run_id}"]}))


def _names(kind: str, listed: Any) -> list[str]:
    """The names in the engine's list of `kind`: volumes come in an object, networks as a list."""
    return [item["Name"] for item in ((listed["Volumes"] or []) if kind == "volumes" else listed)]


@asynccontextmanager
async def _made(bench: Bench, kind: str, make: Callable[[int], Awaitable[object]]) -> AsyncIterator[None]:
    """`--objects` of `kind` (volumes, networks) made with `make`, and every one labelled with the run's id
    removed after, those a failed or interrupted make left too."""
    try:
        await _each(range(bench.options.objects), make)
        yield
    finally:
        await _remove_labelled(bench, kind)


async def _remove_labelled(bench: Bench, kind: str) -> None:
    """Every `kind` with the run's label removed. A create that was interrupted may still be under way on the
    engine (it has the request): look again until a look finds none."""
    filtered = f"{ENGINE}/{kind}?filters={_label_filter(bench)}"
    for _ in range(REMOVAL_LOOKS):
        names = _names(kind, json.loads(await fetch(bench.engine, "GET", filtered)))
        if not names:
            return
        await _each(names, lambda name: fetch(bench.engine, "DELETE", f"{ENGINE}/{kind}/{name}"))
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{kind} labelled {LABEL}={bench.containers.run_id} are left after {REMOVAL_LOOKS} removals")


async def _listing(bench: Bench, kind: str) -> list[Row]:
    """moorage's `GET /{kind}` with the run's label beside the engine's own list with the same filter."""
    count = bench.options.objects
    run_label = f"{LABEL}={bench.containers.run_id}"
    moorage_url = f"{bench.moorage.url}/api/v1/{kind}?label={run_label}&limit=1000"
    engine_url = f"{ENGINE}/{kind}?filters={_label_filter(bench)}"
    body = json.loads(await fetch(bench.http, "GET", moorage_url, headers=bench.moorage.auth))
    listed = len(_names(kind, json.loads(await fetch(bench.engine, "GET", engine_url))))
    if body["data"]["total"] != count or len(body["data"]["items"]) != count or listed != count:
        raise RuntimeError(f"expected {count} {kind}: moorage lists {body['data']['total']}, the engine {listed}")
    moorage, engine = getter(bench, moorage_url), getter(bench, engine_url, engine=True)
    floor = getter(bench, engine_url.replace(ENGINE, await bench.pass_through(), 1))
    return await compare(bench, f"9. list, {count} {kind}", moorage, engine, floor)


async def _free_subnets(bench: Bench, count: int) -> list[ipaddress.IPv4Network]:
    """`count` /28s of SUBNETS that no network on the engine overlaps (another run's, say): the engine refuses
    an overlapping pool."""
    taken = [
        ipaddress.ip_network(config["Subnet"], strict=False)
        for network in json.loads(await fetch(bench.engine, "GET", f"{ENGINE}/networks"))
        for config in (network.get("IPAM") or {}).get("Config") or ()
        if "." in config.get("Subnet", "")  # IPv4: what SUBNETS can overlap
    ]
    free = (
        subnet for subnet in SUBNETS.subnets(new_prefix=SUBNET_PREFIX) if not any(subnet.overlaps(t) for t in taken)
    )
    chosen = list(islice(free, count))
    if len(chosen) < count:
        raise RuntimeError(f"{SUBNETS} has room for {len(chosen)} more networks, not {count}")
    return chosen


async def volumes(bench: Bench) -> list[Row]:
    labels = bench.containers.labels

    async def make(index: int) -> None:
        body = {"Name": f"bench-{bench.containers.run_id}-{index}", "Labels": labels}
        await fetch(bench.engine, "POST", f"{ENGINE}/volumes/create", json=body)

    async with _made(bench, "volumes", make):
        return await _listing(bench, "volumes")


async def networks(bench: Bench) -> list[Row]:
    labels = bench.containers.labels
    subnets = await _free_subnets(bench, bench.options.objects)

    async def make(index: int) -> None:
        body = {
            "Name": f"bench-{bench.containers.run_id}-{index}",
            "Driver": "bridge",
            "Internal": True,
            "CheckDuplicate": True,
            "Labels": labels,
            "IPAM": {"Driver": "default", "Config": [{"Subnet": str(subnets[index])}]},
        }
        await fetch(bench.engine, "POST", f"{ENGINE}/networks/create", json=body)

    async with _made(bench, "networks", make):
        return await _listing(bench, "networks")
