-- Named queries over schedules (db/migrations/V19): the operators' create, read, pause, resume
-- and delete, and the scheduler loop's pick of a due schedule and its tick.

-- name: schedule_create
-- Create a schedule; returns nothing when the name is taken. An unknown queue breaks the
-- foreign key (the caller reports it as the queue not found).
INSERT INTO schedules (name, cron, time_zone, interval_seconds, queue_name, payload, priority,
                       max_retries, missed, next_run_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: schedule_get
-- One schedule by name.
SELECT * FROM schedules WHERE name = $1;

-- name: schedule_lock
-- One schedule by name, locked until the transaction ends (resume computes its next tick from it).
SELECT * FROM schedules WHERE name = $1 FOR UPDATE;

-- name: schedule_list
-- Every schedule, by name.
SELECT * FROM schedules ORDER BY name;

-- name: schedule_delete
-- Delete a schedule; returns its name, or nothing when there is none. Its jobs stay (they keep
-- its name in jobs.schedule_name).
DELETE FROM schedules WHERE name = $1 RETURNING name;

-- name: schedule_set_paused
-- Pause ($2 true) or resume a schedule, with the next tick $3 (NULL: keep it; a resume gives the
-- first tick after now, so the ticks that fell due while paused are not enqueued).
UPDATE schedules
SET paused = $2, next_run_at = COALESCE($3, next_run_at), updated_at = now()
WHERE name = $1
RETURNING *;

-- name: schedule_lock_due
-- The most overdue active schedule due at $1, locked for this transaction; schedules another
-- replica's scheduler holds are skipped, so replicas share the due schedules instead of queueing
-- behind each other. A schedule another replica fired and committed meanwhile no longer matches:
-- under READ COMMITTED the row is re-read after the lock and the condition checked again, and
-- its next_run_at has moved on. (The unique index on the jobs' ticks would stop a second job
-- anyway.) schedules_due_idx answers it without reading paused or future schedules.
SELECT * FROM schedules
WHERE NOT paused AND next_run_at <= $1
ORDER BY next_run_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: schedule_fire
-- Enqueue the job of schedule $1 for tick $2 (NULL: no job, the tick is skipped), with id $3,
-- and move the schedule on to its next tick $4; the job inserted with its SUBMITTED event as
-- jobs_insert writes them, from the schedule's template, and the dispatchers notified. A tick
-- that already has its job gets no second one: `ticked` claims the tick in job_schedule_ticks
-- (V24; ON CONFLICT DO NOTHING waits for a replica firing the same tick and then does
-- nothing), and the job is inserted only if the tick was claimed here; the statement then
-- returns no row. max_retries falls back to the queue's, as a submit's does. $5: the shard
-- of the job id $3 (V25), carried by the tick, the job and its event.
WITH ticked AS MATERIALIZED (
    INSERT INTO job_schedule_ticks (shard, schedule_name, schedule_tick, job_id)
    SELECT $5::smallint, s.name, $2, $3
    FROM schedules s JOIN queues q ON q.name = s.queue_name
    WHERE s.name = $1 AND $2::timestamptz IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING job_id
), written AS (
    INSERT INTO jobs (job_id, queue_name, payload, priority, max_retries, schedule_name,
                      schedule_tick, shard)
    SELECT $3, s.queue_name, s.payload, s.priority, COALESCE(s.max_retries, q.max_retries),
           s.name, $2, $5::smallint
    FROM schedules s JOIN queues q ON q.name = s.queue_name
    WHERE s.name = $1 AND $2::timestamptz IS NOT NULL AND EXISTS (SELECT FROM ticked)
    RETURNING job_id, queue_name, payload, priority, max_retries, created_at
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, reason, occurred_at, shard)
    SELECT job_id, NULL, 'PENDING', 'SUBMITTED', created_at, $5::smallint FROM written
), advanced AS (
    UPDATE schedules
    SET next_run_at = $4, last_run_at = COALESCE($2, last_run_at), updated_at = now()
    WHERE name = $1
)
-- The notification as jobs_insert sends it: once per statement, only when a job was written.
SELECT w.job_id, w.queue_name, w.payload, w.priority, w.max_retries, w.created_at
FROM written w,
     (SELECT CASE WHEN EXISTS (SELECT FROM written) THEN pg_notify(
         CASE current_schema() WHEN 'public' THEN 'jobq_jobs' ELSE 'jobq_jobs_' || current_schema() END,
         '') END) AS n;

-- name: schedules_next_due
-- When the next active schedule falls due (NULL: none), so the scheduler sleeps until then, and
-- the database's time: the one clock every replica shares, so replicas whose own clocks differ
-- still agree on which ticks are due.
SELECT min(next_run_at) AS due, clock_timestamp() AS now FROM schedules WHERE NOT paused;
