-- Named queries of job dependencies (issue 18, V20): a job submitted with depends_on waits
-- WAITING until all its prerequisites are DONE.
--
-- Where resolution runs, and why there. Not in the completion statements (jobs_complete and
-- the dead-letter paths) but in a resolver (server/dependency_resolver.py) woken after their
-- commit, for the jobs they return with has_dependants set, plus a periodic sweep:
--  * the hot path pays one boolean column in the RETURNING of the statements that end jobs,
--    and nothing else: no probe of job_dependencies per completed job, no extra round trip;
--    jobs nobody waits for never wake the resolver;
--  * a resolution inside a completion statement would read the other prerequisites' statuses
--    in that statement's snapshot: two prerequisites completed by concurrent statements would
--    each see the other still RUNNING and neither would promote the dependant (stranded). A
--    resolver's statement starts after the completion it was woken by committed, so the
--    resolver woken by whichever prerequisite committed last sees them all DONE;
--  * a crash between a completion's commit and its resolution strands nothing: the sweep
--    (dependants_resolve with no ids) finds WAITING jobs whose prerequisites have ended,
--    through waiting_jobs (V22), which is empty (free) when dependencies are unused.
-- A dependant's submit locks its prerequisites' rows (job_prerequisites_lock) and sets their
-- has_dependants: a completion waiting for that lock re-reads the row after the submit's commit
-- (READ COMMITTED's re-check of an updated row) and returns has_dependants true, so the
-- resolver it wakes runs after the edge is committed and sees it. A prerequisite read DONE
-- under the lock stays DONE (DONE is final), one read DEAD_LETTERED is decided at once.
--
-- Cycles: a prerequisite must exist when its dependant is submitted (NOT_FOUND otherwise) and
-- a job's own id is refused, so every edge points from a job to an earlier one; no statement
-- adds edges to an existing job, so no cycle can ever be written.

-- name: job_prerequisites_lock
-- Lock the prerequisites $1 of jobs about to be submitted and read their current statuses.
-- FOR NO KEY UPDATE: what the has_dependants update of job_insert_dependent takes anyway; it
-- conflicts with the completions' FOR UPDATE, so no prerequisite ends until the submit commits.
-- NOWAIT: a submit never waits for a lock while it holds one, so it can never be part of a
-- deadlock. Waiting could make one with a batch of completions that locks two prerequisites in
-- another order (a completion batch holds the jobs of many workers' reports, and a deadlock
-- would fail them all); instead the caller takes every prerequisite of its batch here first,
-- holding nothing yet, and on LockNotAvailable rolls back to a savepoint and tries again a
-- few milliseconds later (a prerequisite is locked only while its own change commits).
-- $2: the shard of every job of $1 (V25): the caller locks its prerequisites shard by shard, in
-- shard order, so that two submits lock in one order. The id range prunes jobs' day partitions
-- (V24; see jobs.sql's header).
SELECT job_id, status FROM jobs WHERE job_id = ANY($1::uuid[]) AND shard = $2::smallint
  AND job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[])
ORDER BY job_id
FOR NO KEY UPDATE NOWAIT;

-- name: job_insert_dependent
-- Insert one job with prerequisites ($10), in the transaction that locked them
-- (job_prerequisites_lock), with the status the caller decided from them ($9): WAITING (some
-- not DONE yet), PENDING (all DONE) or DEAD_LETTERED (one dead-lettered; $11 the error naming
-- it). Its edges, its events (SUBMITTED; for DEAD_LETTERED also WAITING → DEAD_LETTERED,
-- DEPENDENCY_FAILED) and the prerequisites' has_dependants are written in the same statement.
-- $1..$8: job_id, queue, payload, priority, max_retries, not_before, idempotency key,
-- correlation id, as jobs_insert's columns; $12: notify the dispatchers (a PENDING job); $13
-- its concurrency key (V17); $14 its W3C trace context (V21).
-- ON CONFLICT DO NOTHING (any arbiter: the job id, or the idempotency key claimed first in
-- job_idempotency_keys, V24): a job that already holds the id or key is this submit made
-- before; nothing is written and no row returned, and the caller reads the holder. $15: the
-- job's shard (V25), which its edges and its key carry too. Its prerequisites' has_dependants
-- are set where they are, on their own shards (one statement over several shards when they
-- differ: docs/scaling.md, "job_insert_dependent").
WITH keyed AS MATERIALIZED (
    INSERT INTO job_idempotency_keys (shard, idempotency_key, job_id, created_at)
    SELECT $15::smallint, $7::text, $1::uuid, now() WHERE $7::text IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING job_id
), written AS (
    INSERT INTO jobs AS j (job_id, queue_name, payload, priority, max_retries, not_before,
                           idempotency_key, correlation_id, status, completed_at, error_message,
                           concurrency_key, trace_context, shard)
    SELECT $1::uuid, $2::text, $3::bytea, $4::smallint, COALESCE($5::smallint, q.max_retries),
           $6::timestamptz, $7::text, $8::text, $9::job_status,
           CASE WHEN $9::job_status = 'DEAD_LETTERED' THEN now() END, $11::text, $13::text,
           $14::text, $15::smallint
    FROM (SELECT $2::text AS name) n LEFT JOIN queues q ON q.name = n.name
    WHERE $7::text IS NULL OR EXISTS (SELECT FROM keyed)
    ON CONFLICT DO NOTHING
    RETURNING j.job_id, j.created_at, j.status
), edges AS (
    INSERT INTO job_dependencies (job_id, depends_on, shard)
    SELECT w.job_id, d.depends_on, $15::smallint FROM written w, unnest($10::uuid[]) AS d(depends_on)
), flagged AS (
    UPDATE jobs p SET has_dependants = true
    WHERE p.job_id = ANY($10::uuid[]) AND NOT p.has_dependants AND EXISTS (SELECT FROM written)
      AND p.job_id BETWEEN jobq_ids_low($10::uuid[]) AND jobq_ids_high($10::uuid[])
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, reason, detail, occurred_at, shard)
    SELECT w.job_id, e.from_status, e.to_status, e.reason, e.detail, w.created_at, $15::smallint

    FROM written w
    CROSS JOIN LATERAL (VALUES
        (1, NULL::job_status,
            CASE WHEN w.status = 'PENDING' THEN 'PENDING' ELSE 'WAITING' END::job_status,
            'SUBMITTED', NULL::text),
        (2, 'WAITING'::job_status, 'DEAD_LETTERED'::job_status, 'DEPENDENCY_FAILED', $11::text)
    ) AS e(step, from_status, to_status, reason, detail)
    WHERE e.step = 1 OR w.status = 'DEAD_LETTERED'
    ORDER BY e.step
)
SELECT w.job_id, w.created_at, w.status
FROM written w,
     (SELECT CASE WHEN $12::boolean AND EXISTS (SELECT FROM written WHERE status = 'PENDING')
         THEN pg_notify(
         CASE current_schema() WHEN 'public' THEN 'jobq_jobs' ELSE 'jobq_jobs_' || current_schema() END,
         '') END) AS n;

