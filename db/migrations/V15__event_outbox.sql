-- The event outbox (SPEC §12, issue 16): every job_events row is published to Kafka, at least
-- once and per job in order, by one jq-server replica at a time.
--
-- Why an outbox table rather than a "published up to job_events.id N" marker: ids come from a
-- sequence when a row is written, but transactions commit in another order, so a marker past N
-- would skip a row with a smaller id committed later (seen with concurrent batches). A row of
-- event_outbox becomes visible exactly when its events commit, whatever their ids, so the
-- publisher reads what is committed, publishes it in id order, and deletes the rows whose
-- events the broker acknowledged: the deletion is the marker, advanced only after the ack. Per job
-- the order holds in any snapshot: a job's later events are written under its row lock, after
-- its earlier ones committed, so they have larger ids and never become visible first.
--
-- The rows are written by a statement-level trigger with a transition table, so every writer
-- is covered (the server's statements, an application's transactional enqueue, a manual retry)
-- without each of them knowing. One row per statement, holding the ids of all the events the
-- statement wrote (a claim of 100 jobs: one row of 100 ids), so the outbox costs an insert and
-- a delete per statement, not per event: with a row per event, PostgreSQL spent about 6 µs
-- more per event on the 20,000-job drain of the benchmark. The ids of one row commit together,
-- so the ordering argument above holds row by row: a job's later event is in a row written
-- (batch_id drawn) after its earlier one committed. The publisher deletes a row once every
-- event in it was acknowledged. The trigger is off (DISABLE) unless a replica runs with
-- kafka.enabled: an installation without Kafka pays nothing and has no outbox growing without a
-- reader (jobq.server.event_capture turns it on and off).
CREATE TABLE event_outbox (
    batch_id  bigserial PRIMARY KEY,
    event_ids bigint[]  NOT NULL
);

CREATE FUNCTION jobq_capture_job_events() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO event_outbox (event_ids)
    SELECT array_agg(id ORDER BY id) FROM captured HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_events_outbox
    AFTER INSERT ON job_events
    REFERENCING NEW TABLE AS captured
    FOR EACH STATEMENT EXECUTE FUNCTION jobq_capture_job_events();

ALTER TABLE job_events DISABLE TRIGGER job_events_outbox;

-- Who publishes: one row per publisher (today only 'kafka'). The replica whose lease has not
-- run out publishes; any other takes the lease over once it has (lease_until in the past), so
-- a killed publisher is replaced within one lease. published counts events acknowledged.
CREATE TABLE event_publishers (
    name        text        PRIMARY KEY,
    owner       text        NULL,
    lease_until timestamptz NOT NULL DEFAULT '-infinity',
    published   bigint      NOT NULL DEFAULT 0
);
INSERT INTO event_publishers (name) VALUES ('kafka');

-- The correlation id of the request that submitted the job (x-correlation-id, or the one the
-- server made for it), carried in every event's headers so a consumer can tie a job's events
-- to the submitter's logs. NULL for jobs enqueued outside any correlation scope.
ALTER TABLE jobs ADD COLUMN correlation_id text NULL;
