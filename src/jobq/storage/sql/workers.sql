-- Named queries over workers.

-- name: worker_register
-- Register or re-register a worker: ONLINE, heartbeat now.
INSERT INTO workers (worker_id, hostname, status, concurrency, queues, last_heartbeat,
                     registered_at, updated_at, active_job_count)
VALUES ($1, $2, 'ONLINE', $3, $4, now(), now(), now(), 0)
ON CONFLICT (worker_id) DO UPDATE
SET hostname = EXCLUDED.hostname, status = 'ONLINE', concurrency = EXCLUDED.concurrency,
    queues = EXCLUDED.queues, last_heartbeat = now(), registered_at = now(), updated_at = now(),
    shutdown_requested = false
RETURNING worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
          registered_at, updated_at;

-- name: worker_heartbeat
-- Record a heartbeat of a live worker. An OFFLINE worker was declared lost (or deregistered):
-- its heartbeat does not revive it; it must register again.
UPDATE workers
SET last_heartbeat = now(), active_job_count = $2, updated_at = now()
WHERE worker_id = $1 AND status <> 'OFFLINE'
RETURNING worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
          registered_at, updated_at, shutdown_requested;

-- name: worker_get
SELECT worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
       registered_at, updated_at, shutdown_requested
FROM workers WHERE worker_id = $1;

-- name: worker_list
SELECT worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
       registered_at, updated_at
FROM workers
WHERE ($1::worker_status IS NULL OR status = $1)
ORDER BY registered_at, worker_id;

-- name: worker_set_status
-- Set a worker's status (DRAINING, OFFLINE).
UPDATE workers SET status = $2, updated_at = now()
WHERE worker_id = $1
RETURNING worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
          registered_at, updated_at;

-- name: worker_request_shutdown
-- Ask a live worker to shut down gracefully: it stops taking jobs (DRAINING) and the next
-- heartbeat reply carries the SHUTDOWN command.
UPDATE workers SET status = 'DRAINING', shutdown_requested = true, updated_at = now()
WHERE worker_id = $1 AND status <> 'OFFLINE'
RETURNING worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
          registered_at, updated_at;

-- name: worker_counts
-- Workers per status, for GetSystemStatus and the jq_workers gauge.
SELECT status, count(*) AS n FROM workers GROUP BY status;
