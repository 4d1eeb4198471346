-- Named queries of the history maintainer for jobs (db/migrations/V24): jobs' daily partitions
-- by job id (a UUIDv7 starts with its Unix time in ms), made ahead, made for a day whose
-- finished jobs sit in the default partition, dropped past the retention.
--
-- The DDL statements name a partition and its bounds, which SQL parameters cannot carry: they
-- are templates whose {partition}, {default} and {constraint} (quoted identifiers), {lower}
-- and {upper} (uuid literals) jobq.storage.postgres.job_partitions fills from values it
-- computed itself.

-- name: job_partitions
-- jobs' partitions with their bounds as uuid text (NULL for the DEFAULT partition).
SELECT c.oid, c.relname AS name,
       (regexp_match(b.bound, 'FROM \(''([^'']+)''\)'))[1]::uuid AS lower,
       (regexp_match(b.bound, 'TO \(''([^'']+)''\)'))[1]::uuid AS upper
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) b
WHERE i.inhparent = 'jobs'::regclass
ORDER BY lower NULLS LAST;

-- name: job_default_has_rows
-- Whether the default partition {default} holds a job with an id in [$1, $2): one probe of its
-- primary key.
SELECT EXISTS (SELECT 1 FROM {default} WHERE job_id >= $1::uuid AND job_id < $2::uuid);

-- name: job_partition_new
-- DDL template: a table shaped like jobs, to become the partition {partition}; room on its
-- pages for a job's later versions (V22: fillfactor 35, so that updates are HOT).
CREATE TABLE {partition} (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    WITH (fillfactor = 35);

-- name: job_default_lock
-- Writes into the default partition wait while a day's finished rows move out of it (until
-- ATTACH has checked that none is left); writes into every other partition go on.
LOCK TABLE {default} IN SHARE ROW EXCLUSIVE MODE;

