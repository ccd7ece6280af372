"""The benchmark scripts run, at a tiny size, so that they cannot rot between measurements."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT, free_port


def test_the_log_benchmark_runs_and_prints_its_figures() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "logs.py"),
            "--lines",
            "2000",
            "--rounds",
            "1",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = dict(line.split(None, 1) for line in done.stdout.splitlines() if line and not line.startswith("rounds"))
    assert figures["lines"] == "2000"
    assert float(figures["ratio"]) > 0 and float(figures["moorage_rss_growth_mb"]) >= 0
