"""Claims under a pinned vacuum horizon (issue 21, must-show 3): the drain while a transaction
holds an old snapshot open, beside the same drain without it, in the same run.

A transaction that keeps a snapshot (a long report, a session left idle in transaction, a
replica's hot_standby_feedback) pins the xmin horizon: no row version deleted or updated after
it began can be removed, neither by (auto)vacuum nor by on-page pruning, and index entries
pointing at such versions cannot be marked dead (killed) by the scans that pass them. A claim
reads the head of the ready jobs in claim order (ready_jobs' claim index since V22; jobs'
partial index of PENDING jobs before); the entries of the jobs claimed before it stay there,
each pointing at a row version the pinned snapshot may still see (a ready row deleted by a
claim; before V22, a jobs row updated by one), so every claim walks over, and visits the heap
for, every job claimed since the horizon was pinned.

Each round submits `--drain-jobs` no-op jobs to a jq-server of its own, in a schema of its own
(a fresh `jobs` table), then drains them with one jq-worker, timed as the main drain is (from
the worker's start to the last job's end). A `pinned` round first opens, on a connection of
its own, `BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current()` (an xid and a snapshot,
checked in pg_stat_activity.backend_xmin) and holds it until the drain's figures are read.
Rounds run in the order of ROUNDS, so drift falls on both modes alike.

Claim latency is jq-server's `jq_scheduler_cycle_duration_seconds` histogram (its /metrics),
the difference over the drain: one observation per dispatcher cycle, which with one worker on
an unlimited queue is one claim (its transaction: the claim statement and the commit) and the
hand-over of the claimed jobs to the worker's stream in memory. Job events' created→assigned
would measure the wait of a job behind the backlog, not the claim; pg_stat_statements has no
quantiles and is not loaded in `make bench`. Quantiles are interpolated in the histogram's
buckets (as Prometheus' histogram_quantile does), so they are as fine as its buckets
(0.5, 1, 2.5, 5, 10, 25, 50, 100 ms …); the mean (`_sum / _count`) is exact. Figures:

- horizon_drain_jobs_per_s, horizon_normal_drain_jobs_per_s: medians of each mode's rounds;
- horizon_claim_p50_ms, horizon_claim_p99_ms, horizon_claim_mean_ms and the same with
  `horizon_normal_`: over all the mode's claims; horizon_claims / horizon_normal_claims: how
  many cycles (claims) the mode's rounds took;
- horizon_jobs_dead_tuples, horizon_normal_jobs_dead_tuples: n_dead_tup of the round's `jobs`
  at the drain's end (the pinned transaction still open), medians;
- horizon_wal_bytes_per_job, horizon_normal_wal_bytes_per_job (bench/storage_stats.py);
- horizon_empty_head_read_ms / _buffers and the same with `horizon_normal_`: the time and the
  shared buffers of the claim's head read (HEAD_READ, EXPLAIN ANALYZE) on the emptied queue at
  the drain's end, medians: the walk over what the drain's claims left in ready_jobs' claim
  index (V22; before it, jobs' partial index of PENDING jobs);
- horizon_drain_vs_normal, horizon_claim_p99_vs_normal: the pinned mode's against the normal.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from bench import scenarios as s
from bench import storage_stats
from bench.drain_round import drain_round
from bench.postgres import BenchPostgres

ROUNDS = ("normal", "pinned", "pinned", "normal")
"""ABBA: each mode once early and once late in the run."""

CYCLE = "jq_scheduler_cycle_duration_seconds"

Histogram = dict[float, float]
"""Cumulative counts by upper bound (`le`), with `inf` the count, and `sum` under -1.0."""


def _scrape(port: int) -> Histogram:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    buckets: Histogram = {}
    for family in text_string_to_metric_families(text):
        if family.name != CYCLE:
            continue
        for sample in family.samples:
            if sample.name == f"{CYCLE}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == f"{CYCLE}_sum":
                buckets[-1.0] = sample.value
    if not buckets:
        raise RuntimeError(f"jq-server's /metrics has no {CYCLE}")
    return buckets


async def scrape(port: int) -> Histogram:
    return await asyncio.to_thread(_scrape, port)


def difference(after: Histogram, before: Histogram) -> Histogram:
    return {le: after[le] - before.get(le, 0.0) for le in after}


def merged(histograms: list[Histogram]) -> Histogram:
    total: Histogram = {}
    for histogram in histograms:
        for le, value in histogram.items():
            total[le] = total.get(le, 0.0) + value
    return total


def quantile(q: float, histogram: Histogram) -> float:
    """The q-quantile in seconds, linearly interpolated within its bucket (Prometheus'
    histogram_quantile); the highest finite bound if it falls in the +Inf bucket."""
    bounds = sorted(le for le in histogram if le >= 0)
    count = histogram[float("inf")]
    if count <= 0:
        raise ValueError("no observations")
    rank = q * count
    lower, below = 0.0, 0.0
    for le in bounds:
        cumulative = histogram[le]
        if cumulative >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = le, cumulative
    return lower


async def _wait_drained(dsn: str, schema: str, within: float = 600) -> None:
    """Until no job of the round's schema is PENDING, ASSIGNED or RUNNING (polled every 20 ms,
    with the main drain's probes: s.wait_all_done)."""
    conn = await storage_stats.connect(dsn, schema)
    try:
        async with asyncio.timeout(within):
            while await conn.fetchval(s.BUSY_PROBE, "default"):  # noqa: ASYNC110 - polled
                await asyncio.sleep(0.02)
    finally:
        await conn.close()


