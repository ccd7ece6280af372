"""Floods of denied and malformed requests: what they may add to the audit log and the daemon's log is bounded
(paths cut, repeated denials folded into a counted summary, per-request log lines rate-limited), while every
mutating call is still audited in full."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from moorage.access.audit import EVERY_CLIENT, MAX_FOLDED_CLIENTS, MAX_FULL_REFUSALS, AuditLog
from moorage.access.keys import hash_key
from moorage.config.loader import key_toml
from moorage.daemon.logfilters import BURST, RATE
from moorage.settings import ApiKey, Role

from ..helpers import Daemon, app_client, key_headers, plain_key

FLOOD = 10_000
BATCH = 1_000
BUDGET = 200_000  # bytes that FLOOD denied requests may add to the audit log and the daemon's log together
LONG_PATH = "/api/v1/containers/" + "x" * 8000
FOLD = 2.0  # [audit] fold_seconds where a test waits for a window to end


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tally(lines: list[dict[str, Any]]) -> Counter[int]:
    """Refusals by status, written in full or counted in summaries: every refusal, whether folded or not."""
    counts: Counter[int] = Counter()
    for line in lines:
        if "folded" in line:
            counts.update({int(status): n for status, n in line["results"].items()})
        elif line["result"] in (400, 401, 429):
            counts[line["result"]] += 1
    return counts


@pytest.mark.timeout(600)
async def test_a_flood_of_denied_long_paths_adds_little_and_mutations_are_still_audited(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon]
) -> None:
    audit = tmp_path / "audit" / "audit.log"
    key = ApiKey("flood-admin", Role.ADMIN, hash_key(plain_key("flood-admin")))
    daemon = spawn_daemon(
        f'[server]\nstate_dir = "{tmp_path}/state"\n[auth]\nfailed_limit = 1000000\n'
        f'[audit]\npath = "{audit}"\n\n{key_toml(key)}'
    )
    before = audit.stat().st_size + daemon.log.stat().st_size
    missing = f"mt-missing-{uuid.uuid4().hex[:8]}"
    url = URL(daemon.url + LONG_PATH, encoded=True)
    statuses: dict[int, int] = {}
    sent = 0

    async def deny(session: aiohttp.ClientSession) -> None:
        async with session.get(url) as resp:
            statuses[resp.status] = statuses.get(resp.status, 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as session:
        while sent < FLOOD:
            await asyncio.gather(*(deny(session) for _ in range(BATCH)))
            sent += BATCH
            if sent == FLOOD // 2:  # mutating calls in the middle of the flood, each of them a 404
                admin = {"X-API-Key": plain_key("flood-admin")}
                for method, path in (("DELETE", ""), ("POST", "/start"), ("POST", "/stop")):
                    async with session.request(
                        method, f"{daemon.url}/api/v1/containers/{missing}{path}", headers=admin
                    ):
                        pass
            grown = audit.stat().st_size + daemon.log.stat().st_size - before
            assert grown <= BUDGET, f"{grown} bytes after {sent} denied requests"
    assert statuses == {401: FLOOD}
    assert daemon.stop() == 0  # the close writes what was counted and not yet written
    grown = audit.stat().st_size + daemon.log.stat().st_size - before
    assert grown <= BUDGET, f"{grown} bytes after {FLOOD} denied requests"
    lines = audit_lines(audit)
    assert tally(lines) == {401: FLOOD}
    mutations = [(line["method"], line["path"], line["result"], line["key"]) for line in lines if line.get("key")]
    assert mutations == [
        ("DELETE", f"/api/v1/containers/{missing}", 404, "flood-admin"),
        ("POST", f"/api/v1/containers/{missing}/start", 404, "flood-admin"),
        ("POST", f"/api/v1/containers/{missing}/stop", 404, "flood-admin"),
    ]
    first = next(line for line in lines if line.get("result") == 401)
    assert first["path"] == f"{LONG_PATH[:256]}...[cut: {len(LONG_PATH)} characters]"
    assert first["target"].endswith(f"...[cut: {len(LONG_PATH) - len('/api/v1/containers/')} characters]")
    assert "x" * 300 not in daemon.output()


async def test_denials_past_the_failed_limit_are_folded_and_summarised_when_the_window_ends(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, tmp_path, auth={"failed_limit": 3}, audit={"fold_seconds": FOLD})
    audit = tmp_path / "state" / "audit.log"
    wrong = {"X-API-Key": "mrg_wrong"}
    start = time.monotonic()
    results = [(await client.get("/api/v1/containers", headers=wrong)).status for _ in range(30)]
    in_one_window = time.monotonic() - start < FOLD
    assert results == [401] * 3 + [429] * 27
    for _ in range(200):  # each window's summary is written while the daemon runs, with no request to prompt it
        lines = audit_lines(audit)
        if tally(lines) == {401: 3, 429: 27}:
            break
        await asyncio.sleep(0.1)
    assert tally(lines) == {401: 3, 429: 27}
    summaries = [line for line in lines if "folded" in line]
    assert summaries, f"{len(lines)} lines and no summary"
    first, summary = lines[0], summaries[0]
    assert (first["method"], first["result"], first["client"]) == ("GET", 401, "127.0.0.1")
    assert summary["client"] == "loopback"  # the whole of loopback is one client
    assert first["time"] <= summary["first"] <= summary["last"] <= summary["time"]
    if in_one_window:  # as good as always: 30 requests take milliseconds
        assert len(lines) == 2 and summary["folded"] == 29 and summary["results"] == {"401": 2, "429": 27}
    # A new window: its first denial is written in full again.
    assert (await client.get("/api/v1/containers", headers=wrong)).status == 429
    assert audit_lines(audit)[-1]["result"] == 429


async def test_what_was_counted_is_written_when_the_audit_closes(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_client(aiohttp_client, tmp_path, audit={"fold_seconds": 3600})
    for _ in range(5):
        assert (await client.post("/api/v1/containers/x/start")).status == 401
    assert (await client.post("/api/v1/containers?api_key=x")).status == 400  # refused before any handler ran
    assert (await client.delete("/api/v1/containers/x", headers=key_headers("viewer-key"))).status == 403
    assert (await client.delete("/api/v1/containers/x", headers=key_headers("viewer-key"))).status == 403
    await client.close()
    lines = audit_lines(tmp_path / "state" / "audit.log")
    # An authenticated mutating call is never folded, even when refused; the anonymous ones are.
    assert [(line.get("method"), line.get("result"), line.get("folded")) for line in lines] == [
        ("POST", 401, None),
        ("DELETE", 403, None),
        ("DELETE", 403, None),
        (None, None, 5),
    ]
    assert lines[-1]["results"] == {"400": 1, "401": 4}


MALFORMED = 600
BAD_HEAD = b"GET /healthz HTTP/1.1\r\nHost: moorage\r\nX-Big: " + b"y" * 3000 + b"\r\n\r\n"


async def malformed(port: int) -> bytes:
    """A request aiohttp cannot parse (a header over max_field_size); it answers 400 and hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(BAD_HEAD)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.timeout(300)
