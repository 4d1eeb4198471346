-- Queues: named channels of jobs with their retry and time-to-live policy.
CREATE TABLE queues (
    name        text        PRIMARY KEY
                            CHECK (name ~ '^[A-Za-z0-9_.-]{1,128}$'),
    max_retries integer     NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 1000),
    ttl_seconds integer     NULL CHECK (ttl_seconds IS NULL OR ttl_seconds > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
