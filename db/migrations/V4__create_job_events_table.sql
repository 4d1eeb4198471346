-- job_events: the append-only history of every job state change.
CREATE TABLE job_events (
    id          bigserial   PRIMARY KEY,
    job_id      uuid        NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    from_status job_status  NULL,
    to_status   job_status  NOT NULL,
    worker_id   uuid        NULL,
    reason      text        NOT NULL,
    detail      text        NULL,
    occurred_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_events_job_id_idx ON job_events (job_id);
