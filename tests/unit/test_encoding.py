"""Input that cannot be encoded again (lone UTF-16 surrogates, control characters): every answer is still JSON, a
400 naming the field, counted and audited as the 400 it is; and no client text forges a line of the log."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from ..helpers import TEST_IMAGE, Daemon

# Raw bodies, as a hostile client writes them: json.dumps would not let these through.
BAD_BODIES = [
    ("/api/v1/auth/tokens", rb'{"\ud800": 1}', "\\ud800"),
    ("/api/v1/containers", b'{"image": "%s", "environment": {"\\ud800": "x"}}' % TEST_IMAGE.encode(), "\\ud800"),
    ("/api/v1/containers", b'{"image": "%s", "labels": {"\\udbff": "x"}}' % TEST_IMAGE.encode(), "\\udbff"),
    ("/api/v1/containers", b'{"image": "x", "\\ud800": 1, "\\ud800": 2}', "\\ud800"),
]
FORGED = 'INFO moorage.audit: {"key": "test-admin", "method": "DELETE", "result": 200}'


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]


async def counted(client: TestClient, route: str, status: int) -> float:
    text = await (await client.get("/metrics")).text()
    series = f'moorage_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
    return next((float(line.removeprefix(series)) for line in text.splitlines() if line.startswith(series)), 0.0)


@pytest.mark.parametrize(("path", "raw", "field"), BAD_BODIES)
async def test_unencodable_text_is_a_400_naming_the_field_counted_and_audited(
    client: TestClient, tmp_path: Path, path: str, raw: bytes, field: str
) -> None:
    resp = await client.post(path, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["code"] == 400
    assert any(field in error["field"] for error in body["errors"]), body
    assert await counted(client, path, 400) == 1
    assert [(line["path"], line["result"]) for line in audit_lines(tmp_path)] == [(path, 400)]


def test_a_traceback_cannot_begin_a_line_of_its_own() -> None:
    from moorage.daemon.logsetup import TextFormatter  # here: the daemon's module, imported by this test only

    formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    try:
        raise ValueError(f"bad key\n{FORGED}\r\x1b[2K")
    except ValueError as err:
        record = logging.LogRecord("moorage.x", logging.ERROR, __file__, 1, "failed: %s", (str(err),), None)
        record.exc_info = (type(err), err, err.__traceback__)
    first, *rest = formatter.format(record).split("\n")
    assert first.startswith("ERROR moorage.x: failed: bad key\\n" + FORGED + "\\r\\x1b[2K")
    assert rest and all(line.startswith("  | ") for line in rest)
    assert "\r" not in "".join(rest) and "\x1b" not in "".join(rest)


async def test_a_key_holding_a_forged_log_line_writes_no_line_of_its_own(
    tmp_path: Path, spawn_daemon: Callable[..., Daemon]
) -> None:
    daemon = spawn_daemon(f'[server]\nstate_dir = "{tmp_path}/state"\naccess_log = true\n')
    key = daemon.generated_key()
    forged_key = json.dumps(FORGED)[1:-1]
    raw = f'{{"\\ud800\\n{forged_key}": 1}}'.encode()
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as session:
        async with session.post(
            f"{daemon.url}/api/v1/auth/tokens", data=raw, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/json"
        # The access log quotes the path, which percent-decoding can fill with a newline too.
        async with session.get(f"{daemon.url}/api/v1/x%0A{FORGED.replace(' ', '%20')}") as resp:
            assert resp.status == 404
    assert daemon.stop() == 0
    lines = daemon.output().splitlines()
    assert not [line for line in lines if line.startswith('INFO moorage.audit: {"key": "test-admin"')]
    assert "Traceback" not in daemon.output()
    assert any("moorage.audit" in line and '"result": 400' in line for line in lines)
