-- Idempotency keys (SubmitJob's idempotency_key): a submit naming a key that a job already holds
-- creates nothing and returns that job instead.
--
-- How long a key holds: for as long as its job's row exists, whatever the job's status (PENDING,
-- RUNNING, DONE, DEAD_LETTERED, ...). A finished job keeps its key, so a client retrying a submit
-- long after the job ran still gets the same job back rather than running it twice. A key frees
-- up only when its row is deleted: today when its queue is deleted with force (the jobs go with
-- it); if finished jobs are ever purged, the keys of the purged jobs free up with them.
--
-- The unique index below is what enforces the rule, not a read before the write: two submits of
-- one key racing on two replicas cannot both insert (jobs_insert in storage/sql/jobs.sql inserts
-- with ON CONFLICT ... DO NOTHING on this index). It is partial, so jobs without a key (NULL, the
-- common case) are not in it and cost nothing more to insert.
--
-- Adding a nullable column without a default rewrites nothing; building the index reads the
-- table once, under a lock that blocks writes (not reads) while it runs, and finds no key yet.
ALTER TABLE jobs
    ADD COLUMN idempotency_key text NULL
        CONSTRAINT jobs_idempotency_key_length CHECK (char_length(idempotency_key) BETWEEN 1 AND 255);

CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
