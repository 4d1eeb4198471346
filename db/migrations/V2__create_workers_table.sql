-- Workers: registered jq-worker processes, their capacity and liveness.
CREATE TYPE worker_status AS ENUM ('ONLINE', 'OFFLINE', 'DRAINING');

CREATE TABLE workers (
    worker_id        uuid          PRIMARY KEY,
    hostname         text          NOT NULL DEFAULT '',
    status           worker_status NOT NULL DEFAULT 'ONLINE',
    concurrency      integer       NOT NULL DEFAULT 1 CHECK (concurrency > 0),
    active_job_count integer       NOT NULL DEFAULT 0 CHECK (active_job_count >= 0),
    queues           text[]        NOT NULL DEFAULT '{}',
    last_heartbeat   timestamptz   NOT NULL DEFAULT now(),
    registered_at    timestamptz   NOT NULL DEFAULT now(),
    updated_at       timestamptz   NOT NULL DEFAULT now()
);

-- The heartbeat monitor looks for stale live workers.
CREATE INDEX workers_status_heartbeat_idx ON workers (status, last_heartbeat);
