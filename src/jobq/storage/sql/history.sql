-- Named queries of the history maintainer (db/migrations/V23): job_events' daily partitions,
-- made ahead, filled from the default partition, dropped past the retention.
--
-- The DDL statements name a partition and its bounds, which SQL parameters cannot carry: they
-- are templates whose {partition} (a quoted identifier), {lower} and {upper} (timestamptz
-- literals) jobq.storage.postgres.history_partitions fills from a date it computed itself.

-- name: history_partitions
-- job_events' partitions with their bounds (NULL lower: MINVALUE) and whether it is the
-- DEFAULT one. The bounds are read back from the catalogue's text, in this session's time
-- zone, and cast back in the same session.
SELECT c.oid, c.relname AS name, b.bound = 'DEFAULT' AS is_default,
       (regexp_match(b.bound, 'FROM \(''([^'']+)''\)'))[1]::timestamptz AS lower,
       (regexp_match(b.bound, 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) b
WHERE i.inhparent = 'job_events'::regclass
ORDER BY upper NULLS LAST;

-- name: history_default_days
-- The UTC days of the rows that landed in the default partition (no partition of their own
-- existed when they were written), oldest first.
SELECT DISTINCT date_trunc('day', occurred_at, 'UTC') AS day
FROM job_events_default ORDER BY day;

-- name: history_unfinished_jobs
-- Fragment of history_live_partitions and history_detached_live (jobq.storage.postgres.
-- history_partitions fills it into both as the CTE `unfinished`): the unfinished jobs ($2:
-- their statuses) created before $1, as (job_id, shard).
--
-- jobs has no index on status (V22: its updates stay HOT), so `status = ANY ($2)` on jobs
-- would read every job. The unfinished jobs are found as job_range_live finds them instead:
-- by their side-table rows (V22: ready_jobs, held_jobs, waiting_jobs hold every PENDING,
-- ASSIGNED/RUNNING and WAITING job and no other), each checked on its jobs row by primary key
-- (jobs.status stays the truth). A status of $2 that no side table carries (FAILED: no
-- statement of jobq leaves a job there, an older version or a hand-made update might) is
-- looked for in the jobs whose ids place them before $1: jobs' partitions of the days before
-- $1 (pruned by id: about to go themselves, past the same retention) and the default
-- partition (jobs_legacy: pre-V24 jobs and ids of no day, such as v4 ids), never the days
-- within the retention. Only a job resting in such a status under a client-chosen id of a day
-- from $1 on is not seen: finding it would take reading every job.
WITH live AS (
    SELECT job_id, shard FROM ready_jobs
    UNION ALL
    SELECT job_id, shard FROM held_jobs
    UNION ALL
    SELECT job_id, shard FROM waiting_jobs
)
SELECT j.job_id, j.shard
FROM live l
CROSS JOIN LATERAL (
    -- LIMIT keeps it a probe of jobs' primary key per side row: written as a join, it
    -- was planned as a hash of every job (200,000 read for 4 side rows)
    SELECT j.job_id, j.shard FROM jobs j
    WHERE j.shard = l.shard AND j.job_id = l.job_id
      AND j.status = ANY ($2::job_status[]) AND j.created_at < $1
    LIMIT 1
) j
UNION ALL
SELECT j.job_id, j.shard FROM jobs j
WHERE j.job_id < jobq_job_id_floor($1)
  AND j.status = ANY ($2::job_status[])
  AND j.status NOT IN ('PENDING', 'ASSIGNED', 'RUNNING', 'WAITING')
  AND j.created_at < $1
UNION ALL
SELECT j.job_id, j.shard FROM jobs_legacy j
WHERE j.job_id >= jobq_job_id_floor($1)
  AND j.status = ANY ($2::job_status[])
  AND j.status NOT IN ('PENDING', 'ASSIGNED', 'RUNNING', 'WAITING')
  AND j.created_at < $1;

-- name: history_live_partitions
-- Template ({unfinished}: history_unfinished_jobs): the partitions ($3: their oids) holding
-- an event of an unfinished job ($2: the statuses of unfinished jobs,
-- jobq.domain.history.LIVE_STATUSES) created before $1: kept whatever their age, for a live job's history is never touched. Starts from the unfinished jobs (far fewer
-- than events) and probes each partition's job_id index. A job's events happen after it was
-- created, so jobs created after $1 (the newest upper bound among the candidates, plus a day
-- for clock skew between replicas) cannot have events in them.
WITH unfinished AS (
{unfinished}
)
SELECT DISTINCT found.oid
FROM unfinished u
CROSS JOIN LATERAL (
    -- a subquery with DISTINCT is planned per job (not merged into a join): each job probes
    -- the job_id index of every partition, never a scan of job_events
    SELECT DISTINCT e.tableoid AS oid FROM job_events e
    WHERE e.shard = u.shard AND e.job_id = u.job_id AND e.tableoid = ANY ($3::oid[])
) found;

