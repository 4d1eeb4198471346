"""The benchmark's code runs end to end with tiny numbers (the real run is `make bench`).

It runs on the PostgreSQL target of the test run (JQ_TEST_POSTGRES, see tests/conftest.py):
`--postgres embedded` in `make test`, `--postgres system` in `make test-system-pg`; and once on
a DSN, the test run's own server, where it works in a database of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest

from bench.peer_ratios import RATIOS
from jobq.storage.embedded import bin_dir, system_bin_dir

REPO = Path(__file__).resolve().parents[2]
TINY = [
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
    "--sdk-sequential-jobs",
    "10",
    "--sdk-jobs",
    "64",
    "--enqueue-jobs",
    "10",
]
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
    "sdk_sequential_jobs_per_s",
    "sdk_async_sequential_jobs_per_s",
    "sdk_async_callers_jobs_per_s",
    "sdk_thread_callers_jobs_per_s",
    "sdk_async_callers_vs_single",
    "sdk_enqueue_tx_jobs_per_s",
    "events_drain_off_jobs_per_s",
    "events_drain_on_jobs_per_s",
    "events_drain_on_vs_off",
    "submit_single_vs_bare_grpc",
    "drain_key_limited_jobs_per_s",  # bench/flow.py: limited queues' drains
    "drain_rate_limited_jobs_per_s",
    "drain_key_limited_vs_plain",
    "drain_rate_limited_vs_plain",
}
PEER_KEYS = {
    "enqueue_bulk_jobs_per_s",
    "enqueue_single_jobs_per_s",
    "drain_jobs_per_s",
    "pickup_p50_ms",
    "pickup_p95_ms",
    "pickup_p99_ms",
    "worker_peak_rss_mb",
}


def run_bench(tmp_path: Path, postgres: str, *extra: str) -> tuple[dict[str, Any], str]:
    """The JSON and the printed table of a tiny run on `postgres`."""
    output = tmp_path / "latest.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--postgres",
            postgres,
            *TINY,
            *extra,
            "--output",
            str(output),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures: dict[str, Any] = json.loads(output.read_text())
    return figures, result.stdout


def version_of(binaries: Path) -> str:
    """The version `postgres --version` of an installation's `bin` directory names: 15.18 of
    "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"."""
    out = subprocess.run(
        [str(binaries / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"\(PostgreSQL\) (\S+)", out)
    assert found, out
    return found.group(1)


def test_tiny_bench_on_the_test_runs_postgres(tmp_path: Path) -> None:
    target = os.environ.get("JQ_TEST_POSTGRES") or "embedded"
    binaries = bin_dir() if target == "embedded" else system_bin_dir()
    if binaries is None:
        reason = "--postgres system needs the distribution's server: apt-get install postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run this test, but {reason}")
        pytest.skip(reason)
    replicas = ["--replicas", "2x2", "--replicas-jobs", str(REPLICAS_JOBS)]
    figures, stdout = run_bench(tmp_path, target, *replicas)
    check_figures(figures, stdout)
    check_tracing(figures)
    check_replicas(figures, stdout)
    check_horizon(figures)
    postgres = figures["postgres"]
    assert postgres["target"] == target
    assert figures["parameters"]["postgres"] == target
    assert postgres["server_version"].split()[0] == version_of(binaries)
    # PostgreSQL's default, and the package's; jobq's sessions turn it off.
    assert postgres["jit"] == {
        "server_default": "on",
        "jq_server_pool": "off",
        "jq_server_claim_pool": "off",
    }
    if target == "system":
        assert postgres["jit_available"] is True, "the distribution's build has LLVM JIT"
        assert postgres["settings"] == {}, "the package's default configuration, untouched"
    else:
        assert isinstance(postgres["jit_available"], bool)  # the wheel's build has no LLVM
        assert postgres["settings"] == {"max_connections": "200"}
    assert figures["drain_cpu_s"]["postgres"] >= 0
    assert re.search(rf"^postgres\.target +{target}$", stdout, flags=re.MULTILINE), stdout
    assert re.search(r"^postgres\.jit\.jq_server_pool +off$", stdout, flags=re.MULTILINE)


class _Server(Protocol):
    """What this test needs of the `pg_server` fixture's PgServer."""

    admin_dsn: str


def test_tiny_bench_on_a_dsn_works_in_a_database_of_its_own(
    tmp_path: Path, pg_server: _Server
) -> None:
    dsn = pg_server.admin_dsn
    # The tracing, pinned-horizon and replicas scenarios' rounds, run on the target above, add
    # nothing here.
    figures, stdout = run_bench(tmp_path, dsn, "--no-tracing", "--no-horizon", "--no-replicas")
    check_figures(figures, stdout)
    assert "tracing_drain_on_jobs_per_s" not in figures
    assert "horizon_claim_p50_ms" not in figures
    assert not [key for key in figures if key.startswith("replicas_")]
    assert figures["parameters"]["replicas"] == ""
    postgres = figures["postgres"]
    assert postgres["target"] == "dsn"
    assert figures["parameters"]["postgres"] == "dsn"
    assert postgres["jit"]["jq_server_pool"] == "off"
    assert figures["drain_cpu_s"]["postgres"] is None  # the server is not the bench's to watch
    password = unquote(urlsplit(dsn).password or "")
    assert password
    assert password not in (tmp_path / "latest.json").read_text() + stdout
    assert asyncio.run(bench_databases(dsn)) == []  # dropped at the end


