"""What HTTP clients expect: Retry-After on 503 and 429, Location on 201, Cache-Control: no-store on what an
authenticated caller reads, an X-Request-Id on every answer (in its audit and log lines too), gzip of large JSON."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.web.openapi import build_document
from moorage.web.state import AUDIT

from ..helpers import TEST_IMAGE, TEST_LABEL, Daemon, MakeContainer, make_settings, plain_key

NEW_ID = re.compile(r"[0-9a-f]{32}")
IDENTITY = {"Accept-Encoding": "identity"}


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]


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


@pytest.mark.parametrize(
    ("given", "kept"),
    [("trace-1:a.b_c-D", True), ("x" * 128, True), ("x" * 129, False), ("a b", False), ("a\u00e9", False), ("", False)],
)
async def test_every_answer_names_its_request_id_the_clients_if_sane(
    client: TestClient, tmp_path: Path, given: str, kept: bool
) -> None:
    headers = {"X-Request-Id": given.encode().decode("latin-1")} if given else {}
    for resp in (
        await client.get("/healthz", headers=headers),
        await client.get("/api/v1/no-such-route", headers=headers),
        await client.post("/api/v1/auth/tokens", json={}, headers=headers),
    ):
        answered = resp.headers["X-Request-Id"]
        assert answered == given if kept else NEW_ID.fullmatch(answered), (given, answered)
    assert audit_lines(tmp_path)[-1]["request_id"] == answered


async def test_two_requests_get_two_ids(anon: TestClient) -> None:
    first, second = (await anon.get("/healthz")).headers, (await anon.get("/healthz")).headers
    assert NEW_ID.fullmatch(first["X-Request-Id"]) and first["X-Request-Id"] != second["X-Request-Id"]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_log_lines_logged_while_handling_a_request_name_its_id(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon], log_format: str
) -> None:
    daemon = spawn_daemon(
        f'[server]\nstate_dir = "{tmp_path}/state"\nlog_format = "{log_format}"\n'
        '[docker]\nurl = "tcp://127.0.0.1:1"\n'  # nothing answers: each engine call logs a warning
    )
    key = daemon.generated_key()
    headers = {"X-API-Key": key, "X-Request-Id": "probe-42"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{daemon.url}/api/v1/containers") as resp,
    ):
        assert resp.status == 503
        assert resp.headers["X-Request-Id"] == "probe-42"
    assert daemon.stop() == 0
    lines = [line for line in daemon.output().splitlines() if "/api/v1/containers failed" in line]
    assert lines, daemon.output()
    for line in lines:
        if log_format == "text":
            assert line.endswith(" [req=probe-42]"), line
        else:
            assert json.loads(line)["request_id"] == "probe-42", line


async def test_large_json_is_gzipped_for_a_client_that_accepts_it(client: TestClient) -> None:
    plain = await client.get("/api/v1/openapi.json", headers=IDENTITY)
    assert "Content-Encoding" not in plain.headers
    document = await plain.read()
    assert len(document) > 1024
    raw = await client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in raw.headers["Vary"]
    compressed = await raw.read()
    assert len(compressed) < len(document) / 3
    assert gzip.decompress(compressed) == document
    refused = await client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers
    small = await client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


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


def test_the_document_declares_the_headers(tmp_path: Path) -> None:
    document = build_document(create_app(make_settings(tmp_path, {"test-admin": "admin"})).router)
    create = document["paths"]["/api/v1/containers"]["post"]["responses"]
    assert "Location" in create["201"]["headers"]
    for status in ("429", "503"):
        assert "Retry-After" in create[status]["headers"]
    for status, response in create.items():
        assert {"X-Request-Id", "Cache-Control"} <= set(response["headers"]), status
    assert "Cache-Control" not in document["paths"]["/healthz"]["get"]["responses"]["200"].get("headers", {})
