"""What HTTP clients expect of answers that ask the engine: Retry-After on 503 and 429, Location on 201,
Cache-Control: no-store on what an authenticated caller reads, and streams never compressed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiodocker
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.web.state import AUDIT

from ..helpers import TEST_IMAGE, TEST_LABEL, MakeContainer, make_settings, plain_key


async def test_every_503_and_429_says_when_to_retry(
    aiohttp_client: Any, tmp_path: Path, client: TestClient, make_container: MakeContainer
) -> None:
    down = make_settings(tmp_path / "down", {"test-admin": "admin"}, docker={"url": "tcp://127.0.0.1:1"})
    engine_down = await aiohttp_client(create_app(down), headers={"X-API-Key": plain_key("test-admin")})
    resp = await engine_down.get("/api/v1/containers")
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    client.app[AUDIT].close()  # a mutation that cannot be audited is refused with a 503
    resp = await client.post("/api/v1/auth/tokens", json={})
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    capped = make_settings(tmp_path / "capped", {"test-admin": "admin"}, server={"max_streams": 1})
    streams = await aiohttp_client(create_app(capped), headers={"X-API-Key": plain_key("test-admin")})
    running = await make_container(cmd=["sh", "-c", "echo up; sleep 600"], start=True)
    follow = await streams.get(f"/api/v1/containers/{running['Id']}/logs?follow=true")
    await follow.content.readline()
    resp = await streams.get(f"/api/v1/containers/{running['Id']}/logs?follow=true")
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    follow.close()


async def test_a_created_container_and_token_say_where_they_are(
    client: TestClient, docker: aiodocker.Docker, case_label: str
) -> None:
    body = {"image": TEST_IMAGE, "pull": "never", "labels": {TEST_LABEL: case_label}}
    resp = await client.post("/api/v1/containers", json=body)
    assert resp.status == 201
    created = (await resp.json())["data"]
    try:
        assert resp.headers["Location"] == f"/api/v1/containers/{created['id']}"
        assert (await (await client.get(resp.headers["Location"])).json())["data"]["id"] == created["id"]
    finally:
        await docker.containers.container(created["id"]).delete(force=True)
    resp = await client.post("/api/v1/auth/tokens", json={})
    assert resp.status == 201
    assert resp.headers["Location"] == f"/api/v1/auth/tokens/{(await resp.json())['data']['jti']}"
    assert (await client.delete(resp.headers["Location"])).status == 200


async def test_authenticated_answers_are_not_stored_and_probes_are_left_alone(
    client: TestClient, anon: TestClient, make_container: MakeContainer
) -> None:
    running = await make_container(cmd=["sh", "-c", "echo up"], start=True)
    for resp in (
        await client.get("/api/v1/containers"),
        await client.get(f"/api/v1/containers/{running['Id']}/logs?format=text"),  # a stream
        await client.get("/api/v1/no-such-route"),
        await anon.get("/api/v1/containers"),  # the 401
    ):
        assert resp.headers["Cache-Control"] == "no-store", resp.url
    for path in ("/healthz", "/readyz"):
        assert "Cache-Control" not in (await anon.get(path)).headers


async def test_streams_are_never_compressed(client: TestClient, make_container: MakeContainer) -> None:
    running = await make_container(cmd=["sh", "-c", "for i in $(seq 500); do echo line $i of the log; done"])
    await running_and_done(client, running["Id"])
    for fmt in ("text", "ndjson"):
        resp = await client.get(
            f"/api/v1/containers/{running['Id']}/logs?format={fmt}",
            headers={"Accept-Encoding": "gzip"},
            auto_decompress=False,
        )
        assert resp.status == 200
        assert "Content-Encoding" not in resp.headers
        assert len(await resp.read()) > 1024
    page = await client.get(f"/api/v1/containers/{running['Id']}/logs?format=json", headers={"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip"  # the JSON page is an answer like any other
    assert len((await page.json())["data"]["items"]) == 500


async def running_and_done(client: TestClient, container_id: str) -> None:
    """Start the container and wait for it to exit (10 s at most)."""
    assert (await client.post(f"/api/v1/containers/{container_id}/start")).status == 200
    for _ in range(100):
        detail = (await (await client.get(f"/api/v1/containers/{container_id}")).json())["data"]
        if detail["status"] == "exited":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the container did not exit")
