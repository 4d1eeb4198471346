-- Named queries of the history maintainer's use of pg_partman (issue 21): when the extension
-- is installed in jobq's database, job_events is registered with it and its run_maintenance
-- premakes the daily partitions; jobq still moves stray rows out of the default partition and
-- drops old days itself (part_config.retention stays NULL), for pg_partman's retention would
-- drop a day holding a live job's events.
--
-- {partman} is pg_partman's schema (a quoted identifier read from pg_extension), {partition}
-- and {name} quoted identifiers jobq.storage.postgres.history_partman computed itself.

-- name: partman_installed
-- pg_partman's schema and version, when the extension is installed in this database.
SELECT n.nspname AS schema, e.extversion AS version
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_partman';

-- name: partman_parent
-- job_events as pg_partman names a parent table: schema.table, unquoted (it splits on '.').
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = 'job_events'::regclass;

-- name: partman_config
-- DDL template: job_events' row in pg_partman's part_config ($1: partman_parent), if any.
SELECT partition_interval::interval AS interval, datetime_string
FROM {partman}.part_config WHERE parent_table = $1;

-- name: partman_utc
-- pg_partman names and bounds partitions in the session's time zone; jobq's days are UTC.
SELECT set_config('TimeZone', 'UTC', true);

-- name: partman_rename
-- DDL template: a day's partition renamed to pg_partman 4's spelling, which it parses back
-- from the names to order the partitions.
ALTER TABLE {partition} RENAME TO {name};

-- name: partman_default_detach
-- pg_partman 4's create_parent makes job_events_default itself and has no option to keep an
-- existing one: jobq's (empty: the maintainer moves stray rows out first) is detached and
-- dropped in the same transaction, which holds job_events' lock until pg_partman's replaces it.
ALTER TABLE job_events DETACH PARTITION job_events_default;

-- name: partman_default_empty
-- Whether the detached default partition holds no row (checked under the detach's lock).
SELECT NOT EXISTS (SELECT 1 FROM job_events_default);

-- name: partman_default_drop
-- The detached, empty default partition goes; create_parent makes its own.
DROP TABLE job_events_default;

-- name: partman_register
-- DDL template: register job_events ($1) with pg_partman: daily native partitions on
-- occurred_at, $2 days made ahead, starting at $3 (the first day's partition jobq has, so the
-- days it makes do not overlap the legacy partition of V23). Days that exist are kept.
SELECT {partman}.create_parent(
    p_parent_table := $1, p_control := 'occurred_at', p_type := 'native',
    p_interval := 'daily', p_premake := $2::int, p_start_partition := $3::text,
    p_jobmon := false);

-- name: partman_default_ensure
-- pg_partman 4.7's create_parent makes the default partition only when it made a day's
-- partition too (it returns early, with a warning, when every day existed): an insert must
-- never fail for want of a partition, so the default is made here when it did not.
CREATE TABLE IF NOT EXISTS job_events_default PARTITION OF job_events DEFAULT;

-- name: partman_configure
-- DDL template: pg_partman premakes $2 days ahead of now whether or not events arrive
-- (infinite_time_partitions), and never drops (retention NULL): jobq's maintainer drops days
-- once no live job has events in them.
UPDATE {partman}.part_config
SET infinite_time_partitions = true, retention = NULL, premake = $2::int
WHERE parent_table = $1
  AND (infinite_time_partitions IS DISTINCT FROM true OR retention IS NOT NULL
       OR premake IS DISTINCT FROM $2::int);

-- name: partman_maintain
-- DDL template: pg_partman's maintenance of job_events ($1) alone: makes the days ahead.
SELECT {partman}.run_maintenance(p_parent_table := $1, p_jobmon := false);
