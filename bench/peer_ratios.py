"""jobq's figures as ratios of the peer's measured in the same run, and issue 17's bars.

Machines of one kind differ by 2x, so an absolute figure says little; a ratio to pgqueuer
(bench/pgqueuer_peer.py) measured minutes apart on the same PostgreSQL does. Every ratio is
jobq's figure over pgqueuer's, whatever the direction of better: above 1 jobq is faster for a
throughput, slower for a latency, bigger for memory and CPU. `targets` says, per ratio with a
bar, the bar and whether this run met it (one run: the issue's bar is on the median of three).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ratio:
    name: str
    jobq: str  # a key of the results (a.b for a nested one)
    peer: str  # a key of the results' "pgqueuer" section
    bar: str | None  # ">= 2.0", "<= 0.8"; None: reported, no bar


RATIOS = (
    Ratio("drain_python", "drain_python_jobs_per_s", "drain_jobs_per_s", ">= 2.0"),
    Ratio("drain_python_vs_tuned", "drain_python_jobs_per_s", "tuned.drain_jobs_per_s", None),
    Ratio("enqueue_bulk", "submit_batch_jobs_per_s", "enqueue_bulk_jobs_per_s", ">= 1.0"),
    Ratio(
        "sdk_async_sequential",
        "sdk_async_sequential_jobs_per_s",
        "enqueue_single_jobs_per_s",
        ">= 0.6",
    ),
    Ratio("sdk_sequential", "sdk_sequential_jobs_per_s", "enqueue_single_jobs_per_s", ">= 0.6"),
    Ratio(
        "sdk_async_callers", "sdk_async_callers_jobs_per_s", "enqueue_single_jobs_per_s", ">= 3.0"
    ),
    Ratio("sdk_thread_callers", "sdk_thread_callers_jobs_per_s", "enqueue_single_jobs_per_s", None),
    Ratio("pickup_p50", "pickup_p50_ms", "pickup_p50_ms", "<= 0.8"),
    Ratio("pickup_p99", "pickup_p99_ms", "pickup_p99_ms", "<= 1.0"),
    Ratio("worker_peak_rss", "worker_peak_rss_mb", "worker_peak_rss_mb", "<= 1.0"),
    Ratio("cpu_per_job", "drain_cpu_us_per_job", "drain_cpu_us_per_job", "<= 1.0"),
)

OWN_BARS = (
    # Not against the peer: against the bench's own yardstick, and an absolute ceiling.
    ("submit_single_vs_bare_grpc", ">= 0.75"),
    ("server_peak_rss_mb", "<= 60"),
)


def lookup(section: dict[str, Any], dotted: str) -> Any:
    value: Any = section
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def cpu_us_per_job(cpu_s: dict[str, float | None], jobs: int) -> float | None:
    """All the drain's CPU (every process measured; None when PostgreSQL's could not be, on
    a DSN's server) per job, in µs."""
    if any(v is None for v in cpu_s.values()) or jobs <= 0:
        return None
    return round(sum(v for v in cpu_s.values() if v is not None) / jobs * 1e6, 1)


def meets(value: float, bar: str) -> bool:
    op, limit = bar.split()
    return value >= float(limit) if op == ">=" else value <= float(limit)


def compare(results: dict[str, Any]) -> dict[str, Any]:
    """`ratio_vs_pgqueuer` and `targets` of one run's results (which hold a `pgqueuer`
    section, and `drain_cpu_us_per_job` on both sides)."""
    peer = results.get("pgqueuer") or {}
    ratios: dict[str, float] = {}
    targets: dict[str, dict[str, Any]] = {}
    for ratio in RATIOS:
        ours, theirs = lookup(results, ratio.jobq), lookup(peer, ratio.peer)
        if not ours or not theirs:  # absent, or zero: no ratio (never a division by zero)
            continue
        value = round(ours / theirs, 3)
        ratios[ratio.name] = value
        if ratio.bar is not None:
            targets[ratio.name] = {"value": value, "bar": ratio.bar, "met": meets(value, ratio.bar)}
    for name, bar in OWN_BARS:
        value = results.get(name)
        if isinstance(value, int | float):
            targets[name] = {"value": value, "bar": bar, "met": meets(value, bar)}
    return {"ratio_vs_pgqueuer": ratios, "targets": targets}
