"""GET /audit on the real app: the calls made through it come back newest first, with their key, action and
status, filtered and paged, from rotated files too; bad filters are 400s naming the field. The calls are token
issues and revocations, which need no engine."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..helpers import app_client, assert_error, key_headers

AUDIT = "/api/v1/audit"
ADMIN = key_headers("admin-key")


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, audit={"max_bytes": 1024, "keep": 3})


async def lines(client: TestClient, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"{AUDIT}{query}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["data"])


async def test_calls_come_back_newest_first_with_key_action_and_status(client: TestClient) -> None:
    viewer, operator = key_headers("viewer-key"), key_headers("operator-key")
    assert (await client.post("/api/v1/auth/tokens", json={"ttl": 60}, headers=viewer)).status == 201
    assert (await client.post("/api/v1/auth/tokens", json={"role": "admin"}, headers=operator)).status == 403
    assert (await client.post("/api/v1/auth/tokens", json={"ttl": 0}, headers=viewer)).status == 400
    jti = uuid.uuid4().hex
    assert (await client.delete(f"/api/v1/auth/tokens/{jti}", headers=ADMIN)).status == 200
    assert (await client.post("/api/v1/auth/tokens")).status == 401
    assert (await client.get("/api/v1/containers", headers=viewer)).status != 403  # a read: not audited

    page = await lines(client)
    assert page["total"] == len(page["items"]) == 5  # reading the audit is a read too
    found = [(item["key"], item["action"], item["method"], item["result"]) for item in page["items"]]
    assert found == [
        (None, "issue_token", "POST", 401),
        ("admin-key", "revoke_token", "DELETE", 200),
        ("viewer-key", "issue_token", "POST", 400),
        ("operator-key", "issue_token", "POST", 403),
        ("viewer-key", "issue_token", "POST", 201),
    ]
    assert page["items"][1]["target"] == jti and page["items"][1]["role"] == "admin"
    times = [item["time"] for item in page["items"]]
    assert times == sorted(times, reverse=True)

    async def results(query: str) -> list[int]:
        found = await lines(client, query)
        assert found["total"] == len(found["items"])
        return [item["result"] for item in found["items"]]

    assert await results("?key_name=viewer-key") == [400, 201]
    assert await results("?action=revoke_token") == [200]
    assert await results("?action=revoke_token&action=issue_token") == [401, 200, 400, 403, 201]
    assert await results(f"?target={jti}") == [200]
    assert await results("?status=4xx") == [401, 400, 403]
    assert await results("?status=201&status=403") == [403, 201]
    assert await results("?status=4xx&key_name=operator-key") == [403]
    assert await results("?since=10m") == [401, 200, 400, 403, 201]
    same_moment = [item["result"] for item in page["items"] if item["time"] == times[1]]  # to the millisecond
    assert 200 in same_moment and await results(f"?since={times[1]}&until={times[1]}") == same_moment
    assert await results("?until=2000-01-01T00:00:00Z") == []
    paged = await lines(client, "?offset=1&limit=2")
    assert paged["total"] == 5 and [item["result"] for item in paged["items"]] == [200, 400]


async def test_the_query_reads_the_rotated_files(client: TestClient, tmp_path: Path) -> None:
    for _ in range(6):
        assert (await client.delete(f"/api/v1/auth/tokens/{uuid.uuid4().hex}", headers=ADMIN)).status == 200
    state = tmp_path / "state"
    assert (state / "audit.log.1").exists()
    on_disk = sum(len(path.read_text().splitlines()) for path in state.glob("audit.log*"))
    page = await lines(client, "?action=revoke_token")
    assert page["total"] == on_disk == 6  # 1024 bytes x 4 files hold them all (two lines of 400 bytes a file)
    assert (await lines(client, "?offset=5"))["items"][0]["action"] == "revoke_token"


async def test_queries_while_calls_rotate_the_files_neither_repeat_nor_miss_a_line(client: TestClient) -> None:
    async def revoke(count: int) -> None:
        for _ in range(count):
            assert (await client.delete(f"/api/v1/auth/tokens/{uuid.uuid4().hex}", headers=ADMIN)).status == 200

    async def read(count: int) -> None:
        for _ in range(count):
            page = await lines(client)
            ids = [item["request_id"] for item in page["items"]]
            times = [item["time"] for item in page["items"]]
            assert len(set(ids)) == len(ids) == page["total"] and times == sorted(times, reverse=True)

    await asyncio.gather(revoke(60), read(30), read(30))
    newest = await lines(client)
    on_disk = {item["request_id"] for item in newest["items"]}
    assert len(on_disk) == newest["total"] >= 8  # four files of 1024 bytes hold at least two lines each


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?offset=-1", "offset"),
        ("?status=abc", "status.0"),
        ("?status=600", "status.0"),
        ("?status=4x", "status.0"),
        ("?action=Start", "action.0"),
        ("?since=yesterday", "since"),
        ("?since=10m&until=1h", "until"),
        ("?key_name=", "key_name"),
        (f"?target={'x' * 300}", "target"),
        ("?key_name=a&key_name=b", "key_name"),
        ("?colour=red", "colour"),
    ],
)
async def test_a_bad_filter_is_a_400_naming_it(client: TestClient, query: str, field: str) -> None:
    resp = await client.get(f"{AUDIT}{query}", headers=ADMIN)
    body = await resp.json()
    assert resp.status == 400, body
    assert_error(body, 400)
    assert field in [error["field"] for error in body["errors"]]


async def test_only_an_admin_reads_the_audit(client: TestClient) -> None:
    resp = await client.get(AUDIT, headers=key_headers("operator-key"))
    assert resp.status == 403
