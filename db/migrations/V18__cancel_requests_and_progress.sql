-- Cancelling RUNNING jobs and progress reports (issue 18).
--
-- cancel_requested_at / cancelled_by: CancelJob on a RUNNING job cannot end it at once (a
-- worker runs it), so it records the request here, durably, and tells the worker; the job
-- ends DEAD_LETTERED (CANCELLED) when the worker reports the cancellation, or when the attempt
-- ends any other way that would have run it again (a failure that would retry, a lost,
-- restarted or shut-down worker: jobs_apply_failure, jobs_interrupt and jobs_release check the
-- column). A job that succeeds before the worker acts on the request ends DONE; the columns
-- then still say a cancel was asked for. cancelled_by is the caller's label (`token:ci`,
-- `cert:CN=...`, `anonymous`), also written by cancels of PENDING/ASSIGNED jobs. RetryJob
-- clears both.
--
-- progress / progress_message / progress_updated_at: the latest progress the current RUNNING
-- attempt reported (ReportProgress). Not a state change, so no job_events row; cleared when
-- the job goes back to PENDING. Bounded here as at the door.
--
-- All columns are nullable without a default: adding them rewrites nothing, and a job that
-- is never cancelled and reports no progress stores nothing more (NULLs take a bit in the
-- row's null bitmap).
ALTER TABLE jobs
    ADD COLUMN cancel_requested_at timestamptz NULL,
    ADD COLUMN cancelled_by        text        NULL,
    ADD COLUMN progress            double precision NULL,
    ADD COLUMN progress_message    text        NULL,
    ADD COLUMN progress_updated_at timestamptz NULL,
    ADD CONSTRAINT jobs_progress_range CHECK (progress IS NULL OR (progress >= 0 AND progress <= 1)),
    ADD CONSTRAINT jobs_progress_message_length CHECK (char_length(progress_message) <= 200),
    ADD CONSTRAINT jobs_cancelled_by_length CHECK (char_length(cancelled_by) <= 300);

-- The RUNNING jobs of a worker with a cancel requested: what a heartbeat's answer repeats to
-- the worker (the fallback for a missed notification). Almost always empty, so a heartbeat's
-- lookup is one probe of an empty index; only a cancel request and the end of such a job
-- write to it.
CREATE INDEX jobs_cancel_requested_idx ON jobs (worker_id)
    WHERE cancel_requested_at IS NOT NULL AND status = 'RUNNING';
