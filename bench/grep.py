"""Log search (issue 19): an app's log of N lines (2,000,000 by default) grepped for ERROR through moorage, as text,
as NDJSON and as count=true, beside `docker logs X 2>&1 | grep -E ERROR` on the same log, round by round in turn.
`docker logs X 2>&1 | wc -l`, the CLI reading the whole log with nothing filtered, is shown as the floor under
the pipeline. Every side must find the same lines: a figure is printed only when moorage's count is grep's."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from .harness import ENGINE_SOCKET, Bench, fetch, seconds
from .report import Row

PATTERN = "ERROR"
TARGET = "<= 1.0"  # issue 19: at least as fast as `docker logs | grep` on the same log
# An app's log, written by busybox awk in a few seconds: mostly INFO requests, DEBUG cache lines, WARNs that name
# an error in lower case (which ERROR does not match), ERRORs (1 line in 41, on stderr, as an app writes them),
# and now and then an INFO line with ERROR in its text. About 2.5 % of the lines match.
APP_LOG = r"""BEGIN {
  split("api worker scheduler db cache auth", part, " ")
  split("GET POST PUT DELETE", verb, " ")
  for (i = 1; i <= n; i++) {
    s = int(i / 200)
    t = sprintf("2025-03-14T%02d:%02d:%02d.%03dZ", int(s / 3600) % 24, int(s / 60) % 60, s % 60, i * 5 % 1000)
    p = part[i % 6 + 1]
    if (i % 41 == 0)
      printf "%s ERROR [%s] request %d failed: upstream timeout (%d ms)\n", t, p, i, 1000 + i % 4000 > "/dev/stderr"
    else if (i % 53 == 0)
      printf "%s WARN  [%s] retrying job %d (attempt %d, last error: connection reset)\n", t, p, i, i % 5 + 1
    else if (i % 7 == 0)
      printf "%s DEBUG [%s] cache %s key=user:%d ttl=%ds\n", t, p, (i % 3 ? "hit" : "miss"), i % 10007, 60 + i % 240
    else if (i % 1009 == 0)
      printf "%s INFO  [%s] alert cleared: ERROR rate back under 1%%\n", t, p
    else
      printf "%s INFO  [%s] %s /v1/items/%d %d %dms\n", t, p, verb[i % 4 + 1], i % 100003, (i % 97 ? 200 : 404), i % 250
  }
}"""
# The CLI talks to the engine the harness measures, whatever DOCKER_HOST the caller has.
CLI_ENV = {**os.environ, "DOCKER_HOST": f"unix://{ENGINE_SOCKET}"}


def ndjson_lines(body: bytes) -> int:
    """The log lines of an NDJSON stream, which must end with `{"end": "done"}` (heartbeats are not lines)."""
    items = [json.loads(line) for line in body.splitlines()]
    if not items or items[-1] != {"end": "done"}:
        raise RuntimeError(f"moorage's NDJSON stream ended with {items[-1:]}")
    return sum(1 for item in items if "line" in item)


# moorage's answers: the query beside grep, and how many lines the answer says matched.
ANSWERS: dict[str, tuple[dict[str, str], Callable[[bytes], int]]] = {
    "text": ({"format": "text"}, lambda body: body.count(b"\n")),
    "ndjson": ({"format": "ndjson"}, ndjson_lines),
    "count=true": ({"count": "true"}, lambda body: int(json.loads(body)["data"]["count"])),
}
PEERS = {
    "grep": f"2>&1 | grep -E {shlex.quote(PATTERN)} | wc -l",
    "wc": "2>&1 | wc -l",
}


async def pipeline(container_id: str, tail: str) -> tuple[int, float]:
    """(the count `wc -l` prints, wall seconds, the shell's start included) of `docker logs ID TAIL` in bash."""
    command = f"set -o pipefail; docker logs {container_id} {tail}"
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=CLI_ENV
    )
    out, err = await proc.communicate()
    took = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{command}: exit {proc.returncode}: {err.decode(errors='replace').strip()}")
    return int(out), took


async def answer(bench: Bench, url: str, name: str) -> tuple[int, float]:
    """(the lines moorage says matched, seconds) of one grep of the log, its answer read to the end."""
    query, matches = ANSWERS[name]
    started = time.perf_counter()
    body = await fetch(bench.http, "GET", url, params={"grep": PATTERN, **query}, headers=bench.moorage.auth)
    took = time.perf_counter() - started
    return matches(body), took


async def search(bench: Bench) -> list[Row]:
    """Up to --grep-rounds rounds (no round begins after --grep-seconds of them), each timing every moorage answer
    and both pipelines once, in turn, the order turned by one each round so that no side always goes first; the
    figures are each side's median (and max) over the rounds."""
    lines = bench.options.log_lines
    container_id = await bench.containers.make("grep", ["awk", "-v", f"n={lines}", APP_LOG], start=True)
    await bench.containers.docker.containers.container(container_id).wait()
    url = f"{bench.moorage.url}/api/v1/containers/{container_id}/logs"
    sides: list[tuple[str, Callable[[], Awaitable[tuple[int, float]]]]] = [
        *((name, partial(answer, bench, url, name)) for name in ANSWERS),
        *((name, partial(pipeline, container_id, tail)) for name, tail in PEERS.items()),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in sides}
    deadline = time.monotonic() + bench.options.grep_seconds
    matched = 0
    for round_ in range(bench.options.grep_rounds):
        counts: dict[str, int] = {}
        for name, side in sides[round_ % len(sides) :] + sides[: round_ % len(sides)]:
            counts[name], took = await side()
            samples[name].append(took)
        matched = counts["grep"]
        if counts["wc"] != lines or not 0 < matched < lines:
            raise RuntimeError(f"docker logs gave {counts['wc']} lines, {matched} matching {PATTERN}; {lines} written")
        if wrong := {name: counts[name] for name in ANSWERS if counts[name] != matched}:
            raise RuntimeError(f"grep -E {PATTERN} keeps {matched} lines, moorage {wrong}")
        if time.monotonic() > deadline:
            break

    def figures(name: str) -> dict[str, Any]:
        timed = seconds(samples[name])
        return {**timed, "lines_per_s": round(lines / timed["p50_s"]), "matched": matched}

    scenario = f"4. log grep {PATTERN}, {lines:,} lines ({matched:,} match)"
    peer = "docker logs | grep -E"
    rows = [Row(f"{scenario}, {name}", peer, figures(name), figures("grep"), "p50_s", TARGET) for name in ANSWERS]
    floor = Row(
        f"{scenario}, the floor", peer, figures("wc"), figures("grep"), "p50_s", TARGET, subject="docker logs | wc -l"
    )
    return [*rows, floor]
