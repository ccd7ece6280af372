"""A valid key is accepted in either header and its role applies, a disabled one is refused: each on a route
that asks the engine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from moorage.app import create_app

from ..helpers import make_settings, plain_key


@pytest.mark.parametrize("scheme", ["X-API-Key", "Bearer"])
async def test_a_valid_key_is_accepted_in_either_header(anon: TestClient, api_key: str, scheme: str) -> None:
    headers = {"X-API-Key": api_key} if scheme == "X-API-Key" else {"Authorization": f"Bearer {api_key}"}
    resp = await anon.get("/api/v1/containers?limit=1", headers=headers)
    assert resp.status == 200
    body = await resp.json()
    assert body["code"] == 200 and body["message"] == "success"


async def test_each_of_several_keys_is_accepted_and_its_role_applies(aiohttp_client: Any, tmp_path: Any) -> None:
    settings = make_settings(tmp_path, {"ops": "operator", "watcher": "viewer", "root": "admin"})
    client = await aiohttp_client(create_app(settings))
    for name in ("ops", "watcher", "root"):
        resp = await client.get("/api/v1/containers?limit=1", headers={"X-API-Key": plain_key(name)})
        assert resp.status == 200, name


async def test_a_disabled_key_is_refused(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"old": "admin", "new": "admin"})
    keys = tuple(replace(k, disabled=k.name == "old") for k in settings.auth.api_keys)
    client = await aiohttp_client(create_app(settings.with_keys(keys)))
    assert (await client.get("/api/v1/containers?limit=1", headers={"X-API-Key": plain_key("old")})).status == 401
    assert (await client.get("/api/v1/containers?limit=1", headers={"X-API-Key": plain_key("new")})).status == 200
