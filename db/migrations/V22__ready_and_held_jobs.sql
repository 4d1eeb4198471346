-- The hot ready table (issue 21, must-show 1): the lifecycle's lookups by status move out of
-- jobs into three small side tables, so that no index of jobs names a column its status
-- updates change and every update of a job can be HOT (a new row version on the same page, no
-- new index entries).
--
-- Why: PostgreSQL decides HOT by the columns an index uses, as keys, in expressions or in a
-- predicate, whatever the predicate's value. jobs' partial indexes named status in their
-- predicates (and worker_id, interruptions, cancel_requested_at), so each of a job's three
-- status updates wrote a new heap tuple and new entries in every index: measured on the
-- benchmark's 20,000-job drain, a HOT ratio of 0.0 and about 1,976 bytes of WAL per job.
--
--   ready_jobs    one row per PENDING job: what a claim reads, in claim order, and deletes;
--   held_jobs     one row per ASSIGNED or RUNNING job: by worker (recovery, cancels, the
--                 suspect check) and by queue and key (the limited claim's counts);
--   waiting_jobs  one row per WAITING job: the dependency resolver's sweep.
--
-- Their rows are inserted and deleted (held_jobs' also updated at a start or a cancel
-- request), so their partial indexes cost nothing to jobs. jobs.status stays the truth: every
-- statement that reports or decides a job's status reads jobs, and locks the jobs row before
-- it changes anything; the side tables only find candidates.
--
-- shard (issue 21, must-show 4): every side table has it, leading its lookup indexes, so that
-- a later distribution by shard keeps each lookup to one shard. One shard for now (0).

CREATE TABLE ready_jobs (
    job_id          uuid        PRIMARY KEY,
    shard           smallint    NOT NULL DEFAULT 0,
    queue_name      text        NOT NULL,
    priority        smallint    NOT NULL,
    created_at      timestamptz NOT NULL,
    not_before      timestamptz NULL,
    concurrency_key text        NULL,
    -- interrupted twice or more (jobs_claim: at most one suspect per worker)
    suspect         boolean     NOT NULL
);
-- Every ready job of a queue in claim order, suspects included (as jobs_pending_queue_claim_idx
-- was): the ordinary claim reads it and filters the suspects out (rare), and the probes that
-- need every ready job of a queue in claim order (job_insert_assigned's "none PENDING", the
-- limited claim's candidates) read one ordered range of it. A claim index partial on
-- NOT suspect would make those two merge two ranges.
CREATE INDEX ready_jobs_claim_idx
    ON ready_jobs (shard, queue_name, priority DESC, created_at, job_id);
-- The ready suspects of a queue in claim order: empty unless jobs are being interrupted.
CREATE INDEX ready_jobs_suspect_idx
    ON ready_jobs (shard, queue_name, priority DESC, created_at, job_id) WHERE suspect;

CREATE TABLE held_jobs (
    job_id           uuid        PRIMARY KEY,
    shard            smallint    NOT NULL DEFAULT 0,
    -- NULL only if the worker's row is deleted (jobs.worker_id is ON DELETE SET NULL)
    worker_id        uuid        NULL,
    queue_name       text        NOT NULL,
    concurrency_key  text        NULL,
    status           job_status  NOT NULL,
    suspect          boolean     NOT NULL,
    assigned_at      timestamptz NULL,
    cancel_requested boolean     NOT NULL
);
-- A worker's held jobs: recovery of a lost worker, Deregister, the expired-assignment reaper.
CREATE INDEX held_jobs_worker_idx ON held_jobs (shard, worker_id);
-- The held jobs of a queue by key: the limited claim's counts (queue-wide and per key).
CREATE INDEX held_jobs_queue_key_idx ON held_jobs (shard, queue_name, concurrency_key);
-- The suspect a worker holds, if any (the claim asks on every call): usually empty.
CREATE INDEX held_jobs_suspect_idx ON held_jobs (shard, worker_id) WHERE suspect;
-- A worker's RUNNING jobs with a cancel requested (every heartbeat asks): usually empty.
CREATE INDEX held_jobs_cancel_idx ON held_jobs (shard, worker_id) WHERE cancel_requested;

CREATE TABLE waiting_jobs (
    job_id     uuid     PRIMARY KEY,
    shard      smallint NOT NULL DEFAULT 0,
    queue_name text     NOT NULL
);

-- The invariant "ready row iff PENDING, held row iff ASSIGNED/RUNNING, waiting row iff WAITING"
-- has one home: these statement-level triggers with transition tables (the house precedent is
-- V15's event outbox). Every writer keeps it without knowing: jq-server's statements, an
-- application's transactional enqueue, schedules, a queue's deletion (cascade), a manual fix.
-- Set-based: one call per statement, a few set statements over the statement's rows.
-- PostgreSQL allows one event per trigger with transition tables, hence three triggers.

CREATE FUNCTION jobq_side_rows_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    ready boolean;
    held boolean;
    waiting boolean;
BEGIN
    -- one pass to learn which tables get rows: a submit writes ready rows only
    SELECT bool_or(status = 'PENDING'), bool_or(status IN ('ASSIGNED', 'RUNNING')),
           bool_or(status = 'WAITING')
    INTO ready, held, waiting
    FROM new_rows;
    IF ready THEN
        INSERT INTO ready_jobs (job_id, queue_name, priority, created_at, not_before,
                                concurrency_key, suspect)
        SELECT job_id, queue_name, priority, created_at, not_before, concurrency_key,
               interruptions >= 2
        FROM new_rows WHERE status = 'PENDING';
    END IF;
    IF held THEN
        INSERT INTO held_jobs (job_id, worker_id, queue_name, concurrency_key, status, suspect,
                               assigned_at, cancel_requested)
        SELECT job_id, worker_id, queue_name, concurrency_key, status, interruptions >= 2,
               assigned_at, cancel_requested_at IS NOT NULL
        FROM new_rows WHERE status IN ('ASSIGNED', 'RUNNING');
    END IF;
    IF waiting THEN
        INSERT INTO waiting_jobs (job_id, queue_name)
        SELECT job_id, queue_name FROM new_rows WHERE status = 'WAITING';
    END IF;
    RETURN NULL;
END
$$;

-- A changed job as the side tables carry it (the update trigger's working set).
CREATE TYPE jobq_side_row AS (
    job_id           uuid,
    status           job_status,
    queue_name       text,
    priority         smallint,
    created_at       timestamptz,
    not_before       timestamptz,
    concurrency_key  text,
    suspect          boolean,
    worker_id        uuid,
    assigned_at      timestamptz,
    cancel_requested boolean
);

-- An update changes the side tables only for rows whose carried columns changed. The first
-- statement finds them as a set difference (the carried columns of the new rows EXCEPT those of
-- the old rows: hashed or sorted, never a join of the two transition tables, whose plan is
-- cached from the first call and was a nested loop: 2.4 ms for a claim of 100 jobs), and the
-- call returns at once when there are none (a progress report, an idempotency key's no-op
-- upsert). The later statements work from that set, each only if some row makes its move (a
-- claim: a ready row deleted and a held row inserted; a completion: a held row deleted; a
-- start: a held row updated in place), and find side rows by primary key (`= ANY(ids)`). A job
-- whose status stays PENDING, held or WAITING but whose carried columns changed (an UPDATE by
-- hand) has its side row written again.
CREATE FUNCTION jobq_side_rows_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    moved jobq_side_row[];
    ids uuid[];
    unheld uuid[];
    any_ready boolean;
    any_held boolean;
    any_waiting boolean;
    was_ready boolean;
    was_held boolean;
    was_waiting boolean;
BEGIN
    SELECT array_agg(c::jobq_side_row), array_agg(c.job_id),
           array_agg(c.job_id) FILTER (WHERE c.status NOT IN ('ASSIGNED', 'RUNNING')),
           bool_or(c.status = 'PENDING'), bool_or(c.status IN ('ASSIGNED', 'RUNNING')),
           bool_or(c.status = 'WAITING')
    INTO moved, ids, unheld, any_ready, any_held, any_waiting
    FROM (
        SELECT job_id, status, queue_name, priority, created_at, not_before, concurrency_key,
               interruptions >= 2, worker_id, assigned_at, cancel_requested_at IS NOT NULL
        FROM new_rows
        EXCEPT
        SELECT job_id, status, queue_name, priority, created_at, not_before, concurrency_key,
               interruptions >= 2, worker_id, assigned_at, cancel_requested_at IS NOT NULL
        FROM old_rows
    ) AS c (job_id, status, queue_name, priority, created_at, not_before, concurrency_key,
            suspect, worker_id, assigned_at, cancel_requested);
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    -- which side tables the changed jobs may have rows in now (a superset is harmless)
    SELECT bool_or(status = 'PENDING'), bool_or(status IN ('ASSIGNED', 'RUNNING')),
           bool_or(status = 'WAITING')
    INTO was_ready, was_held, was_waiting
    FROM old_rows;

    IF was_ready THEN
        DELETE FROM ready_jobs WHERE job_id = ANY (ids);
    END IF;
    IF any_ready THEN
        INSERT INTO ready_jobs (job_id, queue_name, priority, created_at, not_before,
                                concurrency_key, suspect)
        SELECT m.job_id, m.queue_name, m.priority, m.created_at, m.not_before,
               m.concurrency_key, m.suspect
        FROM unnest(moved) AS m WHERE m.status = 'PENDING';
    END IF;

    IF was_held AND any_held THEN  -- held before and after: in place
        UPDATE held_jobs h
        SET worker_id = m.worker_id, queue_name = m.queue_name,
            concurrency_key = m.concurrency_key, status = m.status, suspect = m.suspect,
            assigned_at = m.assigned_at, cancel_requested = m.cancel_requested
        FROM unnest(moved) AS m
        WHERE m.status IN ('ASSIGNED', 'RUNNING') AND h.job_id = m.job_id;
    END IF;
    IF was_held AND unheld IS NOT NULL THEN
        DELETE FROM held_jobs WHERE job_id = ANY (unheld);
    END IF;
    -- Two statements, not one with the check made optional: the generic plan of the check
    -- was an anti-join reading the whole of held_jobs, dead rows included, on every claim
    -- (1.4 ms a claim of 90 jobs in the bench's drain).
    IF any_held AND NOT was_held THEN  -- a claim: no changed job had a held row
        INSERT INTO held_jobs (job_id, worker_id, queue_name, concurrency_key, status, suspect,
                               assigned_at, cancel_requested)
        SELECT m.job_id, m.worker_id, m.queue_name, m.concurrency_key, m.status, m.suspect,
               m.assigned_at, m.cancel_requested
        FROM unnest(moved) AS m
        WHERE m.status IN ('ASSIGNED', 'RUNNING');
    ELSIF any_held THEN  -- those not held before (the others were updated above)
        INSERT INTO held_jobs (job_id, worker_id, queue_name, concurrency_key, status, suspect,
                               assigned_at, cancel_requested)
        SELECT m.job_id, m.worker_id, m.queue_name, m.concurrency_key, m.status, m.suspect,
               m.assigned_at, m.cancel_requested
        FROM unnest(moved) AS m
        WHERE m.status IN ('ASSIGNED', 'RUNNING')
          AND m.job_id <> ALL (ARRAY(SELECT h.job_id FROM held_jobs h
                                     WHERE h.job_id = ANY (ids)));
    END IF;

    IF was_waiting THEN
        DELETE FROM waiting_jobs WHERE job_id = ANY (ids);
    END IF;
    IF any_waiting THEN
        INSERT INTO waiting_jobs (job_id, queue_name)
        SELECT m.job_id, m.queue_name FROM unnest(moved) AS m WHERE m.status = 'WAITING';
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION jobq_side_rows_delete() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    -- by primary key, whatever the plan cached from an earlier call's size
    DELETE FROM ready_jobs
    WHERE job_id = ANY (ARRAY(SELECT job_id FROM old_rows WHERE status = 'PENDING'));
    DELETE FROM held_jobs
    WHERE job_id = ANY (ARRAY(SELECT job_id FROM old_rows
                              WHERE status IN ('ASSIGNED', 'RUNNING')));
    DELETE FROM waiting_jobs
    WHERE job_id = ANY (ARRAY(SELECT job_id FROM old_rows WHERE status = 'WAITING'));
    RETURN NULL;
END
$$;

-- TRUNCATE fires no DELETE trigger: an operator's TRUNCATE of jobs empties the side tables too.
CREATE FUNCTION jobq_side_rows_truncate() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    TRUNCATE ready_jobs, held_jobs, waiting_jobs;
    RETURN NULL;
END
$$;

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

-- Backfill from the jobs there are (the triggers above cover every write from here on).
INSERT INTO ready_jobs (job_id, queue_name, priority, created_at, not_before, concurrency_key,
                        suspect)
SELECT job_id, queue_name, priority, created_at, not_before, concurrency_key, interruptions >= 2
FROM jobs WHERE status = 'PENDING';
INSERT INTO held_jobs (job_id, worker_id, queue_name, concurrency_key, status, suspect,
                       assigned_at, cancel_requested)
SELECT job_id, worker_id, queue_name, concurrency_key, status, interruptions >= 2, assigned_at,
       cancel_requested_at IS NOT NULL
FROM jobs WHERE status IN ('ASSIGNED', 'RUNNING');
INSERT INTO waiting_jobs (job_id, queue_name)
SELECT job_id, queue_name FROM jobs WHERE status = 'WAITING';

-- The indexes of jobs that named a column the lifecycle changes (as key or in the predicate).
-- Kept: the primary key, jobs_idempotency_key_idx and jobs_schedule_tick_idx, whose columns a
-- job's lifecycle never changes. tests/integration/storage/test_jobs_hot_updates.py fails if
-- such an index comes back.
DROP INDEX jobs_pending_queue_claim_idx;
DROP INDEX jobs_worker_id_idx;
DROP INDEX jobs_pending_suspect_idx;
DROP INDEX jobs_held_suspect_idx;
DROP INDEX jobs_held_queue_key_idx;
DROP INDEX jobs_cancel_requested_idx;
DROP INDEX jobs_waiting_idx;

-- Room on each page for a job's later versions: an update is HOT only if the new version fits
-- on the page of the old one. A claim takes jobs in claim order, which is mostly their insert
-- order, so one claim statement updates most of the jobs of a page at once; their old versions
-- are dead only after it commits, so the page must hold every job's old and new version side
-- by side (the new one is larger: worker, claim id, assignment time). The completion finds the
-- claim's old versions prunable (the page is pruned when read) and needs room again for the
-- completed versions beside the claimed ones. Measured on the benchmark's 20,000-job drain
-- (jobs_hot_update_ratio, PostgreSQL 18): fillfactor 70 gave 0.53, 45 gave 0.87, 40 gave 0.93,
-- 35 gave 0.99. 35 keeps the ratio clear of the 0.9 bar when claim batches are large. The
-- price: pages of finished jobs stay about half full (an insert never fills a page past the
-- fillfactor), so the history takes about twice the heap it took at 100, until retention
-- (issue 21, must-show 2) takes it away. Applies to pages filled from now on.
ALTER TABLE jobs SET (fillfactor = 35);
