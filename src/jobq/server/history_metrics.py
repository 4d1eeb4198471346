"""The history maintainer's Prometheus metrics (jq_history_*), read at scrape time.

What they show is the database's, not this replica's: every replica reads the same partitions
and the same history_maintenance row, so any replica's /metrics answers, whichever one ran the
maintainer last. Nothing here runs on a job's path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from jobq.storage.stores import HistoryPartitionStore, JobPartitionStore


class HistoryMetrics:
    """jq_history_* in a server's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.partitions = Gauge(
            "jq_history_partitions",
            "Partitions of job_events (the daily ones, the legacy one and the default one).",
            registry=registry,
        )
        self.default_rows = Gauge(
            "jq_history_default_partition_rows",
            "Events in job_events' DEFAULT partition (should be 0: the maintainer moves them "
            "into partitions of their own days).",
            registry=registry,
        )
        self.held_back = Gauge(
            "jq_history_partitions_held_back",
            "Partitions past the retention kept by the last maintenance run because they hold "
            "an event of an unfinished job.",
            registry=registry,
        )
        self.last_success = Gauge(
            "jq_history_last_maintenance_success_timestamp_seconds",
            "When a history maintenance run last succeeded (Unix time; 0: never).",
            registry=registry,
        )
        self.dropped = Counter(
            "jq_history_partitions_dropped",
            "Partitions of job_events this replica detached and dropped past the retention.",
            registry=registry,
        )

        # jobs' daily partitions (V24), kept by the same maintainer run
        self.jobs_partitions = Gauge(
            "jq_history_jobs_partitions",
            "Partitions of jobs (the daily ones and the default one, which holds the jobs from "
            "before partitioning).",
            registry=registry,
        )
        self.jobs_held_back = Gauge(
            "jq_history_jobs_held_back",
            "Partitions of jobs past the retention, and days left in jobs' default partition, "
            "that the last maintenance run kept because a live job is in them.",
            registry=registry,
        )
        self.jobs_dropped = Counter(
            "jq_history_jobs_partitions_dropped",
            "Partitions of jobs this replica detached and dropped past the retention.",
            registry=registry,
        )

    async def refresh(
        self, store: HistoryPartitionStore, jobs: JobPartitionStore | None = None
    ) -> None:
        stats = await store.history_stats()
        self.partitions.set(stats.partitions)
        self.default_rows.set(stats.default_rows)
        self.held_back.set(stats.held_back)
        self.last_success.set(stats.last_success or 0)
        if jobs is not None:
            partitions, held_back, _ = await jobs.job_history_stats()
            self.jobs_partitions.set(partitions)
            self.jobs_held_back.set(held_back)
