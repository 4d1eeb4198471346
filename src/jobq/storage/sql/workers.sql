-- Named queries over workers.
--
-- A worker id names a worker; an incarnation names the process registered under it now. The
-- server issues a new incarnation whenever a process registers without one (its first
-- registration), so a process restarted under a stable id (a StatefulSet pod, a systemd unit)
-- is a new incarnation, and every call of the process it replaced is refused from then on.

-- name: worker_lock
-- The worker's row, locked FOR UPDATE until the caller's transaction ends: a registration or a
-- deregistration decides on the incarnation it reads here and releases the jobs the worker
-- holds in the same transaction. The lock conflicts with the FOR KEY SHARE every claim takes
-- on the row (see jobs_claim), so no claim for the worker's previous process commits in
-- between unseen; heartbeats wait for it too, and then find the new incarnation.
SELECT worker_id, status, incarnation FROM workers WHERE worker_id = $1 FOR UPDATE;

-- name: worker_register
-- Register or re-register a worker: ONLINE, heartbeat now, incarnation $5, home shard $6 (V25:
-- from its id, as a job's; the recovery monitor of that shard watches it).
INSERT INTO workers (worker_id, hostname, status, concurrency, queues, last_heartbeat,
                     registered_at, updated_at, active_job_count, incarnation, shard)
VALUES ($1, $2, 'ONLINE', $3, $4, now(), now(), now(), 0, $5, $6)

ON CONFLICT (worker_id) DO UPDATE
SET hostname = EXCLUDED.hostname, status = 'ONLINE', concurrency = EXCLUDED.concurrency,
    queues = EXCLUDED.queues, last_heartbeat = now(), registered_at = now(), updated_at = now(),
    shutdown_requested = false, incarnation = EXCLUDED.incarnation
RETURNING worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
          registered_at, updated_at, incarnation;

-- name: worker_heartbeat
-- Record a heartbeat of a live worker's current process (incarnation $3). An OFFLINE worker
-- was declared lost (or deregistered): its heartbeat does not revive it; it must register
-- again. Another incarnation's heartbeat changes nothing (the caller then tells the two
-- refusals apart with worker_get).
UPDATE workers
SET last_heartbeat = now(), active_job_count = $2, updated_at = now()
WHERE worker_id = $1 AND status <> 'OFFLINE' AND incarnation = $3
RETURNING worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
          registered_at, updated_at, shutdown_requested, incarnation;

-- name: worker_get
SELECT worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
       registered_at, updated_at, shutdown_requested, incarnation
FROM workers WHERE worker_id = $1;

-- name: worker_list
SELECT worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
       registered_at, updated_at, incarnation
FROM workers
WHERE ($1::worker_status IS NULL OR status = $1)
ORDER BY registered_at, worker_id;

-- name: worker_set_status
-- Set a worker's status to $2 (DRAINING, OFFLINE) if it is in one of the statuses $3 now; no
-- row when it is not (or is unknown), and nothing changes. The guard is in the statement, not
-- in a read before it, so a worker that goes OFFLINE meanwhile (lost, deregistered) is never
-- brought back to DRAINING. The sub-select locks the row and yields the status it had, which
-- the caller reports.
UPDATE workers w SET status = $2, updated_at = now()
FROM (SELECT worker_id, status FROM workers WHERE worker_id = $1 FOR UPDATE) old
WHERE w.worker_id = old.worker_id AND old.status = ANY($3::worker_status[])
RETURNING w.worker_id, w.hostname, w.status, w.concurrency, w.active_job_count, w.queues,
          w.last_heartbeat, w.registered_at, w.updated_at, w.incarnation,
          old.status AS previous_status;

-- name: worker_request_shutdown
-- Ask a live worker to shut down gracefully: it stops taking jobs (DRAINING) and the next
-- heartbeat reply carries the SHUTDOWN command.
UPDATE workers SET status = 'DRAINING', shutdown_requested = true, updated_at = now()
WHERE worker_id = $1 AND status <> 'OFFLINE'
RETURNING worker_id, hostname, status, concurrency, active_job_count, queues, last_heartbeat,
          registered_at, updated_at, incarnation;

-- name: worker_counts
-- Workers per status, for GetSystemStatus and the jq_workers gauge.
SELECT status, count(*) AS n FROM workers GROUP BY status;

-- name: workers_online_by_queue
-- ONLINE workers per queue they take jobs from, for the jq_queue_workers_online gauge (queues
-- no ONLINE worker serves have no row; the caller sets them to 0). The workers table holds one
-- row per worker, small beside jobs: a sequential scan, once per scrape at most.
SELECT q.name AS queue_name, count(*) AS n
FROM workers w CROSS JOIN LATERAL unnest(w.queues) AS q(name)
WHERE w.status = 'ONLINE'
GROUP BY q.name;
