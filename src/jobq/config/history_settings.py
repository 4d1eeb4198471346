"""The history of job events and its retention (`history.*`, issue 21).

job_events is partitioned by day (db/migrations/V23); jq-server's history maintainer makes
the partitions ahead and drops those past the retention (jobq.server.history_maintainer).
"""

from __future__ import annotations

from pydantic import Field

from jobq.config.section import Section

__all__ = ["HistorySettings"]


class HistorySettings(Section):
    """Retention of job events and finished jobs, kept in daily partitions by a maintainer."""

    retention_days: int = Field(
        0,
        ge=0,
        le=36500,
        description="Days job events and finished jobs are kept: a day is dropped as a whole "
        "once this old (jobs by the day they were created), except a day holding an "
        "unfinished job or its events. 0 (default): kept forever.",
    )
    maintenance_interval_s: float = Field(
        3600.0,
        ge=10,
        le=86400,
        description="Seconds between runs of the history maintainer (10-86400); it also runs "
        "at start-up.",
    )
    premake_days: int = Field(
        7,
        ge=1,
        le=366,
        description="Days ahead whose partitions the maintainer makes (1-366), so that events "
        "never wait on one being made.",
    )
    pg_partman: bool = Field(
        True,
        description="Let pg_partman (version 4) keep job_events' daily partitions when the "
        "extension is installed in jobq's database (CREATE EXTENSION pg_partman): jq-server "
        "registers the table with it once and runs its maintenance; the retention stays "
        "jobq's, which never drops a live job's history. Finished jobs' partitions are kept "
        "by jobq either way (pg_partman 4 cannot partition by a UUID). false: jobq keeps both.",
    )
