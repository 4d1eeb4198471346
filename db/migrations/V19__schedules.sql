-- Schedules (issue 18): cron expressions and intervals that enqueue a job at each tick.
--
-- A schedule names either a cron expression (five fields, read in its IANA time zone) or an
-- interval in seconds, never both; a job template (queue, payload, priority, max_retries: NULL
-- takes the queue's at each tick, as a submit without one does); and what to do with ticks
-- missed while no jq-server ran (`skip` or `once`, see README "Schedules"). next_run_at is the
-- next tick to enqueue: the scheduler loop of every jq-server replica picks the due ones with
-- FOR UPDATE SKIP LOCKED, enqueues the tick's job and advances next_run_at in one transaction.
-- A schedule goes with its queue (ON DELETE CASCADE), as the queue's jobs do.
CREATE TABLE schedules (
    name             text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,128}$'),
    cron             text        NULL CHECK (char_length(cron) BETWEEN 1 AND 200),
    time_zone        text        NOT NULL DEFAULT 'UTC' CHECK (char_length(time_zone) BETWEEN 1 AND 64),
    interval_seconds integer     NULL CHECK (interval_seconds >= 1),
    queue_name       text        NOT NULL REFERENCES queues (name) ON DELETE CASCADE,
    payload          bytea       NOT NULL,
    priority         smallint    NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    max_retries      smallint    NULL CHECK (max_retries BETWEEN 0 AND 1000),
    missed           text        NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'once')),
    paused           boolean     NOT NULL DEFAULT false,
    next_run_at      timestamptz NOT NULL,
    last_run_at      timestamptz NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_cron_xor_interval CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);

-- The scheduler's question, "which schedules are due?", and its "when is the next one?": only
-- the active schedules, in next_run_at order.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE NOT paused;

-- Which schedule made a job, and for which tick. The unique index is what makes a tick enqueue
-- at most one job, whichever replica, restart or retry writes it: the insert of a second job
-- for one (schedule, tick) does nothing (ON CONFLICT DO NOTHING in schedule_fire). It is
-- partial, so ordinary submits (NULL) add no entry to it; adding nullable columns without a
-- default rewrites nothing. No reference to schedules: a job outlives its schedule and keeps
-- its name. The pair stays after the schedule is deleted, so a schedule created again under the
-- same name cannot enqueue a tick its predecessor already did.
ALTER TABLE jobs
    ADD COLUMN schedule_name text NULL,
    ADD COLUMN schedule_tick timestamptz NULL;

CREATE UNIQUE INDEX jobs_schedule_tick_idx ON jobs (schedule_name, schedule_tick)
    WHERE schedule_name IS NOT NULL;
