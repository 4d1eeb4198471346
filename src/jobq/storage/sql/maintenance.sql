-- Named queries of the recovery monitors (SPEC §6): the heartbeat monitor and the
-- assignment-timeout / TTL reaper. Several jq-server replicas run them against one database at
-- the same time, so every statement that moves rows first locks its candidates with
-- FOR UPDATE SKIP LOCKED: two replicas split a backlog between them instead of one waiting for
-- the other and then finding nothing left (or, worse, both acting on the same row). Every
-- statement is batch-limited so that a large backlog is worked off in bounded transactions.
-- Staleness is judged against $now when the caller passes one (tests move time that way) and
-- the database clock otherwise; the rows' own updated_at, completed_at and the events'
-- occurred_at always record the real database time of the change.

-- name: workers_mark_lost
-- Live workers (ONLINE or DRAINING) whose last heartbeat is older than $1 seconds before $2 (or
-- now()) → OFFLINE, at most $3 of them; returns their ids.
-- The stale set is a MATERIALIZED CTE so that the LIMIT and the row locks apply once, before the
-- update joins it. SKIP LOCKED: a worker row locked by another replica's monitor is already
-- being handled, and one locked by a concurrent heartbeat is alive; either way this replica
-- leaves it alone. A heartbeat that loses the race finds the worker OFFLINE and is refused
-- (worker_heartbeat ignores OFFLINE workers), so a lost worker must register again.
-- $4: the shard swept (V25): the workers whose home shard it is (the caller sweeps each shard
-- it serves).
WITH stale AS MATERIALIZED (
    SELECT worker_id
    FROM workers
    WHERE shard = $4::smallint
      AND status IN ('ONLINE', 'DRAINING')
      AND last_heartbeat < COALESCE($2::timestamptz, now()) - make_interval(secs => $1::float8)
    ORDER BY last_heartbeat, worker_id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE workers w
SET status = 'OFFLINE', updated_at = now()
FROM stale s
WHERE w.worker_id = s.worker_id AND w.shard = $4::smallint

RETURNING w.worker_id;

-- name: jobs_held_by_offline_workers
-- Claims (ASSIGNED or RUNNING) still held by OFFLINE workers whose last heartbeat is older
-- than $1 seconds before $2 (or now()), at most $3: what a monitor run that stopped between
-- marking workers lost and failing their jobs left behind.
-- The heartbeat condition leaves alone a worker that has just deregistered (its heartbeat is
-- recent): Deregister releases its jobs as WORKER_SHUTDOWN itself, and a rescue here would
-- race it and charge the jobs an interruption. No row locks: the rescue that follows
-- (jobs_interrupt) is fenced by (job_id, attempt, worker_id, claim_id) and locks the rows
-- itself, so when two replicas read the same claims only one of them applies each.
-- The claims are found through held_jobs (V22, one row per held job), and those of offline
-- workers read from jobs by primary key: every held job is read, no more (tests/integration/
-- storage/test_hot_path_plans.py). jobs decides: its status and worker are checked. The ids
-- are handed over as `= ANY(ARRAY(...))`: as a join, the planner preferred a hash join over a
-- sequential scan of the whole of jobs (seen on the plan test's table, 16,000 rows read).
-- $4: the shard swept (V25). The workers rows are read by id, on their home shards: they move
-- to the per-shard fence table before jobq runs on several nodes (docs/scaling.md, F7).
-- The array is made once, in a CTE, so that the range of its ids (jobq_ids_low/high, V24) can
-- prune jobs' day partitions when the scan of jobs starts (see storage/sql/jobs.sql).
WITH held AS MATERIALIZED (
    SELECT ARRAY(
        SELECT h.job_id
        FROM held_jobs h JOIN workers hw ON hw.worker_id = h.worker_id
        WHERE h.shard = $4::smallint AND hw.status = 'OFFLINE'
          AND hw.last_heartbeat
              < COALESCE($2::timestamptz, now()) - make_interval(secs => $1::float8)) AS ids
)
SELECT j.job_id, j.attempt, j.worker_id, j.claim_id
FROM held, jobs j
JOIN workers w ON w.worker_id = j.worker_id
WHERE j.job_id = ANY (held.ids) AND j.shard = $4::smallint
  AND j.job_id BETWEEN jobq_ids_low(held.ids) AND jobq_ids_high(held.ids)
  AND j.status IN ('ASSIGNED', 'RUNNING')
  AND w.status = 'OFFLINE'
  AND w.last_heartbeat < COALESCE($2::timestamptz, now()) - make_interval(secs => $1::float8)
ORDER BY j.job_id
LIMIT $3;

-- name: jobs_expired_assignments
-- ASSIGNED jobs whose assignment is older than $1 seconds before $2 (or now()), at most $3: the
-- worker never acknowledged the start. Locked here, in the caller's transaction, and then
-- handed to jobs_interrupt (ASSIGNMENT_TIMEOUT: back to PENDING, or POISON) in the same one, so
-- one statement of the interruption rules serves every kind of interruption.
-- FOR UPDATE SKIP LOCKED: a row locked by a worker's start acknowledgement (jobs_start) or by
-- another replica's reaper is being decided elsewhere; if the acknowledgement wins, the job is
-- RUNNING and no longer a candidate (jobs_interrupt only takes ASSIGNED ones); if the reaper
-- wins, the late acknowledgement fails its claim check and is rejected.
-- The candidates are found in held_jobs (V22), which carries status and assigned_at: each run
-- reads every held job, RUNNING ones too, and sorts the ASSIGNED ones. Held jobs are bounded
-- by the workers' slots, so that is cheap without an index on assigned_at; the jobs rows of
-- the expired ones are then read by primary key and locked, and jobs decides (its status and
-- assigned_at are checked again, also by the lock's re-check of a row changed meanwhile), the
-- ids handed over as `= ANY(ARRAY(...))` for the reason given in jobs_held_by_offline_workers
-- (tests/integration/storage/test_hot_path_plans.py checks the plan), made once in a CTE for
-- the partition pruning of jobs_held_by_offline_workers. $4: the shard swept (V25).
WITH held AS MATERIALIZED (
    SELECT ARRAY(
        SELECT h.job_id FROM held_jobs h
        WHERE h.shard = $4::smallint AND h.status = 'ASSIGNED'
          AND h.assigned_at
              < COALESCE($2::timestamptz, now()) - make_interval(secs => $1::float8)) AS ids
)
SELECT j.job_id, j.attempt, j.worker_id, j.claim_id
FROM held, jobs j
WHERE j.job_id = ANY (held.ids) AND j.shard = $4::smallint
  AND j.job_id BETWEEN jobq_ids_low(held.ids) AND jobq_ids_high(held.ids)
  AND j.status = 'ASSIGNED'
  AND j.assigned_at < COALESCE($2::timestamptz, now()) - make_interval(secs => $1::float8)
ORDER BY j.assigned_at, j.job_id
LIMIT $3
FOR UPDATE SKIP LOCKED;

-- name: jobs_expire_ttl
-- PENDING jobs created longer ago than their queue's ttl_seconds before $1 (or now()) →
-- DEAD_LETTERED (TTL_EXPIRED), at most $2. WAITING jobs are not expired while they wait for
-- their prerequisites; once promoted to PENDING, their age still counts from created_at. Queues without a TTL are never touched. No worker
-- is involved (a retried job still names its last worker), so the worker id reported is NULL.
-- FOR UPDATE OF j locks only the job rows: locking the queue rows too would make concurrent
-- reapers skip (or block on) whole queues and would block ALTERs of the queue meanwhile.
-- SKIP LOCKED: a PENDING row locked by a dispatcher's claim is being claimed right now (the
-- claim wins, and the job is no longer PENDING); one locked by another replica's reaper is
-- being expired already. MATERIALIZED for the same reason as in the claim: the LIMIT and the
-- locks apply once, in created_at order, before the update joins the result.
-- The candidates are read from ready_jobs (V22, one row per PENDING job, carrying created_at),
-- then their jobs rows by primary key, locked, with the status guard (jobs decides). The jobs
-- rows are locked, never the ready rows: the update's trigger then deletes those, waiting for a
-- claim that holds one (a claim never waits for a jobs row, so that wait always ends). Every
-- ready job of every TTL queue is read and sorted, the backlog and not the history: no index
-- orders ready_jobs by created_at alone. The ids are handed over as `= ANY(ARRAY(...))`: as
-- a join, the planner preferred a hash join over a sequential scan of the whole of jobs (seen
-- on test_hot_path_plans.py's table: 10,000 rows read on a run that expired nothing), made
-- once in a CTE for the partition pruning of jobs_held_by_offline_workers. $3: the shard swept
-- (V25).
WITH candidates AS MATERIALIZED (
    SELECT ARRAY(
            SELECT r.job_id
            FROM ready_jobs r JOIN queues rq ON rq.name = r.queue_name
            WHERE r.shard = $3::smallint AND rq.ttl_seconds IS NOT NULL
              AND r.created_at
                  < COALESCE($1::timestamptz, now()) - make_interval(secs => rq.ttl_seconds)
              -- not before a server announced it (V14): its SUBMITTED comes first, as for a
              -- claim
              AND NOT EXISTS (SELECT FROM enqueued_jobs e
                              WHERE e.job_id = r.job_id AND e.shard = r.shard)
            ORDER BY r.created_at, r.job_id
            LIMIT $2) AS ids
), expired AS MATERIALIZED (
    SELECT j.job_id, q.ttl_seconds
    FROM candidates c, jobs j
    JOIN queues q ON q.name = j.queue_name
    WHERE j.job_id = ANY (c.ids) AND j.shard = $3::smallint
      AND j.job_id BETWEEN jobq_ids_low(c.ids) AND jobq_ids_high(c.ids)
      AND j.status = 'PENDING'
      AND NOT EXISTS (SELECT FROM enqueued_jobs e
                      WHERE e.job_id = j.job_id AND e.shard = j.shard)
    ORDER BY j.created_at, j.job_id
    LIMIT $2
    FOR UPDATE OF j SKIP LOCKED
), dead AS (
    UPDATE jobs j
    SET status = 'DEAD_LETTERED', error_message = 'TTL expired', completed_at = now(),
        updated_at = now()
    FROM expired e
    WHERE j.job_id = e.job_id AND j.status = 'PENDING' AND j.shard = $3::smallint
    RETURNING j.job_id, j.attempt, NULL::uuid AS worker_id, j.queue_name, j.created_at,
              j.started_at, 'PENDING'::job_status AS from_status, j.status AS to_status,
              'TTL_EXPIRED' AS reason, statement_timestamp() AS occurred_at, e.ttl_seconds,
              j.has_dependants
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, detail, attempt,
                            shard)
    SELECT job_id, from_status, to_status, worker_id, reason,
           format('pending longer than the queue''s ttl of %s s', ttl_seconds), attempt, $3::smallint

    FROM dead
)
SELECT * FROM dead;

-- name: enqueued_jobs_take
-- Up to $1 jobs that transactional enqueues wrote and no server announced yet (V14), taken out
-- of enqueued_jobs: the caller publishes their SUBMITTED transitions. A row is taken once:
-- replicas taking at the same time skip each other's locked rows, as does a claim's DELETE
-- of a row locked here wait for this commit and then find it gone. Oldest first, so a backlog
-- is announced in submit order. $2: the shard swept (V25; the caller takes from each shard it
-- serves).
WITH taken AS (
    DELETE FROM enqueued_jobs e
    WHERE e.shard = $2::smallint
      AND e.job_id IN (SELECT o.job_id FROM enqueued_jobs o
                       WHERE o.shard = $2::smallint
                       LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING e.job_id
)
SELECT j.job_id, j.queue_name, j.created_at
FROM taken t JOIN jobs j ON j.job_id = t.job_id AND j.shard = $2::smallint


ORDER BY j.created_at, j.job_id;
