-- The shard column (issue 21, must-show 4; docs/scaling.md, sections 3-5): every hot table
-- carries the shard of its job, so that each hot statement can name one shard (`shard = $n`)
-- and a distributed engine (Citus, or PostgreSQL cells) can send it whole to one node. The
-- shard is computed from the job id (jobq.domain.shards.shard_of: the id's 12 rand_a bits
-- modulo the shard count), so a by-id statement needs no lookup to know it. One shard for now:
-- every row's shard is 0 and every statement names 0.
--
-- A column with a constant default is added without rewriting the table (PostgreSQL 11+ keeps
-- the default in the catalog), so this migration is instant however many jobs there are.
-- The primary keys stay as they are: on one PostgreSQL a key led by shard would only make each
-- index larger. A Citus deployment leads them with it ((shard, job_id) and so on): Citus
-- requires every unique index of a distributed table to contain the distribution column.
-- No index is added: the side tables' lookup indexes lead with shard already (V22), and every
-- other hot access is by primary key, where `shard = $n` is checked on the row found.
--
-- workers: a worker's home shard, from its id by the same rule (written at registration); the
-- recovery monitor marks the workers of the shards it serves. event_outbox: the shard of the
-- events a row lists (one statement's events, so one shard). queue_starts: the shard of the
-- claimed job.

ALTER TABLE jobs             ADD COLUMN shard smallint NOT NULL DEFAULT 0;
-- partitioned (V23): added to the parent, every partition gets it
ALTER TABLE job_events       ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE job_dependencies ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE enqueued_jobs    ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE queue_starts     ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE event_outbox     ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE workers          ADD COLUMN shard smallint NOT NULL DEFAULT 0;

-- The side tables (V22) had their shard already, but their triggers left it at the default:
-- from here on they carry the job's. The functions are V22's with `shard` added to every
-- insert (and to the update trigger's working set, as the type's last attribute); nothing
-- else changes.
ALTER TYPE jobq_side_row ADD ATTRIBUTE shard smallint;

CREATE OR REPLACE FUNCTION jobq_side_rows_insert() RETURNS trigger
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
                                concurrency_key, suspect, shard)
        SELECT job_id, queue_name, priority, created_at, not_before, concurrency_key,
               interruptions >= 2, shard
        FROM new_rows WHERE status = 'PENDING';
    END IF;
    IF held THEN
        INSERT INTO held_jobs (job_id, worker_id, queue_name, concurrency_key, status, suspect,
                               assigned_at, cancel_requested, shard)
        SELECT job_id, worker_id, queue_name, concurrency_key, status, interruptions >= 2,
               assigned_at, cancel_requested_at IS NOT NULL, shard
        FROM new_rows WHERE status IN ('ASSIGNED', 'RUNNING');
    END IF;
    IF waiting THEN
        INSERT INTO waiting_jobs (job_id, queue_name, shard)
        SELECT job_id, queue_name, shard FROM new_rows WHERE status = 'WAITING';
    END IF;
    RETURN NULL;