-- name: history_lease
-- Take or renew the maintainer's lease of table $1 for owner $2 for $3 seconds: granted when
-- nobody holds it, the owner renews it, or the holder's lease ran out (a replica that died).
-- One row updated under its row lock, so two replicas never both get it; no row: someone
-- else holds it. The database clock judges leases, so replicas with skewed clocks agree.
UPDATE history_maintenance
SET owner = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
WHERE name = $1 AND (owner = $2 OR owner IS NULL OR lease_until < clock_timestamp())
RETURNING name;

-- name: history_release
-- A run finished: record its success time and the partitions it held back, and give the
-- lease back, so that the next run (of any replica) need not wait for it to run out.
UPDATE history_maintenance
SET owner = NULL, lease_until = clock_timestamp(), last_success = $3, held_back = $4
WHERE name = $1 AND owner = $2;

-- name: history_abandon
-- A run failed: give the lease back without recording a success.
UPDATE history_maintenance SET owner = NULL, lease_until = clock_timestamp()
WHERE name = $1 AND owner = $2;

-- name: history_stats
-- What /metrics shows: partitions of job_events, rows in its default partition (counted up to
-- 1,000,000, so a scrape stays bounded when the maintainer has been away), partitions the
-- last run held back for live jobs, and when a run last succeeded (epoch seconds; NULL never).
SELECT (SELECT count(*) FROM pg_inherits WHERE inhparent = 'job_events'::regclass) AS partitions,
       (SELECT count(*) FROM (SELECT 1 FROM job_events_default LIMIT 1000000) d) AS default_rows,
       m.held_back,
       EXTRACT(EPOCH FROM m.last_success)::float8 AS last_success
FROM history_maintenance m WHERE m.name = $1;

-- name: history_lock_timeout
-- How long this transaction's DDL waits for a lock ($1, e.g. '5s') before failing: a run that
-- cannot get job_events' lock gives up until the next one rather than queue every writer.
SELECT set_config('lock_timeout', $1, true);

-- name: history_partition_new
-- DDL template: a table shaped like job_events, to become the partition {partition}.
CREATE TABLE {partition} (LIKE job_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

-- name: history_default_lock
-- Inserts into the default partition wait while a day's rows move out of it (between the move
-- and ATTACH's check that none is left); inserts into every other partition go on.
LOCK TABLE job_events_default IN SHARE ROW EXCLUSIVE MODE;

-- name: history_partition_fill
-- DDL template: move the day's rows that landed in the default partition into {partition}
-- (same column order: both are shaped like job_events). Straight into the new table, not
-- through job_events, so the outbox trigger does not capture (and publish) them twice.
WITH moved AS (
    DELETE FROM job_events_default
    WHERE occurred_at >= {lower} AND occurred_at < {upper}
    RETURNING *
)
INSERT INTO {partition} SELECT * FROM moved;

-- name: history_partition_check
-- DDL template: the partition's bounds as a CHECK, so ATTACH finds them proven and does not
-- scan the table (empty or just filled, but the rule holds for any size).
ALTER TABLE {partition} ADD CONSTRAINT {constraint}
    CHECK (occurred_at >= {lower} AND occurred_at < {upper});

-- name: history_partition_attach
-- DDL template: attach (SHARE UPDATE EXCLUSIVE on job_events: writers and readers go on;
-- CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE). Builds the partition's indexes
-- and checks that the default partition holds no row of the day.
ALTER TABLE job_events ATTACH PARTITION {partition} FOR VALUES FROM ({lower}) TO ({upper});

-- name: history_partition_uncheck
-- DDL template: the CHECK is redundant once attached (the partition constraint says the same).
ALTER TABLE {partition} DROP CONSTRAINT {constraint};

-- name: history_partition_detach
-- DDL template: detach a partition past the retention. Not CONCURRENTLY: PostgreSQL refuses
-- it on a table with a DEFAULT partition, and the default partition is what makes an insert
-- never fail. Takes ACCESS EXCLUSIVE on job_events for a catalogue change, under lock_timeout.
ALTER TABLE job_events DETACH PARTITION {partition};

-- name: history_detached_live
-- DDL template: whether the detached {partition} holds an event of an unfinished job ($2:
-- their statuses) created before $1: checked again while job_events is locked by the detach,
-- so a job brought back since the first check (RetryJob) keeps its history: the transaction
-- is then rolled back. {unfinished}: history_unfinished_jobs (never every job read while
-- writers of events wait for the lock); each unfinished job probes the partition's job_id index.
SELECT EXISTS (
    WITH unfinished AS (
{unfinished}
    )
    SELECT 1 FROM unfinished u
    CROSS JOIN LATERAL (  -- a probe of the partition's job_id index per job (LIMIT: not a join)
        SELECT 1 FROM {partition} e WHERE e.job_id = u.job_id AND e.shard = u.shard LIMIT 1
    ) found
);

-- name: history_partition_drop
-- DDL template: drop a detached partition.
DROP TABLE {partition};