-- name: job_default_live
-- DDL template: whether the default partition {default} holds a job of [$1, $2) that is not
-- finished (any status but DONE and DEAD_LETTERED) or whose transactional enqueue is not
-- announced yet (enqueued_jobs refers to it): such a job is never moved between partitions (a
-- claim racing the move would fail: "tuple to be locked was already moved to another
-- partition"), so its day stays in the default partition.
SELECT EXISTS (
    SELECT 1 FROM {default} j
    WHERE j.job_id >= $1::uuid AND j.job_id < $2::uuid
      AND (j.status NOT IN ('DONE', 'DEAD_LETTERED')
           OR EXISTS (SELECT 1 FROM enqueued_jobs q WHERE q.job_id = j.job_id))
);

-- name: job_partition_fill
-- DDL template: move the day's finished rows out of the default partition into {partition}
-- (same column order: both are shaped like jobs). Straight between the two tables, not
-- through jobs, so jobs' statement triggers (side tables, keys) do not see a delete and an
-- insert: the rows keep their keys and ticks.
WITH moved AS (
    DELETE FROM {default} WHERE job_id >= {lower} AND job_id < {upper}
    RETURNING *
)
INSERT INTO {partition} SELECT * FROM moved;

-- name: job_partition_check
-- DDL template: the partition's bounds as a CHECK, so ATTACH finds them proven and does not
-- scan the new table.
ALTER TABLE {partition} ADD CONSTRAINT {constraint}
    CHECK (job_id >= {lower} AND job_id < {upper});

-- name: job_partition_attach
-- DDL template: attach (SHARE UPDATE EXCLUSIVE on jobs: readers and writers of the other
-- partitions go on; ACCESS EXCLUSIVE on the default partition, whose rows PostgreSQL scans
-- once to check that none belongs to the new range). Builds the partition's primary key.
-- The scan is of the whole default partition (the jobs from before V24): measured 0.22 s per
-- million rows there, once per day made. A generic plan locks every partition of jobs, the
-- default one included, so statements on jobs wait for that scan: the price of keeping the
-- old jobs, until an operator deletes the finished ones from jobs_legacy.
ALTER TABLE jobs ATTACH PARTITION {partition} FOR VALUES FROM ({lower}) TO ({upper});

-- name: job_partition_uncheck
-- DDL template: the CHECK is redundant once attached (the partition constraint says the same).
ALTER TABLE {partition} DROP CONSTRAINT {constraint};

-- name: job_partition_failed
-- DDL template: whether {partition} holds a job resting in FAILED. No statement of jobq leaves
-- a job there (a failure moves it on to PENDING or DEAD_LETTERED in the same statement), but
-- an older version or a hand-made update might, and such a job awaits a retry: kept. Read
-- before the detach, without its lock (nothing moves a job into FAILED meanwhile).
SELECT EXISTS (SELECT 1 FROM {partition} WHERE status = 'FAILED');

-- name: job_range_live
-- Whether a job with an id in [$1, $2) is live: it has a row in a side table (ready_jobs,
-- held_jobs, waiting_jobs: V22, a row per PENDING, ASSIGNED/RUNNING, WAITING job) or an
-- unannounced transactional enqueue (enqueued_jobs). Four primary-key range probes, however
-- many finished jobs the range holds.
SELECT EXISTS (SELECT 1 FROM ready_jobs WHERE job_id >= $1::uuid AND job_id < $2::uuid)
    OR EXISTS (SELECT 1 FROM held_jobs WHERE job_id >= $1::uuid AND job_id < $2::uuid)
    OR EXISTS (SELECT 1 FROM waiting_jobs WHERE job_id >= $1::uuid AND job_id < $2::uuid)
    OR EXISTS (SELECT 1 FROM enqueued_jobs WHERE job_id >= $1::uuid AND job_id < $2::uuid);

-- name: job_range_forget
-- What goes with a dropped partition's jobs ([$1, $2)): their idempotency keys (free again),
-- their schedule ticks, and their dependency edges, of every shard ($3: all of them,
-- jobq.domain.shards.every_shard; a day's partition holds jobs of every shard). The keys' and
-- ticks' job indexes lead with shard ((shard, job_id), V24/V25): `shard = ANY ($3)` makes one
-- index range per shard, where a filter on job_id alone could not use them before PostgreSQL
-- 18's skip scan (a scan of the whole table). The edges' primary key leads with job_id: one
-- range, every shard's edges in it.
WITH keys AS (
    DELETE FROM job_idempotency_keys
    WHERE shard = ANY ($3::smallint[]) AND job_id >= $1::uuid AND job_id < $2::uuid
), ticks AS (
    DELETE FROM job_schedule_ticks
    WHERE shard = ANY ($3::smallint[]) AND job_id >= $1::uuid AND job_id < $2::uuid
)
DELETE FROM job_dependencies WHERE job_id >= $1::uuid AND job_id < $2::uuid;

-- name: job_partition_detach
-- DDL template: detach a partition past the retention. Not CONCURRENTLY: PostgreSQL refuses it
-- on a table with a DEFAULT partition. Takes ACCESS EXCLUSIVE on jobs, so it runs under a short
-- lock_timeout (jobq.storage.postgres.ddl_steps.DDL_LOCK_TIMEOUT): waiting longer would
-- queue every statement on jobs behind it.
ALTER TABLE jobs DETACH PARTITION {partition};

-- name: job_partition_drop
-- DDL template: drop a detached partition.
DROP TABLE {partition};

-- name: job_history_record
-- What a run found for jobs (its row in history_maintenance, V24): when it succeeded and what
-- it kept back (partitions past the retention holding a live job, and days left in the default
-- partition for a live job). The lease is job_events' row's: one run maintains both.
UPDATE history_maintenance SET last_success = $1, held_back = $2 WHERE name = 'jobs';

-- name: job_history_stats
-- What /metrics shows about jobs' partitions: how many, and what the last run kept back.
SELECT (SELECT count(*) FROM pg_inherits WHERE inhparent = 'jobs'::regclass) AS partitions,
       m.held_back,
       EXTRACT(EPOCH FROM m.last_success)::float8 AS last_success
FROM history_maintenance m WHERE m.name = 'jobs';
