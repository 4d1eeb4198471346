-- Named queries of the event outbox (db/migrations/V15): what the Kafka publisher reads,
-- deletes once the broker acknowledged, and the lease that makes it one replica at a time.

-- name: event_capture_state
-- Whether job_events rows are copied into event_outbox (the trigger is enabled).
SELECT tgenabled <> 'D' AS capturing
FROM pg_trigger
WHERE tgrelid = 'job_events'::regclass AND tgname = 'job_events_outbox';

-- name: event_capture_enable
-- DDL: takes job_events' SHARE ROW EXCLUSIVE lock for an instant (writers wait, readers don't);
-- run only when the state changes, under a lock_timeout.
ALTER TABLE job_events ENABLE TRIGGER job_events_outbox;

-- name: event_capture_disable
ALTER TABLE job_events DISABLE TRIGGER job_events_outbox;

-- name: event_publisher_lease
-- Take or renew the lease of publisher $1 for owner $2 for $3 seconds: granted when nobody
-- holds it, the owner renews it, or the holder's lease ran out (a replica that died). One row,
-- updated under its row lock, so two replicas never both get it. Returns the previous owner
-- (who held it before, to log a takeover), or no row when someone else holds it. The database
-- clock judges leases, so replicas with skewed clocks agree.
UPDATE event_publishers p
SET owner = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
FROM (SELECT owner AS previous FROM event_publishers WHERE name = $1) o
WHERE p.name = $1 AND (p.owner = $2 OR p.owner IS NULL OR p.lease_until < clock_timestamp())
RETURNING o.previous;

-- name: event_publisher_release
-- Give the lease back (a replica stopping): another replica takes over at its next pass.
-- lease_until keeps when publishing stopped (event_outbox_lag's idle_s).
UPDATE event_publishers SET owner = NULL, lease_until = clock_timestamp()
WHERE name = $1 AND owner = $2;

-- name: event_outbox_read
-- The oldest unpublished events, in id order, with what a message carries, in the types the
-- encoder takes as they are (ids as text, the time as epoch microseconds): the outbox's oldest
-- rows (one per writing statement, V15) up to the one that brings the count to $1 events (at
-- least one row, however large). An event whose job was deleted since (DeleteQueue removes a
-- queue's jobs and their events) comes back with NULL columns: nothing is left to publish.
-- Each event and its job are looked up by primary key (LATERAL ... LIMIT 1 keeps the planner
-- from flattening them into joins): a plain join was planned as hash joins over sequential
-- scans of job_events and jobs, 12 µs per event on 100,000 events and growing with history.
-- job_events is partitioned by day (V23): the outbox row's span of occurred_at prunes each
-- lookup at run time to the partitions it can be in (NULL span, rows from before V23: all).
-- The columns are OutboxEvent's fields, in its order (the store builds it from the row as is).
WITH head AS (
    SELECT batch_id, event_ids, occurred_from, occurred_to,
           sum(cardinality(event_ids)) OVER (ORDER BY batch_id) - cardinality(event_ids) AS before
    FROM event_outbox ORDER BY batch_id LIMIT 1000
), batches AS (
    SELECT batch_id, event_ids, coalesce(occurred_from, '-infinity') AS occurred_from,
           coalesce(occurred_to, 'infinity') AS occurred_to
    FROM head WHERE before < $1
)
SELECT b.batch_id, t.event_id, e.job_id::text AS job_id, j.queue_name,
       e.from_status::text AS from_status, e.to_status::text AS to_status,
       e.worker_id::text AS worker_id, e.reason, e.detail, e.attempt,
       (EXTRACT(EPOCH FROM e.occurred_at) * 1000000)::bigint AS occurred_us, j.correlation_id
FROM batches b
CROSS JOIN LATERAL unnest(b.event_ids) AS t(event_id)
LEFT JOIN LATERAL (
    SELECT job_id, from_status, to_status, worker_id, reason, detail, attempt, occurred_at
    FROM job_events
    WHERE id = t.event_id AND occurred_at BETWEEN b.occurred_from AND b.occurred_to
    LIMIT 1
) e ON true
LEFT JOIN LATERAL (
    SELECT queue_name, correlation_id FROM jobs WHERE job_id = e.job_id LIMIT 1
) j ON true
ORDER BY t.event_id;

-- name: event_outbox_delete
-- Published: every event of these outbox rows ($1) was acknowledged, so they leave the
-- outbox; publisher $2's count grows by their events.
WITH published AS (
    DELETE FROM event_outbox WHERE batch_id = ANY ($1::bigint[]) RETURNING event_ids
)
UPDATE event_publishers
SET published = published + (SELECT coalesce(sum(cardinality(event_ids)), 0) FROM published)
WHERE name = $2;

-- name: event_outbox_lag
-- How far behind publisher $1 is: unpublished events and the age of the oldest (NULL: none).
-- The count reads the whole outbox, which is small unless the broker has been away; the age
-- reads the oldest row's occurred_from (V23; for a row from before, its first event's time).
SELECT (SELECT coalesce(sum(cardinality(event_ids)), 0) FROM event_outbox)::bigint AS events,
       EXTRACT(EPOCH FROM clock_timestamp() - (
           SELECT coalesce(o.occurred_from,
                           (SELECT e.occurred_at FROM job_events e WHERE e.id = o.event_ids[1]))
           FROM event_outbox o ORDER BY o.batch_id LIMIT 1))::float8 AS oldest_s,
       (SELECT published FROM event_publishers WHERE name = $1) AS published,
       (SELECT owner FROM event_publishers
        WHERE name = $1 AND lease_until > clock_timestamp()) AS owner,
       (SELECT CASE WHEN isfinite(lease_until)
                    THEN EXTRACT(EPOCH FROM clock_timestamp() - lease_until)::float8
                    ELSE 'Infinity'::float8 END  -- never held (PostgreSQL 15 cannot subtract)
        FROM event_publishers WHERE name = $1) AS idle_s;
