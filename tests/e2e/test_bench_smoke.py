"""The benchmark's code runs end to end with tiny numbers (the real run is `make bench`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "submit_single_jobs_per_s",
    "submit_batch_jobs_per_s",
    "drain_python_jobs_per_s",
    "drain_command_jobs_per_s",
    "pickup_p50_ms",
    "pickup_p95_ms",
    "pickup_p99_ms",
    "server_peak_rss_mb",
    "worker_peak_rss_mb",
}


def test_bench_runs_and_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--drain-jobs",
            "40",
            "--command-jobs",
            "10",
            "--single-jobs",
            "20",
            "--pickup-jobs",
            "10",
            "--pickup-rate",
            "100",
            "--calibration-calls",
            "20",
            "--output",
            str(output),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(output.read_text())
    assert figures.keys() >= KEYS
    for key in KEYS:
        assert figures[key] > 0, key
    assert set(figures["drain_cpu_s"]) == {"server", "worker", "postgres"}
    assert figures["machine"]["bare_grpc_unary_per_s"] > 0
    # CPU per call over a handful of calls may round to zero (the clock ticks in 10 ms): only
    # check that the figures are there.
    for per_call in (
        figures["machine"]["bare_grpc_server_us_per_call"],
        figures["machine"]["bare_grpc_client_us_per_call"],
        figures["submit_single_server_us_per_call"],
    ):
        assert isinstance(per_call, int)
        assert per_call >= 0
    assert figures["machine"]["python_loop_10m_s"] > 0
    assert figures["parameters"]["batch_in_flight"] == "2"  # SubmitJobs calls overlapping
    assert "drain_python_jobs_per_s" in result.stdout
