-- Suspects: jobs interrupted twice or more (a lost or restarted worker, an assignment timeout).
-- A poison job that kills its worker interrupts every job running beside it, and those
-- bystanders, claimed again together with it, used to share its fate until all of them were
-- dead-lettered as POISON. A worker is now given at most one suspect at a time (see jobs_claim,
-- which explains why that suffices); these two indexes let the claim find out cheaply.

-- The pending suspects of a queue in claim order: the claim's suspect branch reads one entry per
-- queue. Suspects are rare, so the index is usually empty and the branch costs one empty index
-- probe per queue; ordinary jobs never enter it (their updates do not touch it).
CREATE INDEX jobs_pending_suspect_idx ON jobs (queue_name, priority DESC, created_at, job_id)
    WHERE status = 'PENDING' AND interruptions >= 2;

-- The suspect a worker holds, if any: the claim asks before it takes one. jobs_worker_id_idx
-- would answer too, but by walking every job the worker holds and fetching each from the table
-- to read its interruptions, on every claim, so the cost would grow with the worker's
-- concurrency; this one holds at most one entry per worker and is usually empty.
CREATE INDEX jobs_held_suspect_idx ON jobs (worker_id)
    WHERE status IN ('ASSIGNED', 'RUNNING') AND interruptions >= 2;
