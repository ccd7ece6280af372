"""Every timestamp moorage writes is RFC 3339 UTC with a Z, from one writer (moorage.timestamps): to the second
in the API's fields, to the millisecond in log and audit lines, heartbeats and metrics samples."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone

from moorage.access.audit import stamp
from moorage.daemon.logsetup import JsonFormatter
from moorage.schemas.common import docker_time, rfc3339
from moorage.schemas.metrics import ContainerMetricsSchema
from moorage.web.responses import heartbeat

WALL = 1764626400.1239  # 2025-12-01T22:00:00.1239 UTC
MILLISECONDS = "2025-12-01T22:00:00.123Z"
SECONDS = "2025-12-01T22:00:00Z"
NOW_IN_MILLISECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_a_json_log_record_is_stamped_in_utc_with_a_z() -> None:
    record = logging.LogRecord("moorage", logging.INFO, __file__, 1, "up", (), None)
    record.created = WALL
    assert json.loads(JsonFormatter().format(record))["time"] == MILLISECONDS


def test_audit_lines_and_metrics_samples_are_stamped_to_the_millisecond() -> None:
    assert stamp(WALL) == MILLISECONDS
    assert ContainerMetricsSchema().dump({"sampled_at": WALL})["sampled_at"] == MILLISECONDS
    assert NOW_IN_MILLISECONDS.fullmatch(stamp())
    assert NOW_IN_MILLISECONDS.fullmatch(json.loads(heartbeat())["heartbeat"])


def test_api_fields_are_stamped_to_the_second_in_utc() -> None:
    assert rfc3339(datetime(2025, 12, 1, 23, 0, 0, 999999, tzinfo=timezone(timedelta(hours=1)))) == SECONDS
    assert docker_time("2025-12-01T23:00:00.123456789+01:00") == SECONDS
    assert docker_time(int(WALL)) == SECONDS
