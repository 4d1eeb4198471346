-- Flow control (issue 18): a queue can be paused, and can limit how many of its jobs are held
-- (ASSIGNED or RUNNING) at once and how many start per period, both queue-wide and per
-- concurrency key (a job's `concurrency_key`, e.g. one customer's id).
--
-- A queue with any of these set is "flow limited" (the generated column): the ordinary claim
-- (jobs_claim) and the assignment at submit leave its jobs alone, and the dispatcher claims
-- them through the limited claim instead (queue_flow_lock ... jobs_claim_chosen), which takes
-- the queue's row FOR NO KEY UPDATE first, so that claims of one limited queue run one at a
-- time on every replica and each counts what the ones before it took. Unlimited queues keep
-- the ordinary claim and pay only one primary-key probe of this table per claim.
ALTER TABLE queues
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    ADD COLUMN max_running integer NULL
        CONSTRAINT queues_max_running_range CHECK (max_running BETWEEN 1 AND 1000000),
    ADD COLUMN key_max_running integer NULL
        CONSTRAINT queues_key_max_running_range CHECK (key_max_running BETWEEN 1 AND 1000000),
    ADD COLUMN rate_limit integer NULL
        CONSTRAINT queues_rate_limit_range CHECK (rate_limit BETWEEN 1 AND 1000000),
    ADD COLUMN rate_period_ms integer NULL
        CONSTRAINT queues_rate_period_range CHECK (rate_period_ms BETWEEN 1 AND 86400000),
    ADD COLUMN key_rate_limit integer NULL
        CONSTRAINT queues_key_rate_limit_range CHECK (key_rate_limit BETWEEN 1 AND 1000000),
    ADD COLUMN key_rate_period_ms integer NULL
        CONSTRAINT queues_key_rate_period_range CHECK (key_rate_period_ms BETWEEN 1 AND 86400000),
    ADD CONSTRAINT queues_rate_limit_has_period
        CHECK ((rate_limit IS NULL) = (rate_period_ms IS NULL)),
    ADD CONSTRAINT queues_key_rate_limit_has_period
        CHECK ((key_rate_limit IS NULL) = (key_rate_period_ms IS NULL));

ALTER TABLE queues ADD COLUMN flow_limited boolean GENERATED ALWAYS AS (
    paused OR max_running IS NOT NULL OR key_max_running IS NOT NULL
    OR rate_limit IS NOT NULL OR key_rate_limit IS NOT NULL
) STORED;

-- The key a job's per-key limits count it under; NULL: none (only the queue-wide limits apply).
ALTER TABLE jobs ADD COLUMN concurrency_key text NULL
    CONSTRAINT jobs_concurrency_key_length CHECK (length(concurrency_key) BETWEEN 1 AND 255);

-- The held jobs of a queue, by key: the limited claim counts them (queue-wide and per key).
-- Claims and starts add an entry to it (two per job, in every queue); finished jobs leave it.
CREATE INDEX jobs_held_queue_key_idx ON jobs (queue_name, concurrency_key)
    WHERE status IN ('ASSIGNED', 'RUNNING');

-- When the jobs of rate-limited queues were claimed: the sliding window the limited claim counts.
-- One row per claimed job, written by the claim that took it and pruned by later claims of the
-- queue once older than the queue's longest period, so it holds about one period's starts.
CREATE TABLE queue_starts (
    queue_name      text        NOT NULL REFERENCES queues (name) ON DELETE CASCADE,
    concurrency_key text        NULL,
    started_at      timestamptz NOT NULL
);
CREATE INDEX queue_starts_window_idx ON queue_starts (queue_name, started_at);
