-- Fencing (SPEC §4): every claim increments a job's attempt; start acknowledgements and result
-- reports must present it, so a worker that was declared lost cannot overwrite a newer attempt.
-- assigned_at lets the assignment-timeout reaper judge staleness by the database clock.
ALTER TABLE jobs
    ADD COLUMN attempt     integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    ADD COLUMN assigned_at timestamptz NULL;

ALTER TABLE job_events
    ADD COLUMN attempt integer NULL;
