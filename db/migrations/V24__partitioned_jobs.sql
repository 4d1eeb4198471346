-- jobs becomes natively partitioned by job_id, one partition per UTC day of the UUIDv7's
-- timestamp (issue 21, must-show 2: finished jobs leave by partition, not by DELETE).
--
-- Why by job_id and not by created_at: every hot statement finds its jobs by job_id (the
-- claim's join from ready_jobs, the by-id reports, job_get), so partitioning by the key they
-- already carry prunes each of them to one partition, and the primary key (job_id) contains the
-- partition key as PostgreSQL requires, unchanged. A UUIDv7 starts with its 48-bit Unix time in
-- milliseconds (jobq.domain.ids), so a day is one contiguous range of ids.
--
-- Layout (the history maintainer recognises partitions by their bounds, not their names):
-- - jobs_pYYYYMMDD: jobs whose id's time is in that UTC day: [floor(day), floor(day + 1)),
--   where floor(t) is the uuid whose first 48 bits are t in Unix ms and the rest zero
--   (jobq_job_id_floor below); fillfactor 35 on each (the parent cannot carry it; V22 says why);
-- - jobs_legacy: the table as it was, attached as the DEFAULT partition, no row copied. It must
--   be the default, not a range: ids of V3's gen_random_uuid() default (v4, random) fall
--   anywhere in the uuid space, so no range holds them. Inserts whose id has no partition (a v4
--   id, a client id far in the future, a day the maintainer has not made) land here too.
--
-- Today's and the next 7 days' partitions are made here, so no new job lands in the default
-- partition before the maintainer first runs: moving a live job between partitions would race
-- its claim ("tuple to be locked was already moved to another partition"). Today's starts just
-- above the newest id of today already in the old table (those stay in jobs_legacy), and a
-- future day that some old (random v4) id already falls into is left to the maintainer, which
-- makes it by moving finished rows only.
--
-- Unique indexes of a partitioned table must contain the partition key, so the two that did
-- not become tables of their own, each kept by the same rules as before:
-- - job_idempotency_keys: one row per held idempotency key (V13's jobs_idempotency_key_idx);
-- - job_schedule_ticks: one row per (schedule, tick) that has its job (V19's
--   jobs_schedule_tick_idx).
-- jobs_insert, job_insert_assigned, job_insert_dependent and schedule_fire claim the key or
-- tick first (ON CONFLICT on these tables: the holder returned, an in-flight holder waited
-- for), and a statement trigger on jobs claims them for every other insert (an application's
-- own INSERT), so the rule still holds for every writer. Retention deletes their rows with
-- their jobs' partition; a DELETE of jobs (a queue deleted with force) frees them at once.
--
-- Cost of the conversion: one scan of the old table to fill the two small tables, one more
-- when it is attached as the default partition (PostgreSQL checks that none of its rows
-- belongs in the day partitions). No index is rebuilt: the primary key and the foreign keys of
-- the old table are adopted as the partition's.

LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE;

-- The lower bound of the job ids of moment `t` (ms precision): the partitions' bounds.
CREATE FUNCTION jobq_job_id_floor(t timestamptz) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

-- The moment in a UUIDv7's first 48 bits (for a v4 id: a random moment).
CREATE FUNCTION jobq_job_id_moment(id uuid) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT to_timestamp((('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint)
                        / 1000.0)
$$;

-- The smallest and largest id of a batch (NULLs aside; NULL for none): the statements that
-- find jobs by `job_id = ANY(ids)` also say `job_id BETWEEN jobq_ids_low(ids) AND
-- jobq_ids_high(ids)`, which the executor can prune partitions by (see storage/sql/jobs.sql).
CREATE FUNCTION jobq_ids_low(ids uuid[]) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT x FROM unnest(ids) AS x WHERE x IS NOT NULL ORDER BY x LIMIT 1 $$;
CREATE FUNCTION jobq_ids_high(ids uuid[]) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT x FROM unnest(ids) AS x WHERE x IS NOT NULL ORDER BY x DESC LIMIT 1 $$;

-- jobs_insert_by_id's mark of a job id that was already taken (its ON CONFLICT ... DO UPDATE
-- passes the id through here; RETURNING then looks it up): RETURNING cannot read xmax, the
-- mark it used before, from a partitioned table. Transaction-local; conflicts are rare
-- (a client's retried submit), so the list stays short.
CREATE FUNCTION jobq_note_existing(id uuid) RETURNS uuid
    LANGUAGE sql VOLATILE
AS $$
    SELECT CASE WHEN set_config('jobq.existing_ids',
                                coalesce(current_setting('jobq.existing_ids', true), '')
                                || id::text || ',', true) IS NOT NULL THEN id END
$$;

CREATE TABLE job_idempotency_keys (
    shard           smallint    NOT NULL DEFAULT 0,
    idempotency_key text        NOT NULL,
    job_id          uuid        NOT NULL,
    -- the holder's created_at, returned to a submit of a held key without reading jobs (whose
    -- row, committed while the submit waited, is not in the submit's snapshot)
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (shard, idempotency_key)
);
-- Retention deletes a dropped day's keys by job_id range; a DELETE of jobs by id.
CREATE INDEX job_idempotency_keys_job_idx ON job_idempotency_keys (shard, job_id);

CREATE TABLE job_schedule_ticks (
    shard         smallint    NOT NULL DEFAULT 0,
    schedule_name text        NOT NULL,
    schedule_tick timestamptz NOT NULL,
    job_id        uuid        NOT NULL,
    PRIMARY KEY (shard, schedule_name, schedule_tick)
);
CREATE INDEX job_schedule_ticks_job_idx ON job_schedule_ticks (shard, job_id);

INSERT INTO job_idempotency_keys (idempotency_key, job_id, created_at)
SELECT idempotency_key, job_id, created_at FROM jobs WHERE idempotency_key IS NOT NULL;
INSERT INTO job_schedule_ticks (schedule_name, schedule_tick, job_id)
SELECT schedule_name, schedule_tick, job_id FROM jobs
WHERE schedule_name IS NOT NULL AND schedule_tick IS NOT NULL;

ALTER TABLE jobs RENAME TO jobs_legacy;
ALTER INDEX jobs_pkey RENAME TO jobs_legacy_pkey;
DROP INDEX jobs_idempotency_key_idx;
DROP INDEX jobs_schedule_tick_idx;
-- The side tables' triggers move to the parent (below); on a partition they would fire only
-- for statements naming the partition.
DROP TRIGGER jobs_side_rows_insert ON jobs_legacy;
DROP TRIGGER jobs_side_rows_update ON jobs_legacy;
DROP TRIGGER jobs_side_rows_delete ON jobs_legacy;
DROP TRIGGER jobs_side_rows_truncate ON jobs_legacy;
-- enqueued_jobs refers to the parent from now on (re-added below).
ALTER TABLE enqueued_jobs DROP CONSTRAINT enqueued_jobs_job_id_fkey;

-- The parent: the same columns in the same order (the maintainer moves rows between
-- partitions with INSERT ... SELECT *), defaults and CHECK constraints (same names, as ATTACH
-- requires), and the same foreign keys (ATTACH adopts the old table's as the partition's).
CREATE TABLE jobs (
    LIKE jobs_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS
) PARTITION BY RANGE (job_id);
ALTER TABLE jobs ADD CONSTRAINT jobs_pkey PRIMARY KEY (job_id);
ALTER TABLE jobs ADD CONSTRAINT jobs_queue_name_fkey
    FOREIGN KEY (queue_name) REFERENCES queues (name) ON DELETE CASCADE;
ALTER TABLE jobs ADD CONSTRAINT jobs_worker_id_fkey
    FOREIGN KEY (worker_id) REFERENCES workers (worker_id) ON DELETE SET NULL;

DO $$
DECLARE
    today timestamptz := date_trunc('day', now(), 'UTC');
    day timestamptz;
    lower_id uuid;
    upper_id uuid;
    newest uuid;
BEGIN
    -- Made before the default partition is attached, so none of them scans it.
    FOR i IN 0..7 LOOP
        day := today + make_interval(days => i);
        lower_id := jobq_job_id_floor(day);
        upper_id := jobq_job_id_floor(day + interval '1 day');
        SELECT job_id INTO newest FROM jobs_legacy
        WHERE job_id >= lower_id AND job_id < upper_id
        ORDER BY job_id DESC LIMIT 1;
        IF newest IS NOT NULL AND i > 0 THEN
            CONTINUE;  -- an old random id falls in that day: the maintainer's to make
        END IF;
        IF newest IS NOT NULL THEN  -- today: start above the jobs already made today
            lower_id := jobq_job_id_floor(jobq_job_id_moment(newest) + interval '1 millisecond');
            CONTINUE WHEN lower_id >= upper_id;
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF jobs FOR VALUES FROM (%L) TO (%L)'
                       ' WITH (fillfactor = 35)',
                       'jobs_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'),
                       lower_id, upper_id);
    END LOOP;
END
$$;

-- One scan of the old table: none of its rows may belong in a day partition (made so above).
ALTER TABLE jobs ATTACH PARTITION jobs_legacy DEFAULT;

ALTER TABLE enqueued_jobs ADD CONSTRAINT enqueued_jobs_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES jobs (job_id) ON DELETE CASCADE;

-- V22's triggers, on the parent: a statement trigger with transition tables on a partitioned
-- table sees the rows of every partition the statement touched.
CREATE TRIGGER jobs_side_rows_insert
    AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobq_side_rows_insert();
CREATE TRIGGER jobs_side_rows_update
    AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobq_side_rows_update();
CREATE TRIGGER jobs_side_rows_delete
    AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobq_side_rows_delete();
CREATE TRIGGER jobs_side_rows_truncate
    AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobq_side_rows_truncate();

-- Keys and ticks of jobs inserted by any other statement than jq-server's (which claim theirs
-- first, so that a held key returns its holder): claimed here, and a key or tick held by
-- another job fails the insert as the unique indexes did (unique_violation). ON CONFLICT DO
-- NOTHING waits for an in-flight holder; the check after it reads the committed state (a new
-- snapshot per statement of a volatile function). A statement without keys or ticks (nearly
-- every one) costs one pass over its rows.
CREATE FUNCTION jobq_job_keys_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    keyed boolean;
    ticked boolean;
BEGIN
    SELECT bool_or(idempotency_key IS NOT NULL),
           bool_or(schedule_name IS NOT NULL AND schedule_tick IS NOT NULL)
    INTO keyed, ticked
    FROM new_rows;
    IF keyed THEN
        INSERT INTO job_idempotency_keys (idempotency_key, job_id, created_at)
        SELECT idempotency_key, job_id, created_at FROM new_rows
        WHERE idempotency_key IS NOT NULL
        ORDER BY idempotency_key
        ON CONFLICT DO NOTHING;
        IF EXISTS (SELECT 1 FROM new_rows n
                   JOIN job_idempotency_keys k
                     ON k.shard = 0 AND k.idempotency_key = n.idempotency_key
                   WHERE k.job_id <> n.job_id) THEN
            RAISE unique_violation USING
                MESSAGE = 'duplicate key value violates unique constraint "job_idempotency_keys_pkey"',
                DETAIL = 'an idempotency key of the inserted jobs is held by another job';
        END IF;
    END IF;
    IF ticked THEN
        INSERT INTO job_schedule_ticks (schedule_name, schedule_tick, job_id)
        SELECT schedule_name, schedule_tick, job_id FROM new_rows
        WHERE schedule_name IS NOT NULL AND schedule_tick IS NOT NULL
        ORDER BY schedule_name, schedule_tick
        ON CONFLICT DO NOTHING;
        IF EXISTS (SELECT 1 FROM new_rows n
                   JOIN job_schedule_ticks t
                     ON t.shard = 0 AND t.schedule_name = n.schedule_name
                    AND t.schedule_tick = n.schedule_tick
                   WHERE t.job_id <> n.job_id) THEN
            RAISE unique_violation USING
                MESSAGE = 'duplicate key value violates unique constraint "job_schedule_ticks_pkey"',
                DETAIL = 'a schedule tick of the inserted jobs already has its job';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- A deleted job gives its key and tick back (V13: a key frees up when its row is deleted).
CREATE FUNCTION jobq_job_keys_delete() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM job_idempotency_keys k USING old_rows o
    WHERE o.idempotency_key IS NOT NULL
      AND k.shard = 0 AND k.idempotency_key = o.idempotency_key AND k.job_id = o.job_id;
    DELETE FROM job_schedule_ticks t USING old_rows o
    WHERE o.schedule_name IS NOT NULL AND t.shard = 0 AND t.schedule_name = o.schedule_name
      AND t.schedule_tick = o.schedule_tick AND t.job_id = o.job_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION jobq_job_keys_truncate() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    TRUNCATE job_idempotency_keys, job_schedule_ticks;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_keys_insert
    AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobq_job_keys_insert();
CREATE TRIGGER jobs_keys_delete
    AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobq_job_keys_delete();
CREATE TRIGGER jobs_keys_truncate
    AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobq_job_keys_truncate();

-- The history maintainer keeps jobs' partitions in the same run, under job_events' lease;
-- this row records what its last run found for jobs (jq_history_jobs_*).
INSERT INTO history_maintenance (name) VALUES ('jobs');