END
$$;

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
CREATE OR REPLACE FUNCTION jobq_side_rows_update() RETURNS trigger
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
               interruptions >= 2, worker_id, assigned_at, cancel_requested_at IS NOT NULL,
               shard
        FROM new_rows
        EXCEPT
        SELECT job_id, status, queue_name, priority, created_at, not_before, concurrency_key,
               interruptions >= 2, worker_id, assigned_at, cancel_requested_at IS NOT NULL,
               shard
        FROM old_rows
    ) AS c (job_id, status, queue_name, priority, created_at, not_before, concurrency_key,
            suspect, worker_id, assigned_at, cancel_requested, shard);
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
                                concurrency_key, suspect, shard)
        SELECT m.job_id, m.queue_name, m.priority, m.created_at, m.not_before,
               m.concurrency_key, m.suspect, m.shard
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
                               assigned_at, cancel_requested, shard)
        SELECT m.job_id, m.worker_id, m.queue_name, m.concurrency_key, m.status, m.suspect,
               m.assigned_at, m.cancel_requested, m.shard
        FROM unnest(moved) AS m
        WHERE m.status IN ('ASSIGNED', 'RUNNING');
    ELSIF any_held THEN  -- those not held before (the others were updated above)
        INSERT INTO held_jobs (job_id, worker_id, queue_name, concurrency_key, status, suspect,
                               assigned_at, cancel_requested, shard)
        SELECT m.job_id, m.worker_id, m.queue_name, m.concurrency_key, m.status, m.suspect,
               m.assigned_at, m.cancel_requested, m.shard
        FROM unnest(moved) AS m
        WHERE m.status IN ('ASSIGNED', 'RUNNING')
          AND m.job_id <> ALL (ARRAY(SELECT h.job_id FROM held_jobs h
                                     WHERE h.job_id = ANY (ids)));
    END IF;

    IF was_waiting THEN
        DELETE FROM waiting_jobs WHERE job_id = ANY (ids);
    END IF;
    IF any_waiting THEN
        INSERT INTO waiting_jobs (job_id, queue_name, shard)
        SELECT m.job_id, m.queue_name, m.shard
        FROM unnest(moved) AS m WHERE m.status = 'WAITING';
    END IF;
    RETURN NULL;
END
$$;

-- The event outbox's rows (V15, V23): one row per statement's events, which are of one
-- shard (every hot statement is single-shard), so the row takes theirs. As V23's otherwise.
CREATE OR REPLACE FUNCTION jobq_capture_job_events() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO event_outbox (event_ids, occurred_from, occurred_to, shard)
    SELECT array_agg(id ORDER BY id), min(occurred_at), max(occurred_at), min(shard)
    FROM captured HAVING count(*) > 0;
    RETURN NULL;
END
$$;

-- The idempotency keys' and schedule ticks' tables (V24) carry the shard of their job: the
-- statements that claim a key or a tick write it, and the trigger that claims them for every
-- other writer (an application's own INSERT) takes the job row's. As V24's otherwise.
CREATE OR REPLACE FUNCTION jobq_job_keys_insert() RETURNS trigger
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
        INSERT INTO job_idempotency_keys (shard, idempotency_key, job_id, created_at)
        SELECT shard, idempotency_key, job_id, created_at FROM new_rows
        WHERE idempotency_key IS NOT NULL
        ORDER BY idempotency_key
        ON CONFLICT DO NOTHING;
        IF EXISTS (SELECT 1 FROM new_rows n
                   JOIN job_idempotency_keys k
                     ON k.shard = n.shard AND k.idempotency_key = n.idempotency_key
                   WHERE k.job_id <> n.job_id) THEN
            RAISE unique_violation USING
                MESSAGE = 'duplicate key value violates unique constraint "job_idempotency_keys_pkey"',
                DETAIL = 'an idempotency key of the inserted jobs is held by another job';
        END IF;
    END IF;
    IF ticked THEN
        INSERT INTO job_schedule_ticks (shard, schedule_name, schedule_tick, job_id)
        SELECT shard, schedule_name, schedule_tick, job_id FROM new_rows
        WHERE schedule_name IS NOT NULL AND schedule_tick IS NOT NULL
        ORDER BY schedule_name, schedule_tick
        ON CONFLICT DO NOTHING;
        IF EXISTS (SELECT 1 FROM new_rows n
                   JOIN job_schedule_ticks t
                     ON t.shard = n.shard AND t.schedule_name = n.schedule_name
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

CREATE OR REPLACE FUNCTION jobq_job_keys_delete() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM job_idempotency_keys k USING old_rows o
    WHERE o.idempotency_key IS NOT NULL
      AND k.shard = o.shard AND k.idempotency_key = o.idempotency_key AND k.job_id = o.job_id;
    DELETE FROM job_schedule_ticks t USING old_rows o
    WHERE o.schedule_name IS NOT NULL AND t.shard = o.shard AND t.schedule_name = o.schedule_name
      AND t.schedule_tick = o.schedule_tick AND t.job_id = o.job_id;
    RETURN NULL;
END
$$;
