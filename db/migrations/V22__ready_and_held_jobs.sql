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

-- An update changes the side tables only for rows whose carried columns changed. The first
-- statement finds those rows, and which kinds of move they make; the call returns at once when
-- there are none (a progress report, an idempotency key's no-op upsert: one pass over the
-- transition tables), and each later statement runs only if some row makes its move (a claim:
-- a ready row deleted and a held row inserted; a completion: a held row deleted; a start: a
-- held row updated in place). A job whose status stays PENDING, held or WAITING but whose
-- carried columns changed (an UPDATE by hand) has its side row written again.
CREATE FUNCTION jobq_side_rows_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    changed uuid[];
    left_ready boolean;
    entered_ready boolean;
    stayed_held boolean;
    left_held boolean;
    entered_held boolean;
    left_waiting boolean;
    entered_waiting boolean;
BEGIN
    SELECT array_agg(n.job_id),
           bool_or(o.status = 'PENDING'),
           bool_or(n.status = 'PENDING'),
           bool_or(o.status IN ('ASSIGNED', 'RUNNING') AND n.status IN ('ASSIGNED', 'RUNNING')),
           bool_or(o.status IN ('ASSIGNED', 'RUNNING')
                   AND n.status NOT IN ('ASSIGNED', 'RUNNING')),
           bool_or(n.status IN ('ASSIGNED', 'RUNNING')
                   AND o.status NOT IN ('ASSIGNED', 'RUNNING')),
           bool_or(o.status = 'WAITING'),
           bool_or(n.status = 'WAITING')
    INTO changed, left_ready, entered_ready, stayed_held, left_held, entered_held, left_waiting,
         entered_waiting
    FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id
    WHERE (n.status, n.queue_name, n.priority, n.created_at, n.not_before, n.concurrency_key,
           n.interruptions >= 2, n.worker_id, n.assigned_at, n.cancel_requested_at IS NOT NULL)
          IS DISTINCT FROM
          (o.status, o.queue_name, o.priority, o.created_at, o.not_before, o.concurrency_key,
           o.interruptions >= 2, o.worker_id, o.assigned_at, o.cancel_requested_at IS NOT NULL);
    IF changed IS NULL THEN
        RETURN NULL;
    END IF;

    IF left_ready THEN
        DELETE FROM ready_jobs r USING old_rows o
        WHERE o.job_id = ANY (changed) AND o.status = 'PENDING' AND r.job_id = o.job_id;
    END IF;
    IF entered_ready THEN
        INSERT INTO ready_jobs (job_id, queue_name, priority, created_at, not_before,
                                concurrency_key, suspect)
        SELECT job_id, queue_name, priority, created_at, not_before, concurrency_key,
               interruptions >= 2
        FROM new_rows WHERE job_id = ANY (changed) AND status = 'PENDING';
    END IF;

    IF stayed_held THEN
        UPDATE held_jobs h
        SET worker_id = n.worker_id, queue_name = n.queue_name,
            concurrency_key = n.concurrency_key, status = n.status,
            suspect = n.interruptions >= 2, assigned_at = n.assigned_at,
            cancel_requested = n.cancel_requested_at IS NOT NULL
        FROM new_rows n
        WHERE n.job_id = ANY (changed) AND n.status IN ('ASSIGNED', 'RUNNING')
          AND h.job_id = n.job_id;
    END IF;
    IF left_held THEN
        DELETE FROM held_jobs h USING old_rows o, new_rows n
        WHERE o.job_id = ANY (changed) AND o.status IN ('ASSIGNED', 'RUNNING')
          AND n.job_id = o.job_id AND n.status NOT IN ('ASSIGNED', 'RUNNING')
          AND h.job_id = o.job_id;
    END IF;
    IF entered_held THEN
        INSERT INTO held_jobs (job_id, worker_id, queue_name, concurrency_key, status, suspect,
                               assigned_at, cancel_requested)
        SELECT n.job_id, n.worker_id, n.queue_name, n.concurrency_key, n.status,
               n.interruptions >= 2, n.assigned_at, n.cancel_requested_at IS NOT NULL
        FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id
        WHERE n.job_id = ANY (changed) AND n.status IN ('ASSIGNED', 'RUNNING')
          AND o.status NOT IN ('ASSIGNED', 'RUNNING');
    END IF;

    IF left_waiting THEN
        DELETE FROM waiting_jobs w USING old_rows o
        WHERE o.job_id = ANY (changed) AND o.status = 'WAITING' AND w.job_id = o.job_id;
    END IF;
    IF entered_waiting THEN
        INSERT INTO waiting_jobs (job_id, queue_name)
        SELECT job_id, queue_name
        FROM new_rows WHERE job_id = ANY (changed) AND status = 'WAITING';
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION jobq_side_rows_delete() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM ready_jobs r USING old_rows o
    WHERE o.status = 'PENDING' AND r.job_id = o.job_id;
    DELETE FROM held_jobs h USING old_rows o
    WHERE o.status IN ('ASSIGNED', 'RUNNING') AND h.job_id = o.job_id;
    DELETE FROM waiting_jobs w USING old_rows o
    WHERE o.status = 'WAITING' AND w.job_id = o.job_id;
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