async def test_log_lines_about_malformed_requests_are_rate_limited_and_the_dropped_ones_counted(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon]
) -> None:
    daemon = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\nmax_field_size = 2048\n')
    gate = asyncio.Semaphore(8)

    async def one() -> bytes:
        async with gate:
            return await malformed(daemon.port)

    start = time.monotonic()
    answers = await asyncio.gather(*(one() for _ in range(MALFORMED)))
    elapsed = time.monotonic() - start
    assert all(answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request") for answer in answers)
    await asyncio.sleep(BURST / RATE + 0.5)  # the bucket fills again: the next line goes through, after the count
    await malformed(daemon.port)
    assert daemon.stop() == 0
    log = daemon.output().splitlines()
    passed = sum("Error handling request" in line for line in log)
    suppressed = [int(line.split("aiohttp.server: ")[1].split()[0]) for line in log if "log lines suppressed" in line]
    assert passed + sum(suppressed) == MALFORMED + 1
    assert passed <= BURST + RATE * (elapsed + 1) + 1, f"{passed} lines in {elapsed:.1f} s"


async def test_the_access_log_cuts_a_long_path(tmp_path: Path, spawn_daemon: Callable[..., Daemon]) -> None:
    daemon = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\naccess_log = true\n')
    async with aiohttp.ClientSession() as session, session.get(URL(daemon.url + LONG_PATH, encoded=True)) as resp:
        assert resp.status == 401
    assert daemon.stop() == 0
    [line] = [line for line in daemon.output().splitlines() if "aiohttp.access" in line]
    assert f'"GET {LONG_PATH[:256]}...[cut: {len(LONG_PATH)} characters]" 401' in line


async def test_the_clients_counted_at_once_are_bounded_and_none_of_their_counts_is_lost(tmp_path: Path) -> None:
    # As many full lines as clients, so that each client has a window of its own (not the one of every client).
    audit = AuditLog(tmp_path / "audit.log", fold_seconds=3600, full_refusals=MAX_FOLDED_CLIENTS + 1)
    audit.open()
    clients = [f"10.{i // 256}.{i % 256}.1" for i in range(MAX_FOLDED_CLIENTS + 1)]
    try:
        for client in clients:
            for _ in range(2):
                audit.write(key=None, client=client, method="GET", path="/", result=401)
        # The oldest window is summarised as the one past the bound opens; the others wait for their window's end.
        written = audit_lines(audit.path)
        assert [line["client"] for line in written if "folded" in line] == [clients[0]]
        assert len(written) == len(clients) + 1
    finally:
        audit.close()
    lines = audit_lines(audit.path)
    assert tally(lines) == {401: 2 * len(clients)}
    assert {line["client"] for line in lines if "folded" in line} == set(clients)


async def test_each_keys_refusals_are_folded_apart_and_the_summary_names_the_key(tmp_path: Path) -> None:
    """One anonymous 401 from loopback must not hide the refused reads of a key from loopback in its summary."""
    audit = AuditLog(tmp_path / "audit.log", fold_seconds=3600)
    audit.open()
    try:
        audit.write(key=None, client="127.0.0.1", method="GET", path="/api/v1/containers", result=401)
        for method in ("GET", "GET", "HEAD"):  # a viewer at its stream quota, from another loopback address
            audit.write(key="viewer-a", client="127.0.0.2", method=method, path="/api/v1/events", result=429)
        audit.write(key="viewer-b", client="127.0.0.1", method="GET", path="/api/v1/events", result=429)
        audit.write(key=None, client="127.0.0.3", method="BREW" * 100, path="/", result=401)
        written = audit_lines(audit.path)
        assert [(line["key"], line["client"], line["result"]) for line in written] == [
            (None, "127.0.0.1", 401),
            ("viewer-a", "127.0.0.2", 429),
            ("viewer-b", "127.0.0.1", 429),
        ]
    finally:
        audit.close()
    summaries = {line["key"]: line for line in audit_lines(audit.path) if "folded" in line}
    assert set(summaries) == {"viewer-a", None}
    viewer, anonymous = summaries["viewer-a"], summaries[None]
    assert (viewer["client"], viewer["folded"], viewer["results"], viewer["methods"]) == (
        "loopback",
        2,
        {"429": 2},
        {"GET": 1, "HEAD": 1},
    )
    assert (anonymous["folded"], anonymous["methods"]) == (1, {"other": 1})  # a method of its own is not echoed


def ipv6_clients(count: int) -> list[str]:
    """Addresses of one /48, each in a /64 of its own: each a client of its own to the folding."""
    return [f"2001:db8:7:{i:x}::1" for i in range(count)]


async def test_refusals_from_many_addresses_give_a_bounded_number_of_full_lines(tmp_path: Path) -> None:
    """A caller rotating through a /48 gets MAX_FULL_REFUSALS full lines a window, and one summary for the rest;
    a mutating call with a valid credential is written in full all the same."""
    audit = AuditLog(tmp_path / "audit.log", fold_seconds=3600)
    audit.open()
    clients = ipv6_clients(10 * MAX_FULL_REFUSALS)
    try:
        for n, client in enumerate(clients):
            audit.write(key=None, client=client, method="GET", path="/" + "x" * 8000, result=401)
            if n == len(clients) // 2:
                audit.write(key="admin", client=client, method="DELETE", path="/api/v1/containers/x", result=403)
        for client in ipv6_clients(3):  # the refused reads of a key have full lines of their own
            audit.write(key="viewer", client=client, method="GET", path="/api/v1/events", result=429)
        written = audit_lines(audit.path)
        assert len([line for line in written if line["key"] is None]) == MAX_FULL_REFUSALS
        assert [line["client"] for line in written if line["key"] == "viewer"] == ipv6_clients(3)
        assert [(line["method"], line["result"]) for line in written if line["key"] == "admin"] == [("DELETE", 403)]
    finally:
        audit.close()
    lines = audit_lines(audit.path)
    assert tally(lines) == {401: len(clients), 429: 3}
    [summary] = [line for line in lines if "folded" in line]
    assert (summary["client"], summary["key"], summary["folded"]) == (EVERY_CLIENT, None, 9 * MAX_FULL_REFUSALS)
    assert len(lines) == MAX_FULL_REFUSALS + 1 + 3 + 1
    assert audit.path.stat().st_size < 150 * 1024, audit.path.stat().st_size


async def test_the_full_lines_of_refusals_are_counted_again_in_the_next_window(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", fold_seconds=FOLD)
    audit.open()
    try:
        for client in ipv6_clients(MAX_FULL_REFUSALS + 1):
            audit.write(key=None, client=client, method="GET", path="/", result=401)
        await asyncio.sleep(FOLD + 0.5)
        audit.write(key=None, client="2001:db8:8::1", method="GET", path="/", result=401)
    finally:
        audit.close()
    lines = audit_lines(audit.path)
    assert [line.get("folded") for line in lines][-2:] == [1, None]  # the summary of the last window, a new line
    assert lines[-1]["client"] == "2001:db8:8::1"


async def test_whoever_comes_after_the_full_lines_are_spent_is_still_named_in_the_summary(tmp_path: Path) -> None:
    """Spending a window's full lines from cheap addresses does not hide the next caller: the summary of every
    client names the busiest groups it counted."""
    audit = AuditLog(tmp_path / "audit.log", fold_seconds=3600)
    audit.open()
    try:
        for client in ipv6_clients(MAX_FULL_REFUSALS):
            audit.write(key=None, client=client, method="GET", path="/", result=401)
        for _ in range(50):
            audit.write(key=None, client="203.0.113.9", method="POST", path="/api/v1/auth/tokens", result=401)
        audit.write(key=None, client="198.51.100.1", method="GET", path="/", result=401)
    finally:
        audit.close()
    [summary] = [line for line in audit_lines(audit.path) if "folded" in line]
    assert summary["client"] == EVERY_CLIENT and summary["folded"] == 51
    assert summary["clients"] == {"203.0.113.9": 50, "198.51.100.1": 1}
