"""The failed-authentication limiter: what counts as a guess, whose budget it draws on, and what it never refuses.

Every test counts the bad guesses answered 401 before the first 429 (`guesses_before_429`): the figure the
limiter promises is `failed_limit` per address (loopback as one, IPv6 by /64, a trusted proxy's client as
itself), and a valid credential answered 200 whatever its address did before.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from moorage.access.clientaddr import client_group
from moorage.app import create_app

from ..helpers import SERVER_KWARGS, Daemon, make_settings, plain_key

LIMIT = 10
PATH = "/api/v1/containers?limit=1"
BAD = {"X-API-Key": "mrg_not-a-key"}
Send = Callable[[], Awaitable[aiohttp.ClientResponse]]


async def limited_client(aiohttp_client: Any, tmp_path: Path, **sections: dict[str, Any]) -> TestClient:
    auth = {"failed_limit": LIMIT, **sections.pop("auth", {})}
    settings = make_settings(tmp_path, {"admin-key": "admin"}, auth=auth, **sections)
    client: TestClient = await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS)
    return client


def admin() -> dict[str, str]:
    return {"X-API-Key": plain_key("admin-key")}


async def guesses_before_429(sends: Iterable[Send]) -> int:
    """How many of `sends` (bad guesses) were answered 401 before the first 429; every one after is a 429 too."""
    statuses = []
    for send in sends:
        resp = await send()
        statuses.append(resp.status)
        if resp.status == 429:
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
    allowed = statuses.index(429) if 429 in statuses else len(statuses)
    assert set(statuses[:allowed]) == {401} and set(statuses[allowed:]) <= {429}, statuses
    return allowed


def audit_clients(tmp_path: Path, status: int) -> list[str]:
    """The `client` of each audit line with result `status`, in order."""
    lines = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    return [line["client"] for line in lines if line["result"] == status]


async def test_a_valid_credential_is_never_refused_only_failures_are(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await limited_client(aiohttp_client, tmp_path)
    token_resp = await client.post("/api/v1/auth/tokens", json={}, headers=admin())
    token = (await token_resp.json())["data"]["token"]
    assert await guesses_before_429(lambda: client.get(PATH, headers=BAD) for _ in range(20)) == LIMIT
    assert (await client.get(PATH, headers=admin())).status == 200
    assert (await client.get(PATH, headers={"Authorization": f"Bearer {token}"})).status == 200
    refused = await client.get(PATH, headers=BAD)
    assert refused.status == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (await client.get(PATH, headers={"Authorization": "Bearer not.a.token"})).status == 429


async def test_the_budget_comes_back_as_failures_age(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await limited_client(aiohttp_client, tmp_path, auth={"failed_limit": 3, "failed_window": 2})
    assert await guesses_before_429(lambda: client.get(PATH, headers=BAD) for _ in range(3)) == 3
    refused = await client.get(PATH, headers=BAD)
    assert refused.status == 429 and 1 <= int(refused.headers["Retry-After"]) <= 2
    await asyncio.sleep(2.5)  # longer than the window: the three failures (and the refused guess) have aged out
    assert (await client.get(PATH, headers=BAD)).status == 401


async def test_all_of_loopback_shares_one_budget(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await limited_client(aiohttp_client, tmp_path)
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{n}", 0))) for n in range(2, 32)
    ]
    try:
        url = client.make_url(PATH)
        # One guess from each of 30 loopback addresses: one budget, spent after LIMIT of them.
        assert await guesses_before_429(lambda s=s: s.get(url, headers=BAD) for s in sessions) == LIMIT
        assert (await sessions[-1].get(url, headers=admin())).status == 200
    finally:
        await asyncio.gather(*(session.close() for session in sessions))


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.2", "loopback"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ],
)
def test_addresses_one_caller_can_rotate_share_a_budget(address: str, name: str) -> None:
    assert client_group(address) == name


async def test_a_trusted_proxys_clients_are_limited_and_audited_as_themselves(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await limited_client(aiohttp_client, tmp_path, server={"trusted_proxies": ["127.0.0.1/32"]})

    def via_proxy(forwarded_for: str, headers: dict[str, str] = BAD) -> Send:
        return lambda: client.get(PATH, headers={**headers, "X-Forwarded-For": forwarded_for})

    assert await guesses_before_429(via_proxy("203.0.113.7") for _ in range(LIMIT + 3)) == LIMIT
    # What the client wrote left of the proxy's own entry does not give it a new address.
    assert (await via_proxy("198.51.100.1, 203.0.113.7")()).status == 429
    assert await guesses_before_429(via_proxy("198.51.100.9") for _ in range(LIMIT + 3)) == LIMIT
    # IPv6 clients by /64: another host of the same /64 shares the budget, another /64 has its own.
    assert await guesses_before_429(via_proxy("2001:db8:1:2::1") for _ in range(LIMIT)) == LIMIT
    assert (await via_proxy("2001:db8:1:2::ffff")()).status == 429
    assert (await via_proxy("2001:db8:1:3::1")()).status == 401
    # A valid key is let in whatever its address did, and its audit line names the proxy's client.
    assert (
        await client.post("/api/v1/auth/tokens", json={}, headers={**admin(), "X-Forwarded-For": "203.0.113.7"})
    ).status == 201
    # Two trusted hops (a proxy in front of the proxy): the walk goes on past the inner one.
    two_hops = {**admin(), "X-Forwarded-For": "198.51.100.20, 127.0.0.1"}
    assert (await client.post("/api/v1/auth/tokens", json={}, headers=two_hops)).status == 201
    # A hop that is not an address ends the walk at the proxy: the proxy is the client, not a 400.
    assert (
        await client.post("/api/v1/auth/tokens", json={}, headers={**admin(), "X-Forwarded-For": "junk"})
    ).status == 201
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as direct:
        # Not a trusted proxy: its own address, its header ignored.
        url = client.make_url("/api/v1/auth/tokens")
        resp = await direct.post(url, json={}, headers={**admin(), "X-Forwarded-For": "198.51.100.77"})
        assert resp.status == 201
    assert audit_clients(tmp_path, 201) == ["203.0.113.7", "198.51.100.20", "127.0.0.1", "127.0.0.2"]


async def test_the_forwarded_header_when_the_proxy_writes_that_one(aiohttp_client: Any, tmp_path: Path) -> None:
    server = {"trusted_proxies": ["127.0.0.1"], "forwarded_header": "Forwarded"}
    client = await limited_client(aiohttp_client, tmp_path, server=server)
    forwarded = {"Forwarded": 'for="[2001:db8::5]:4711";proto=https', "X-Forwarded-For": "198.51.100.3"}
    assert (await client.post("/api/v1/auth/tokens", json={}, headers={**admin(), **forwarded})).status == 201
    assert audit_clients(tmp_path, 201) == ["2001:db8::5"]


async def test_without_trusted_proxies_forwarding_headers_are_ignored(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await limited_client(aiohttp_client, tmp_path)
    clients = (f"203.0.113.{n}" for n in range(1, LIMIT + 5))
    sends = (
        lambda c=c: client.get(PATH, headers={**BAD, "X-Forwarded-For": c, "Forwarded": f"for={c}"}) for c in clients
    )
    assert await guesses_before_429(sends) == LIMIT
    headers = {**admin(), "X-Forwarded-For": "203.0.113.1", "Forwarded": "for=203.0.113.1"}
    assert (await client.post("/api/v1/auth/tokens", json={}, headers=headers)).status == 201
    assert audit_clients(tmp_path, 201) == ["127.0.0.1"]


async def test_a_request_without_any_credential_is_no_guess(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await limited_client(aiohttp_client, tmp_path)
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "DELETE"}
    for n in range(50):
        resp = await [
            lambda: client.get(PATH),
            lambda: client.options("/api/v1/containers", headers=preflight),
            lambda: client.get("/health"),  # a probe on the wrong path
            lambda: client.get(PATH, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
            lambda: client.get(PATH, headers={"X-API-Key": ""}),
        ][n % 5]()
        assert resp.status == 401
    assert await guesses_before_429(lambda: client.get(PATH, headers=BAD) for _ in range(LIMIT + 2)) == LIMIT
    assert (await client.get(PATH)).status == 401  # still no guess, and not refused as one


@pytest.mark.parametrize(
    ("proxies", "why"),
    [
        ('["10.0.0.1/8"]', "has host bits set"),
        ('["proxy.example"]', "not a network in CIDR notation"),
        ("[8]", "a network as a string"),
        ('"10.0.0.0/8"', "Not a valid list"),
    ],
)
def test_a_bad_trusted_proxy_stops_start_up_naming_the_key(tmp_path: Path, proxies: str, why: str) -> None:
    config = tmp_path / "moorage.toml"
    config.write_text(f'[server]\nstate_dir = "{tmp_path}/state"\ntrusted_proxies = {proxies}\n')
    done = subprocess.run(
        [sys.executable, "-m", "moorage", "serve", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "server.trusted_proxies" in done.stderr and why in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_trusted_proxies_take_networks_and_addresses(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {}, server={"trusted_proxies": ["10.0.0.0/8", "::1", "192.0.2.7"]})
    assert [str(net) for net in settings.server.trusted_proxies] == ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]


async def test_the_access_log_names_the_client_a_trusted_proxy_forwarded(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon]
) -> None:
    daemon = spawn_daemon(
        f'[server]\nstate_dir = "{tmp_path}/state"\naccess_log = true\ntrusted_proxies = ["127.0.0.1/32"]\n'
    )
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.url}/healthz", headers=forwarded) as resp:
        assert resp.status == 200
    assert daemon.stop() == 0
    [line] = [line for line in daemon.output().splitlines() if "aiohttp.access" in line]
    assert '203.0.113.7 "GET /healthz" 200' in line
