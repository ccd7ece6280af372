"""The benchmark runs, at a tiny size, so that it cannot rot between measurements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import ROOT, docker_cli, free_port

SCENARIOS = {
    "list",
    "detail",
    "cycle",
    "logs",
    "follow",
    "merged",
    "metrics",
    "host",
    "recreate",
    "exec",
    "volumes",
    "networks",
    "grep",
    "rss",
}


@pytest.mark.timeout(180)
def test_the_benchmark_runs_every_scenario_and_leaves_nothing_it_made(tmp_path: Path) -> None:
    results_path = tmp_path / "bench.json"
    tiny = "--sizes 2 --requests 20 --log-lines 2000 --log-rounds 1 --followers 3 --follow-seconds 1"
    tiny += " --metrics-containers 2 --load-seconds 1 --recreate-rounds 1 --exec-rounds 2 --objects 2 --no-glances"
    tiny += " --grep-rounds 1 --merged-containers 3 --merged-seconds 1"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", *tiny.split(), "--json", str(results_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(results_path.read_text())
    assert "| scenario | moorage | baseline | ratio | target | met |" in done.stdout
    rows = results["rows"]
    assert {row["name"] for row in rows} == SCENARIOS
    for row in rows:
        assert row["moorage"][row["headline"]] > 0 and row["reference"][row["headline"]] > 0, row
        # A floor row (a bare proxy, not moorage) has no target of its own.
        assert row["ratio"] > 0 and isinstance(row["met"], bool) == (row["subject"] == "moorage"), row
    (follow,) = (row for row in rows if row["name"] == "follow")
    assert follow["moorage"]["lines"] == follow["reference"]["lines"] == follow["moorage"]["expected"] == 3 * 100
    assert follow["moorage"]["all_arrived"] and follow["reference"]["all_arrived"]
    (merged,) = (row for row in rows if row["name"] == "merged")
    assert merged["moorage"]["lines"] == merged["reference"]["lines"] == merged["moorage"]["expected"] == 3 * 1000
    assert merged["moorage"]["all_arrived"] and merged["reference"]["all_arrived"]
    for kind in ("ps -a", "volume ls", "network ls"):
        assert docker_cli(*kind.split(), "-q", "--filter", f"label=moorage.bench={results['run_id']}") == "", kind


@pytest.mark.timeout(120)
def test_the_load_run_passes_only_with_no_errors_and_the_daemon_back_where_it_began(tmp_path: Path) -> None:
    results_path = tmp_path / "soak.json"
    tiny = f"--seconds 2 --connections 4 --port {free_port()} --json {results_path}"
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", *tiny.split()], cwd=ROOT, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(results_path.read_text())
    assert results["requests"] > 0 and results["errors"] == 0 and results["problems"] == []
    assert results["after"]["fds"] <= results["before"]["fds"] + 4
