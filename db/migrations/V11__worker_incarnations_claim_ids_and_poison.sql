-- Worker incarnations, claim ids and poison jobs.
--
-- A worker restarted under the same id (a StatefulSet pod, a systemd unit) stranded the jobs its
-- dead process held: the new process heartbeated under that id, so they were never rescued. And
-- a job that killed its worker looped forever, because interruptions (a lost or restarted worker,
-- an assignment timeout) never consumed a retry.

-- The process currently registered under the worker id: the server issues a fresh one at every
-- registration of a new process (RegisterWorker without an incarnation) and refuses calls
-- presenting any other (FAILED_PRECONDITION: superseded). NULL: registered before this
-- migration, or never; the next registration issues one.
ALTER TABLE workers ADD COLUMN incarnation uuid NULL;

-- claim_id: a random id written by every claim, part of the fencing token with attempt and
-- worker_id. A claim commits with synchronous_commit = off; one lost in a database crash or
-- failover is claimed again with the same attempt number, and only the claim id then tells the
-- earlier run's reports from the current run's. NULL until the first claim (and on jobs claimed
-- before this migration, whose reports are then refused: they are re-run).
-- interruptions: deliveries that ended without a result from the worker (WORKER_LOST,
-- WORKER_RESTARTED, ASSIGNMENT_TIMEOUT). They consume no retry; more of them than the queue's
-- max_interruptions dead-letters the job (POISON). A manual retry sets it back to 0.
ALTER TABLE jobs
    ADD COLUMN claim_id      uuid    NULL,
    ADD COLUMN interruptions integer NOT NULL DEFAULT 0 CHECK (interruptions >= 0);

-- The claim each event belongs to, so that the duplicate-report check (an exact repeat of a
-- report already applied is accepted, not refused) is fenced by the claim id too.
ALTER TABLE job_events ADD COLUMN claim_id uuid NULL;

-- How many interruptions a job of the queue survives; the next one dead-letters it (POISON).
ALTER TABLE queues
    ADD COLUMN max_interruptions integer NOT NULL DEFAULT 3
        CHECK (max_interruptions BETWEEN 0 AND 1000);

-- Jobs held right now were claimed without a claim id. Give each one, so that the server's own
-- fenced paths (lost-worker rescue, assignment timeout, restart release, deregistration), which
-- read the token from the row, can still move them; their workers, which never learnt it, have
-- their reports refused and the jobs are re-run. Held jobs are few (bounded by worker slots).
UPDATE jobs SET claim_id = gen_random_uuid() WHERE status IN ('ASSIGNED', 'RUNNING');
