-- Jobs written outside jq-server (jobq.enqueue in an application's own transaction) that no
-- server has announced yet. A submit through jq-server is published on that replica's
-- lifecycle stream (PENDING, reason SUBMITTED: its jq_jobs_submitted counter, its log line,
-- and whatever subscribes) by the write itself; a transactional enqueue has no server in it, so
-- it leaves its job's id here, in the same transaction, and a server takes it out and publishes
-- the SUBMITTED transition (server/enqueue_announcer.py). Taking a row out is a DELETE, so each
-- job is announced by exactly one replica, once; a claim of a job still listed takes its row
-- out too and publishes SUBMITTED before ASSIGNED (jobs_claim), so a replica's stream never
-- shows a job assigned before it was submitted.
--
-- A transactional outbox: rows live from the application's commit until a server's next pass
-- (a NOTIFY at commit wakes it), so the table is empty as a rule. Deleting a job deletes its row.
CREATE TABLE enqueued_jobs (
    job_id uuid PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE
);
