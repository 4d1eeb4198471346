-- A backlog in one queue slowed claims for every other queue: jobs_pending_claim_idx ordered all
-- pending jobs by (priority, created_at), so a claim for 'default' walked past every pending job
-- of a queue that no connected worker serves before it found one of its own (measured: 5,000
-- pending jobs in another queue added 2 ms to each claim and to every job's pickup latency).
-- With the queue first, a claim reads exactly its queue's pending jobs in claim order and stops
-- at its limit; a worker serving several queues reads each queue's head (see jobs_claim). The
-- index also answers per-queue pending counts (queue stats).
CREATE INDEX jobs_pending_queue_claim_idx ON jobs (queue_name, priority DESC, created_at, job_id)
    WHERE status = 'PENDING';
DROP INDEX IF EXISTS jobs_pending_claim_idx;
