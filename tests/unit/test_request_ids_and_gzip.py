"""What HTTP clients expect with no engine asked: an X-Request-Id on every answer (in its audit and log lines
too), gzip of large JSON, and the document declaring the headers (Retry-After, Location, Cache-Control; the
answers that carry them are in engine/test_retry_location_cache_headers.py)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.web.openapi import build_document

from ..helpers import Daemon, make_settings

NEW_ID = re.compile(r"[0-9a-f]{32}")
IDENTITY = {"Accept-Encoding": "identity"}


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]


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


def test_the_document_declares_the_headers(tmp_path: Path) -> None:
    document = build_document(create_app(make_settings(tmp_path, {"test-admin": "admin"})).router)
    create = document["paths"]["/api/v1/containers"]["post"]["responses"]
    assert "Location" in create["201"]["headers"]
    for status in ("429", "503"):
        assert "Retry-After" in create[status]["headers"]
    for status, response in create.items():
        assert {"X-Request-Id", "Cache-Control"} <= set(response["headers"]), status
    assert "Cache-Control" not in document["paths"]["/healthz"]["get"]["responses"]["200"].get("headers", {})
