"""A moment the engine cannot count (its int64 nanoseconds end in 2262) is the caller's 400, not the engine's 500."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from ..helpers import assert_error


@pytest.mark.parametrize("moment", ["999999999999", "100000000h"])
@pytest.mark.parametrize("path", ["/api/v1/events?since={}", "/api/v1/containers/web/logs?until={}"])
async def test_a_moment_past_what_the_engine_counts_is_a_400_naming_it(
    client: TestClient, path: str, moment: str
) -> None:
    resp = await client.get(path.format(moment))
    body = await resp.json()
    assert resp.status == 400, body
    assert_error(body, 400)
    field = "since" if "since" in path else "until"
    assert [error["field"] for error in body["errors"]] == [field]