HEAD_READ = """
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT r.job_id FROM ready_jobs r
WHERE r.shard = 0 AND r.queue_name = 'default' AND NOT r.suspect
  AND (r.not_before IS NULL OR r.not_before <= now())
ORDER BY r.priority DESC, r.created_at, r.job_id
LIMIT 256
FOR UPDATE SKIP LOCKED
"""
"""The head read of jobs_claim (its candidates' LATERAL sub-select, as the claim runs it for
one queue), measured on the emptied queue at the drain's end: the index range it walks then
holds only the entries of the jobs claimed before, each a dead or a still-visible version."""


async def _head_read(dsn: str, schema: str) -> tuple[float, int]:
    """(milliseconds, shared buffers hit or read) of one HEAD_READ, with jq-server's session
    setting (jit off)."""
    conn = await storage_stats.connect(dsn, schema)
    try:
        await conn.execute("SET jit = off")
        plan = json.loads(await conn.fetchval(HEAD_READ))[0]
    finally:
        await conn.close()
    top = plan["Plan"]
    return plan["Execution Time"], top["Shared Hit Blocks"] + top["Shared Read Blocks"]


async def _pin(dsn: str) -> asyncpg.Connection:
    """A connection in a REPEATABLE READ transaction that holds an xid and a snapshot, checked
    to pin the horizon (its backend_xmin, as another session sees it)."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    await conn.fetchval("SELECT txid_current()")
    pid = conn.get_server_pid()
    observer = await asyncpg.connect(dsn)
    try:
        xmin = await observer.fetchval(
            "SELECT backend_xmin FROM pg_stat_activity WHERE pid = $1", pid
        )
    finally:
        await observer.close()
    if xmin is None:
        await conn.close()
        raise RuntimeError("the horizon transaction holds no snapshot (backend_xmin is null)")
    return conn


@dataclass(frozen=True)
class Round:
    jobs_per_s: float
    cycles: Histogram  # over the drain
    jobs_dead_tuples: int  # at the drain's end
    wal_bytes_per_job: int
    stats_settled: bool
    head_read_ms: float  # HEAD_READ at the drain's end
    head_read_buffers: int


async def _round(
    pg: BenchPostgres, workdir: Path, index: int, mode: str, jobs: int, concurrency: int
) -> Round:
    dsn = pg.dsn
    schema = f"bench_horizon_{index}_{mode}"
    pin = None
    try:
        async with drain_round(dsn, workdir, schema, metrics=True) as round_:
            metrics_port = round_.metrics_port
            assert metrics_port is not None
            await round_.submit(jobs)
            if mode == "pinned":
                pin = await _pin(dsn)
            storage_before = await storage_stats.snapshot_of(dsn, schema, wait=False)
            cycles_before = await scrape(metrics_port)
            started = time.perf_counter()
            round_.start_worker(concurrency)
            await _wait_drained(dsn, schema)
            elapsed = time.perf_counter() - started
            end = await storage_stats.snapshot_of(dsn, schema, wait=False)
            cycles = difference(await scrape(metrics_port), cycles_before)
            head_read_ms, head_read_buffers = await _head_read(dsn, schema)
            # Stopped, the programs' sessions end and flush their counters at once (an idle
            # one would within 10 s: bench/storage_stats.py), which are read with the horizon
            # still pinned: the dead tuples a claim had to walk over at the end.
            round_.stop()
            storage = await storage_stats.figures_since(dsn, storage_before, jobs, schema, end)
    finally:
        if pin is not None:
            await pin.close()  # ends the transaction: the horizon moves on
    tables = storage["drain_table_stats"]
    assert isinstance(tables, dict)
    return Round(
        jobs_per_s=jobs / elapsed,
        cycles=cycles,
        jobs_dead_tuples=int(tables.get("jobs", {}).get("dead_tuples_after", 0)),
        wal_bytes_per_job=int(str(storage["wal_bytes_per_job"])),
        stats_settled=storage["drain_stats_settled"] is True,
        head_read_ms=head_read_ms,
        head_read_buffers=head_read_buffers,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def measure_pinned_horizon(
    pg: BenchPostgres, workdir: Path, jobs: int, concurrency: int
) -> dict[str, object]:
    runs: dict[str, list[Round]] = {"normal": [], "pinned": []}
    for index, mode in enumerate(ROUNDS):
        runs[mode].append(await _round(pg, workdir, index, mode, jobs, concurrency))
    figures: dict[str, float] = {}
    for mode, prefix in (("pinned", "horizon_"), ("normal", "horizon_normal_")):
        rounds = runs[mode]
        cycles = merged([r.cycles for r in rounds])
        count = cycles[float("inf")]
        figures[f"{prefix}drain_jobs_per_s"] = round(
            statistics.median(r.jobs_per_s for r in rounds), 1
        )
        figures[f"{prefix}claim_p50_ms"] = _ms(quantile(0.5, cycles))
        figures[f"{prefix}claim_p99_ms"] = _ms(quantile(0.99, cycles))
        figures[f"{prefix}claim_mean_ms"] = _ms(cycles[-1.0] / count)
        figures[f"{prefix}claims"] = int(count)
        figures[f"{prefix}jobs_dead_tuples"] = round(
            statistics.median(r.jobs_dead_tuples for r in rounds)
        )
        figures[f"{prefix}wal_bytes_per_job"] = round(
            statistics.median(r.wal_bytes_per_job for r in rounds)
        )
        figures[f"{prefix}empty_head_read_ms"] = round(
            statistics.median(r.head_read_ms for r in rounds), 3
        )
        figures[f"{prefix}empty_head_read_buffers"] = round(
            statistics.median(r.head_read_buffers for r in rounds)
        )
    settled = all(r.stats_settled for rounds in runs.values() for r in rounds)
    figures["horizon_drain_vs_normal"] = round(
        figures["horizon_drain_jobs_per_s"] / figures["horizon_normal_drain_jobs_per_s"], 3
    )
    figures["horizon_claim_p99_vs_normal"] = round(
        figures["horizon_claim_p99_ms"] / figures["horizon_normal_claim_p99_ms"], 3
    )
    return {**figures, "horizon_stats_settled": settled}