async def bench_databases(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'jobq_bench_%'")
    finally:
        await conn.close()
    return [row["datname"] for row in rows]


def check_figures(figures: dict[str, Any], stdout: str) -> None:
    """Every figure of every target is there."""
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
    assert figures["parameters"]["sdk_callers"] == "32"  # as many as single SubmitJob calls
    assert figures["parameters"]["in_flight"] == "32"
    assert "drain_python_jobs_per_s" in stdout
    # Kafka events (bench/events.py): every transition of every job reached the broker.
    assert figures["events_published_per_job"] == 4.0
    assert figures["events_catch_up_s"] >= 0
    assert figures["events_lag_at_drain_end"] >= 0
    assert re.search(r"^sdk_async_callers_vs_single +[0-9.]+$", stdout, flags=re.MULTILINE)
    assert {"target", "server_version", "jit", "jit_available"} <= figures["postgres"].keys()
    check_storage(figures)
    check_peer(figures, stdout)


def check_storage(figures: dict[str, Any]) -> None:
    """The main drain's storage figures (bench/storage_stats.py) count that drain and nothing
    else: every job claimed, started and finished (three events each), none submitted."""
    jobs = int(figures["parameters"]["drain_jobs"])
    assert figures["drain_stats_settled"] is True
    assert 0 <= figures["jobs_hot_update_ratio"] <= 1
    assert figures["wal_bytes_per_job"] > 0
    assert figures["wal_stats_bytes_per_job"] > 0  # pg_stat_wal: PostgreSQL 14 and later
    tables = figures["drain_table_stats"]
    assert tables["job_events"]["inserted"] == 3 * jobs
    assert tables["jobs"]["inserted"] == 0
    # Claimed, then started and finished in one update or two (bench/storage_stats.py).
    assert 2 * jobs <= tables["jobs"]["updated"] <= 3 * jobs
    assert 0 <= tables["jobs"]["hot_updated"] <= tables["jobs"]["updated"]
    assert tables["jobs"]["dead_tuples_after"] >= 0


def check_horizon(figures: dict[str, Any]) -> None:
    """The pinned-horizon scenario (bench/pinned_horizon.py): both modes' figures, and the
    pinned transaction kept every row version the drain's updates left behind."""
    jobs = int(figures["parameters"]["drain_jobs"])
    assert figures["horizon_stats_settled"] is True
    for prefix in ("horizon_", "horizon_normal_"):
        assert figures[f"{prefix}drain_jobs_per_s"] > 0
        assert 0 < figures[f"{prefix}claim_p50_ms"] <= figures[f"{prefix}claim_p99_ms"]
        assert figures[f"{prefix}claim_mean_ms"] > 0
        assert figures[f"{prefix}claims"] > 0
        assert figures[f"{prefix}wal_bytes_per_job"] > 0
        assert figures[f"{prefix}jobs_dead_tuples"] >= 0
        assert figures[f"{prefix}empty_head_read_ms"] > 0
        assert figures[f"{prefix}empty_head_read_buffers"] > 0  # the index's root at least
    # Nothing could be pruned or vacuumed: at least the two updates of each job are dead.
    assert figures["horizon_jobs_dead_tuples"] >= 2 * jobs
    assert figures["horizon_drain_vs_normal"] > 0


def check_peer(figures: dict[str, Any], stdout: str) -> None:
    """pgqueuer ran on the same server, and every ratio and bar of bench/peer_ratios.py is
    there, computed from the two sides' figures."""
    peer = figures["pgqueuer"]
    assert peer["version"] == "1.6.0"
    assert peer["settings"]["batch_size"] == "10 (default)"
    for key in PEER_KEYS:
        assert peer[key] > 0, key
    assert peer["tuned"]["batch_size"] == 100
    assert peer["tuned"]["drain_jobs_per_s"] > 0
    postgres_cpu = figures["drain_cpu_s"]["postgres"]
    assert (peer["drain_cpu_s"]["postgres"] is None) == (postgres_cpu is None)
    # All the drain's CPU per job: None where PostgreSQL's is not the bench's to measure.
    for side in (figures, peer):
        assert (side["drain_cpu_us_per_job"] is None) == (postgres_cpu is None)
        if postgres_cpu is not None:
            assert side["drain_cpu_us_per_job"] > 0
    ratios = figures["ratio_vs_pgqueuer"]
    names = {ratio.name for ratio in RATIOS}
    expected = names if postgres_cpu is not None else names - {"cpu_per_job"}
    assert set(ratios) == expected
    assert ratios["drain_python"] == round(
        figures["drain_python_jobs_per_s"] / peer["drain_jobs_per_s"], 3
    )
    assert ratios["pickup_p50"] == round(figures["pickup_p50_ms"] / peer["pickup_p50_ms"], 3)
    targets = figures["targets"]
    assert targets["drain_python"]["bar"] == ">= 2.0"
    assert targets["drain_python"]["met"] == (ratios["drain_python"] >= 2.0)
    assert targets["server_peak_rss_mb"]["value"] == figures["server_peak_rss_mb"]
    assert "drain_python_vs_tuned" not in targets  # reported, no bar
    assert re.search(r"^ratio_vs_pgqueuer\.drain_python +[0-9.]+$", stdout, flags=re.MULTILINE)
    assert re.search(r"^pgqueuer\.drain_jobs_per_s +[0-9.]+$", stdout, flags=re.MULTILINE)


def test_the_statement_profile_of_a_tiny_drain(tmp_path: Path) -> None:
    """`python -m bench.statements` (PostgreSQL's side of a drain, from pg_stat_statements)
    runs on the test run's PostgreSQL target and names the drain's statements."""
    target = os.environ.get("JQ_TEST_POSTGRES") or "embedded"
    if target == "system" and system_bin_dir() is None:
        reason = "--postgres system needs the distribution's server: apt-get install postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run this test, but {reason}")
        pytest.skip(reason)
    result = subprocess.run(
        [sys.executable, "-m", "bench.statements", "--postgres", target, "--jobs", "60", "--wal"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"drain: [0-9,]+ jobs/s", lines[0]), lines[0]
    rows = [line for line in lines[1:] if re.match(r" *[0-9.]+% +[0-9]+ calls ", line)]
    assert rows, result.stdout
    assert all(" B/job " in row for row in rows)
    # The claim and the completion of the drained jobs are among the statements it saw.
    assert any("WITH holder AS MATERIALIZED" in row for row in rows), result.stdout


TRACING_KEYS = {
    "tracing_drain_off_jobs_per_s",
    "tracing_drain_on_jobs_per_s",
    "tracing_drain_all_jobs_per_s",
    "tracing_drain_on_vs_off",
    "tracing_drain_all_vs_off",
}


def check_tracing(figures: dict[str, Any]) -> None:
    """OpenTelemetry's scenario (bench/tracing.py): every figure, and every span of every job
    of the fully traced round reached the OTLP sink (five: submit to report)."""
    for key in TRACING_KEYS:
        assert figures[key] > 0, key
    assert figures["tracing_spans_per_job_all"] == 5.0
    assert set(figures["tracing_drain_cpu_s"]) == {"off", "on", "all"}
    # CPU over a 40-job drain may round to zero (10 ms ticks): the ratios may then be None.
    assert {"tracing_cpu_on_vs_off", "tracing_cpu_all_vs_off"} <= figures.keys()


REPLICAS_JOBS = 400


def check_replicas(figures: dict[str, Any], stdout: str) -> None:
    """The replicas scenario (bench/replicas.py) with 2 jq-servers and 2 jq-workers: each
    process's CPU per job, the servers' sum set against the plain drain's, and every job
    submitted found DONE once (the scenario itself fails the run otherwise)."""
    assert figures["parameters"]["replicas"] == "2x2"
    assert "replicas_1x1_jobs_per_s" not in figures  # only the configurations asked for
    assert figures["replicas_2x2_jobs_per_s"] > 0
    assert figures["replicas_2x2_jobs_done"] == REPLICAS_JOBS
    by_worker = figures["replicas_2x2_jobs_by_worker"]
    assert sum(by_worker) == REPLICAS_JOBS
    assert len(by_worker) <= 2  # at most one count per worker
    per_process = figures["replicas_2x2_cpu_us_per_job"]
    assert set(per_process) == {"server-1", "server-2", "worker-1", "worker-2", "postgres"}
    # A process's CPU over a 400-job drain is a few 10 ms clock ticks, and may round to none.
    assert all(value >= 0 for value in per_process.values()), per_process
    assert sum(per_process.values()) > 0
    servers = per_process["server-1"] + per_process["server-2"]
    assert figures["replicas_2x2_server_cpu_us_per_job"] == pytest.approx(servers, abs=0.2)
    drain_server = figures["drain_cpu_s"]["server"]
    if drain_server:  # the 40-job plain drain's CPU may round to zero
        plain = drain_server / int(figures["parameters"]["drain_jobs"]) * 1e6
        assert figures["replicas_2x2_server_cpu_vs_drain"] == pytest.approx(
            figures["replicas_2x2_server_cpu_us_per_job"] / plain, rel=0.01
        )
    else:
        assert figures["replicas_2x2_server_cpu_vs_drain"] is None
    assert re.search(
        r"^replicas_2x2_cpu_us_per_job\.server-2 +[0-9.]+$", stdout, flags=re.MULTILINE
    ), stdout