-- name: job_holder
-- The job that holds the id $1 or, when $2 is not NULL, the idempotency key $2: what a
-- job_insert_dependent that inserted nothing collided with (a key's holder from
-- job_idempotency_keys, V24, which carries its created_at). $3: the shard of $1 (V25). A key is
-- unique per shard (the keys' primary key leads with it): with several shards, a keyed job's id
-- must be minted on its key's shard (docs/scaling.md, F10) so that its holder is found there.
SELECT job_id, created_at FROM jobs
WHERE $2::text IS NULL AND job_id = $1::uuid AND shard = $3::smallint
UNION ALL
SELECT job_id, created_at FROM job_idempotency_keys
WHERE $2::text IS NOT NULL AND shard = $3::smallint AND idempotency_key = $2::text;

-- name: dependants_resolve
-- Resolve WAITING jobs, at most $2: those that wait for one of the jobs $1 (which ended), or,
-- with $1 NULL (the sweep), any WAITING job. One whose prerequisites are all DONE → PENDING
-- (DEPENDENCIES_MET); one with a prerequisite DEAD_LETTERED, or gone (its queue was deleted)
-- → DEAD_LETTERED (DEPENDENCY_FAILED, the error naming it). Others stay WAITING. The moved
-- rows come back with has_dependants, so the caller resolves the next level of a chain in
-- turn (a dead-lettered dependant dead-letters its own dependants). Notifies the dispatchers
-- when a job became PENDING.
-- The statuses are read in the statement's snapshot, which the caller takes after the commit
-- of the change it was woken for (see the head of this file). DONE is final, so "all DONE"
-- cannot become false; the jobs are locked in id order (two resolvers of other replicas, woken
-- by the same completions, cannot deadlock) and moved only if still WAITING (a CancelJob in
-- between wins). A RetryJob of a dead-lettered prerequisite racing this still dead-letters the
-- dependant (documented: a retry revives no dependant).
-- $3: the shard resolved (V25): the dependants of that shard, their edges, events and moves
-- (the caller resolves each shard it serves). Their prerequisites' statuses are read where
-- they are, on their own shards (p below; docs/scaling.md, "dependants_resolve").
WITH candidates AS MATERIALIZED (
    SELECT DISTINCT d.job_id
    FROM job_dependencies d JOIN jobs w ON w.shard = d.shard AND w.job_id = d.job_id
    WHERE d.shard = $3::smallint AND d.depends_on = ANY($1::uuid[]) AND w.status = 'WAITING'
    UNION
    -- the WAITING jobs, from waiting_jobs (V22); the status is checked below, on jobs
    SELECT w.job_id FROM waiting_jobs w
    WHERE $1::uuid[] IS NULL AND w.shard = $3::smallint
), decided AS MATERIALIZED (
    SELECT c.job_id,
           bool_and(p.status IS NOT DISTINCT FROM 'DONE') AS all_done,
           (array_agg(d.depends_on ORDER BY d.depends_on)
               FILTER (WHERE p.status IS NULL OR p.status = 'DEAD_LETTERED'))[1] AS failed,
           bool_or(p.status IS NULL) AS gone
    FROM candidates c
    JOIN job_dependencies d ON d.job_id = c.job_id AND d.shard = $3::smallint
    LEFT JOIN jobs p ON p.job_id = d.depends_on
    GROUP BY c.job_id
    HAVING bool_and(p.status IS NOT DISTINCT FROM 'DONE')
        OR bool_or(p.status IS NULL OR p.status = 'DEAD_LETTERED')
    ORDER BY c.job_id
    LIMIT $2
), locked AS MATERIALIZED (
    SELECT j.job_id, d.failed, d.gone
    FROM jobs j JOIN decided d ON d.job_id = j.job_id
    WHERE j.shard = $3::smallint AND j.status = 'WAITING'
    ORDER BY j.job_id
    FOR UPDATE OF j
), moved AS (
    UPDATE jobs j
    SET status = CASE WHEN l.failed IS NULL THEN 'PENDING' ELSE 'DEAD_LETTERED' END::job_status,
        completed_at = CASE WHEN l.failed IS NULL THEN NULL ELSE now() END,
        error_message = CASE WHEN l.failed IS NULL THEN NULL
            WHEN l.gone THEN format('dependency %s no longer exists', l.failed)
            ELSE format('dependency %s was dead-lettered', l.failed) END,
        updated_at = now()
    FROM locked l
    WHERE j.job_id = l.job_id AND j.status = 'WAITING' AND j.shard = $3::smallint
    RETURNING j.job_id, j.attempt, NULL::uuid AS worker_id, j.queue_name, j.created_at,
              j.started_at, 'WAITING'::job_status AS from_status, j.status AS to_status,
              CASE WHEN l.failed IS NULL THEN 'DEPENDENCIES_MET' ELSE 'DEPENDENCY_FAILED' END
                  AS reason,
              j.error_message, statement_timestamp() AS occurred_at, j.has_dependants
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, reason, detail, attempt, shard)
    SELECT job_id, from_status, to_status, reason, error_message, attempt, $3::smallint FROM moved

)
SELECT m.*
FROM moved m,
     (SELECT CASE WHEN EXISTS (SELECT FROM moved WHERE to_status = 'PENDING') THEN pg_notify(
         CASE current_schema() WHEN 'public' THEN 'jobq_jobs' ELSE 'jobq_jobs_' || current_schema() END,
         '') END) AS n;
