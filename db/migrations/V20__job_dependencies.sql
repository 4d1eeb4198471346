-- Job dependencies (issue 18): a job submitted with depends_on waits, in the new status
-- WAITING, until every job it names is DONE; a prerequisite that is DEAD_LETTERED dead-letters
-- it (DEPENDENCY_FAILED). The claim takes only PENDING jobs, so a WAITING job is never claimed.
--
-- ADD VALUE goes last in the enum's order; the value cannot be used in the transaction that
-- adds it (each migration is one), which is why the index below names it by that order.
ALTER TYPE job_status ADD VALUE IF NOT EXISTS 'WAITING';

-- One row per edge: job_id runs after depends_on. A prerequisite must exist when its dependant
-- is submitted, so every edge points to an earlier job and no cycle can be written. Edges are
-- kept after they are resolved: they are a job's record of what it waited for (Job.depends_on).
-- No foreign keys, as for job_events (V16): the statements that write a job write its edges,
-- and queue_delete deletes both.
CREATE TABLE job_dependencies (
    job_id     uuid NOT NULL,
    depends_on uuid NOT NULL,
    PRIMARY KEY (job_id, depends_on),
    CHECK (job_id <> depends_on)
);
-- The resolver's question when a job ends: which jobs wait for it.
CREATE INDEX job_dependencies_depends_on_idx ON job_dependencies (depends_on);

-- Set on a job the first time a dependant names it (by the dependant's submit, which locks the
-- row): the statements that end a job return it, and only then is the resolver woken, so jobs
-- nobody waits for cost the resolver nothing. A column with a constant default is added
-- without rewriting the table.
ALTER TABLE jobs ADD COLUMN has_dependants boolean NOT NULL DEFAULT false;

-- The resolver's periodic sweep reads the WAITING jobs only (none, when dependencies are not
-- used: the index stays empty and costs the hot path nothing). WAITING is the value after
-- DEAD_LETTERED: 'WAITING' itself is unusable here (see above) and a cast to text is not
-- immutable. Statuses added after it later would only make the index less selective: the
-- sweep (dependants_resolve) also tests status = 'WAITING'.
CREATE INDEX jobs_waiting_idx ON jobs (job_id) WHERE status > 'DEAD_LETTERED';
