-- job_events becomes natively partitioned by day of occurred_at (issue 21, must-show 2).
--
-- Why: the history only grew, and the only way to shorten it was a DELETE, which at volume
-- cannot keep up (every deleted row is a dead tuple, index churn and WAL). With one partition
-- per day, retention is DETACH + DROP of a whole day: no dead rows, no vacuum, nearly no WAL
-- (what Oban Pro's partitioner, pg_partman and Hatchet do). jq-server's history maintainer
-- (jobq.server.history_maintainer) makes the partitions of the days ahead and drops those past
-- the retention; this migration only converts the table.
--
-- Layout (names predictable, the maintainer recognises them by their bounds, not their names):
-- - job_events_pYYYYMMDD: events of that UTC day, [day, day + 1);
-- - job_events_legacy: the table as it was, every event before the cut-over day (the day
--   after the newest event, at least tomorrow), attached as is: no row is copied;
-- - job_events_default: the DEFAULT partition, so that an insert never fails for want of a
--   partition (a clock far ahead, a maintainer that has not run). The maintainer moves what
--   lands there into a proper partition, because a row in the default partition would block
--   the creation of its day's partition.
--
-- The primary key must contain the partition key, so it is (id, occurred_at). Ids still come
-- from the one sequence (job_events_id_seq, now owned by the parent's column, so dropping the
-- legacy partition never drops it) and so stay unique; every lookup by id alone (the outbox,
-- the dashboard's pages) uses the key's leading column.
--
-- Cost of the conversion: one scan of the old table to find its newest event, one to validate
-- the CHECK constraint (so that ATTACH needs no scan of its own), and one index build: the new
-- key (id, occurred_at) cannot reuse the old one on (id). Everything else is catalogue work.

LOCK TABLE job_events IN ACCESS EXCLUSIVE MODE;

ALTER TABLE job_events RENAME TO job_events_legacy;
ALTER TABLE job_events_legacy RENAME CONSTRAINT job_events_pkey TO job_events_legacy_pkey;
ALTER INDEX job_events_job_id_idx RENAME TO job_events_legacy_job_id_idx;

-- The parent: the same columns, in the same order (INSERT ... SELECT * between partitions and
-- the parent relies on it), the same defaults (id's nextval of the same sequence).
CREATE TABLE job_events (
    LIKE job_events_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS
) PARTITION BY RANGE (occurred_at);
ALTER SEQUENCE job_events_id_seq OWNED BY job_events.id;
ALTER TABLE job_events ADD CONSTRAINT job_events_pkey PRIMARY KEY (id, occurred_at);
CREATE INDEX job_events_job_id_idx ON job_events (job_id);

CREATE TABLE job_events_default PARTITION OF job_events DEFAULT;

DO $$
DECLARE
    -- The cut-over: midnight UTC after the newest event, and at least tomorrow.
    cut timestamptz := greatest(
        date_trunc('day', now(), 'UTC'),
        coalesce(date_trunc('day', (SELECT max(occurred_at) FROM job_events_legacy), 'UTC'),
                 '-infinity')
    ) + interval '1 day';
    day timestamptz;
    name text;
    capturing "char";
BEGIN
    -- The outbox trigger moves from the old table to the parent, keeping its state (enabled
    -- when a replica runs with kafka.enabled). A statement trigger with a transition table on
    -- a partitioned table sees the rows inserted through the parent into any partition.
    SELECT tgenabled INTO capturing FROM pg_trigger
    WHERE tgrelid = 'job_events_legacy'::regclass AND tgname = 'job_events_outbox';
    DROP TRIGGER IF EXISTS job_events_outbox ON job_events_legacy;
    CREATE TRIGGER job_events_outbox
        AFTER INSERT ON job_events
        REFERENCING NEW TABLE AS captured
        FOR EACH STATEMENT EXECUTE FUNCTION jobq_capture_job_events();
    IF coalesce(capturing, 'D') = 'D' THEN
        ALTER TABLE job_events DISABLE TRIGGER job_events_outbox;
    END IF;

    -- Validated here, so ATTACH finds the partition constraint implied and does not scan.
    EXECUTE format('ALTER TABLE job_events_legacy ADD CONSTRAINT job_events_legacy_range'
                   ' CHECK (occurred_at < %L)', cut);
    ALTER TABLE job_events_legacy DROP CONSTRAINT job_events_legacy_pkey;
    EXECUTE format('ALTER TABLE job_events ATTACH PARTITION job_events_legacy'
                   ' FOR VALUES FROM (MINVALUE) TO (%L)', cut);
    ALTER TABLE job_events_legacy DROP CONSTRAINT job_events_legacy_range;
    -- ATTACH adopted the old job_id index and built the (id, occurred_at) one.

    -- A week of days from the cut-over, so a server that has not run its maintainer yet still
    -- writes into daily partitions.
    FOR i IN 0..6 LOOP
        day := cut + make_interval(days => i);
        name := 'job_events_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD');
        EXECUTE format('CREATE TABLE %I PARTITION OF job_events FOR VALUES FROM (%L) TO (%L)',
                       name, day, day + interval '1 day');
    END LOOP;
END
$$;

-- The outbox keeps, per row, the span of occurred_at of its events, so the publisher's lookup
-- of each event by id (event_outbox_read) is pruned at run time to the partitions of that span
-- (usually one) instead of probing the id index of every partition. NULL on rows written
-- before this migration: those look in every partition.
ALTER TABLE event_outbox
    ADD COLUMN occurred_from timestamptz NULL,
    ADD COLUMN occurred_to   timestamptz NULL;

CREATE OR REPLACE FUNCTION jobq_capture_job_events() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO event_outbox (event_ids, occurred_from, occurred_to)
    SELECT array_agg(id ORDER BY id), min(occurred_at), max(occurred_at)
    FROM captured HAVING count(*) > 0;
    RETURN NULL;
END
$$;

-- The history maintainer's lease and what its last run found (read by /metrics of every
-- replica): one row per partitioned history table. Leased like event_publishers (V15): the
-- replica whose lease has not run out maintains, so two never make or drop partitions at once.
CREATE TABLE history_maintenance (
    name         text        PRIMARY KEY,
    owner        text        NULL,
    lease_until  timestamptz NOT NULL DEFAULT '-infinity',
    last_success timestamptz NULL,
    held_back    integer     NOT NULL DEFAULT 0
);
INSERT INTO history_maintenance (name) VALUES ('job_events');
