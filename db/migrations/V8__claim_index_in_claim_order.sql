-- Measured on a drain of 20,000 jobs (bench/): each claim of ~60 jobs took 7-9 ms, because the
-- planner, misled by a low row estimate for PENDING, answered `queue_name = ANY(...) AND
-- status = 'PENDING'` from jobs_queue_status_idx (a bitmap scan of every pending job) and then
-- sorted them all. The claim must read the pending jobs in exactly its order and stop at its
-- limit, so:
--  * the claim index carries the claim's whole order, job_id included (jobs of one batch share
--    created_at, and without job_id each claim sorted the batch again);
--  * the indexes with status as a key column go: they offered the planner that wrong path, and
--    every status change (three per job) had to add an entry to them, since an update of an
--    indexed column is never HOT. Per-queue counts of finished jobs (queue stats, listing by
--    queue) are rare admin queries and may scan the table.
DROP INDEX IF EXISTS jobs_pending_claim_idx;
CREATE INDEX jobs_pending_claim_idx ON jobs (priority DESC, created_at, job_id)
    WHERE status = 'PENDING';
DROP INDEX IF EXISTS jobs_queue_status_idx;
DROP INDEX IF EXISTS jobs_status_not_before_idx;
