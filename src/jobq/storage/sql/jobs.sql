-- Named queries over jobs. Every statement that changes a job's status inserts its job_events
-- rows in the same statement (a data-modifying CTE), so the two can never disagree and each
-- batch costs one round trip.
--
-- Reports (starts, results, failures, releases) are fenced by the whole token of a claim:
-- (job_id, attempt, worker_id, claim_id). The attempt alone does not suffice: a claim commits
-- with synchronous_commit = off, and one lost in a database crash or failover is made again
-- with the same attempt number (perhaps for the same worker id), so only the random claim_id
-- tells the earlier run's reports from the current one's. A NULL claim id never matches.
-- A jq-worker from before claim ids presents none, so its reports would all be refused; it is
-- never given a claim in the first place (StreamJobs refuses a stream without an incarnation),
-- rather than accepting "empty on both sides": that would need claims without claim ids for
-- such workers, which is exactly the lost-claim hole the claim id closes. Upgrade workers with
-- or before servers (a new jq-worker works with an old jq-server, which ignores the fields).
--
-- Reports find their jobs by primary key only: a MATERIALIZED sub-select reads the rows
-- `WHERE job_id = ANY(ids)`, keeps those whose attempt, worker and claim match, locks them and
-- reads their status; the status is checked afterwards, outside it. Two plans this rules out,
-- both seen:
--  * with a status condition inside, the planner could use jobs_worker_id_idx (partial on
--    ASSIGNED/RUNNING), and with statistics gathered while no job was held (a backlog submitted
--    before its workers started) it did: one search of that index per reported job, each
--    walking all of the worker's held jobs. Measured during a 20,000-job drain (bench/,
--    auto_explain): 85 completions took 32 ms and touched 1,097 buffers; the completions took
--    3.0-4.7 s of PostgreSQL time in all, against 1.0 s by primary key;
--  * with only the join to the reported ids, it preferred a hash join over a sequential scan of
--    the whole table (20,000 rows read for 150 reports).
-- tests/integration/storage/test_report_plans.py checks the plans.
--
-- jobs is partitioned by day of job_id (V24). `job_id = ANY($1)` with an array parameter cannot
-- prune partitions in a generic plan (PostgreSQL prunes by an array only when it is a
-- constant), so asyncpg's prepared statements would probe every day's primary key for every
-- id. Each such statement also says `job_id BETWEEN jobq_ids_low(ids) AND jobq_ids_high(ids)`
-- (the batch's smallest and largest id): a range over functions of parameters, which the
-- executor prunes by at start-up, generic plan or not, to the days the batch spans (usually
-- one). The claim's ids come from its own CTEs: pruned when the Append first runs.
-- Measured (PostgreSQL 18, 39 partitions of 20,000 jobs, 100 ids, generic plan): 0.68 ms
-- and every partition's index probed without the range, 0.32 ms and one partition with it.

-- name: jobs_insert
-- Insert a batch of jobs and their SUBMITTED events, except those whose idempotency key a job
-- already holds; notify listeners if $8 and a job was inserted. Returns one row per job of the
-- batch: an inserted job (held_key NULL) or, for a key already held, its holder (held_key set).
-- max_retries falls back to the queue's; an unknown queue leaves it NULL (or breaks the foreign
-- key), so the whole batch fails and the caller reports which queue is missing.
--
-- Idempotency keys (V13, V24): the primary key of job_idempotency_keys decides, not a read
-- before the write (jobs is partitioned by job_id since V24, and a unique index of a
-- partitioned table must contain job_id, so the key has a table of its own). `keyed` claims
-- the batch's keys first; ON CONFLICT names that key as the arbiter, so only a held key diverts
-- a job, and only the jobs whose key row is theirs (or that have no key) are inserted (a clash
-- of job ids still fails loudly). DO UPDATE, with an update that changes nothing, is what
-- returns the holder, whoever committed it and when: a holder inserted by a transaction still
-- in flight is waited for, then returned if it committed (or our job inserted if it rolled
-- back), which no read of the statement's snapshot could do; the key row carries the holder's
-- created_at, so the holder is answered without reading jobs. So one statement settles every
-- job, in its own transaction (a keyed batch is one round trip, as an unkeyed one, and all or
-- none), and the holder's key row is locked only until that commit. Its update is a new
-- version of a key row, on the rare submit of a held key only. jobs_keys_insert (V24's
-- trigger) then finds the batch's keys already claimed by the batch's own jobs: a no-op. The
-- caller passes each key at most once per batch (it resolves repeats itself): a second one
-- would make the statement affect one row twice, an error. A returned key row is ours when
-- its job_id is one we sent (held is the rest). Keys are claimed in key order: two batches
-- taking the same keys in different orders would each wait for a key the other holds (a
-- deadlock, seen with two 100-key batches in opposite orders); in one order, one of them waits
-- for the other. A batch without keys claims nothing. Measured (before V24): a 32-job keyed
-- batch took 2.8 ms as DO NOTHING plus a read of the holders in a transaction (three round
-- trips), 1.6 ms as one statement.
-- $9 is true for a job written outside jq-server (a transactional enqueue): its id goes into
-- enqueued_jobs for a server to announce (V14), and the notification says 'enqueued' so the
-- servers take it out at once. jq-server's own submits pass false: the one-time filter skips
-- the outbox insert, and the write itself announces them. $10 holds each job's correlation id
-- (NULL: none), which Kafka events carry in their headers (V15). $11 holds each job's
-- concurrency key (NULL: none; V17). $12 holds each job's W3C trace context (NULL: none; V21).
-- $13 is the batch's shard (V25): every job of the batch is of that shard (the caller splits a
-- batch by shard, jobq.domain.shards), and so are its events and outbox rows.
WITH input AS (
    SELECT *
    FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::smallint[], $5::smallint[],
                $6::timestamptz[], $7::text[], $10::text[], $11::text[], $12::text[])
        AS t(job_id, queue_name, payload, priority, max_retries, not_before, idempotency_key,
             correlation_id, concurrency_key, trace_context)
), keyed AS (
    INSERT INTO job_idempotency_keys AS k (shard, idempotency_key, job_id, created_at)
    SELECT $13::smallint, i.idempotency_key, i.job_id, now()
    FROM input i WHERE i.idempotency_key IS NOT NULL
    ORDER BY i.idempotency_key
    ON CONFLICT (shard, idempotency_key) DO UPDATE SET idempotency_key = k.idempotency_key
    RETURNING k.job_id, k.created_at, k.idempotency_key
), inserted AS MATERIALIZED (
    INSERT INTO jobs AS j (job_id, queue_name, payload, priority, max_retries, not_before,
                           idempotency_key, correlation_id, concurrency_key, trace_context,
                           shard)
    SELECT i.job_id, i.queue_name, i.payload, i.priority, COALESCE(i.max_retries, q.max_retries),
           i.not_before, i.idempotency_key, i.correlation_id, i.concurrency_key, i.trace_context,
           $13::smallint
    FROM input i LEFT JOIN queues q ON q.name = i.queue_name
    WHERE i.idempotency_key IS NULL OR i.job_id IN (SELECT k.job_id FROM keyed k)
    RETURNING j.job_id, j.created_at, NULL::text AS held_key
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, reason, occurred_at, shard)
    SELECT job_id, NULL, 'PENDING', 'SUBMITTED', created_at, $13::smallint FROM inserted
), outbox AS (
    INSERT INTO enqueued_jobs (job_id, shard)
    SELECT job_id, $13::smallint FROM inserted WHERE $9::boolean
)
-- The notification (delivered at commit) wakes the dispatchers of the other replicas; the
-- one-row sub-select runs pg_notify once per statement, not once per job, and only when asked
-- and something was inserted (CASE evaluates its branch only when the condition holds). The
-- channel is per schema, named by the rule of jobq.storage.pool.notify_channel, so
-- installations in other schemas of the database are not woken: `jobq_jobs` for public, else
-- `jobq_jobs_<schema>`.
SELECT i.job_id, i.created_at, i.held_key
FROM inserted i,
     (SELECT CASE WHEN $8::boolean AND EXISTS (SELECT FROM inserted) THEN pg_notify(
         CASE current_schema() WHEN 'public' THEN 'jobq_jobs' ELSE 'jobq_jobs_' || current_schema() END,
         CASE WHEN $9::boolean THEN 'enqueued' ELSE '' END) END) AS n
UNION ALL
SELECT k.job_id, k.created_at, k.idempotency_key
FROM keyed k WHERE k.job_id NOT IN (SELECT job_id FROM input);

-- name: jobs_insert_by_id
-- jobs_insert for jobs whose clients chose their ids and gave no idempotency key (the Python
-- SDK's submits): the id is the job's identity, so the primary key arbitrates, and no key is
-- written (a key costs its unique index about 5 µs per job, measured on the bare statement: 24,400
-- against 27,700 jobs/s on one connection). A job whose id a job already has is that job,
-- submitted before by a retry whose first attempt committed: DO UPDATE, with an update that
-- changes nothing (HOT), returns it, even one committed while the statement waited for it.
-- DO UPDATE's SET passes the id through jobq_note_existing (V24), which notes it in this
-- transaction's setting jobq.existing_ids before RETURNING reads it: a row this statement
-- inserted is not noted. (Before V24 xmax told them apart, PostgreSQL's own upsert idiom, but
-- RETURNING cannot read a system column of a partitioned table; PostgreSQL 18's RETURNING
-- old.* would, and 15 to 17 must work too.) Comparing created_at with now() did not: two
-- transactions that start in the same microsecond have the same now(), and a race test saw
-- both call one job theirs. Only rows inserted here get a
-- SUBMITTED event. Rows are inserted in id order, for the reason keys are in jobs_insert. The
-- caller sends each id once. $1..$6 as jobs_insert, $7 and $8 as its $8 and $9 (no keys), $9
-- as its $10, $10 as its $11, $11 as its $12, $12 as its $13 (the batch's shard); returns
-- (job_id, created_at, existing) for every job sent.
WITH input AS (
    SELECT *
    FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::smallint[], $5::smallint[],
                $6::timestamptz[], $9::text[], $10::text[], $11::text[])
        AS t(job_id, queue_name, payload, priority, max_retries, not_before, correlation_id,
             concurrency_key, trace_context)
), written AS (
    INSERT INTO jobs AS j (job_id, queue_name, payload, priority, max_retries, not_before,
                           correlation_id, concurrency_key, trace_context, shard)
    SELECT i.job_id, i.queue_name, i.payload, i.priority, COALESCE(i.max_retries, q.max_retries),
           i.not_before, i.correlation_id, i.concurrency_key, i.trace_context, $12::smallint
    FROM input i LEFT JOIN queues q ON q.name = i.queue_name
    ORDER BY i.job_id
    ON CONFLICT (job_id) DO UPDATE SET job_id = jobq_note_existing(j.job_id)
    RETURNING j.job_id, j.created_at,
              strpos(coalesce(current_setting('jobq.existing_ids', true), ''),
                     j.job_id::text) = 0 AS fresh
), inserted AS MATERIALIZED (
    SELECT job_id, created_at FROM written WHERE fresh
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, reason, occurred_at, shard)
    SELECT job_id, NULL, 'PENDING', 'SUBMITTED', created_at, $12::smallint FROM inserted
), outbox AS (
    INSERT INTO enqueued_jobs (job_id, shard)
    SELECT job_id, $12::smallint FROM inserted WHERE $8::boolean
)
SELECT w.job_id, w.created_at, NOT w.fresh AS existing
FROM written w,
     (SELECT CASE WHEN $7::boolean AND EXISTS (SELECT FROM inserted) THEN pg_notify(
         CASE current_schema() WHEN 'public' THEN 'jobq_jobs' ELSE 'jobq_jobs_' || current_schema() END,
         CASE WHEN $8::boolean THEN 'enqueued' ELSE '' END) END) AS n;

-- name: job_exists
-- 1 when the job exists, else no row: tells a job without history from an unknown one.
SELECT 1 FROM jobs WHERE job_id = $1;

-- name: job_get
-- One job by id.
SELECT job_id, queue_name, payload, status, priority, max_retries, retry_count, attempt, worker_id,
       result, error_message, not_before, created_at, started_at, completed_at, updated_at,
       interruptions, concurrency_key, schedule_name, progress, progress_message,
       progress_updated_at, cancel_requested_at, cancelled_by,
       ARRAY(SELECT d.depends_on FROM job_dependencies d WHERE d.job_id = jobs.job_id
             ORDER BY d.depends_on) AS depends_on
FROM jobs WHERE job_id = $1;

-- name: jobs_list
-- A page of jobs, newest first, optionally filtered by queue and status. Keyset pagination on
-- (created_at, job_id): a page costs the same however deep it is, unlike OFFSET.
SELECT job_id, queue_name, payload, status, priority, max_retries, retry_count, attempt, worker_id,
       result, error_message, not_before, created_at, started_at, completed_at, updated_at,
       interruptions, concurrency_key, schedule_name, progress, progress_message,
       progress_updated_at, cancel_requested_at, cancelled_by,
       -- one probe of job_dependencies' primary key per listed job
       ARRAY(SELECT d.depends_on FROM job_dependencies d WHERE d.job_id = jobs.job_id
             ORDER BY d.depends_on) AS depends_on
FROM jobs
WHERE ($1::text IS NULL OR queue_name = $1)
  AND ($2::job_status IS NULL OR status = $2)
  AND ($3::timestamptz IS NULL OR (created_at, job_id) < ($3, $4::uuid))
ORDER BY created_at DESC, job_id DESC
LIMIT $5;

-- name: job_retry_manual
-- FAILED or DEAD_LETTERED → PENDING by hand (MANUAL_RETRY): fresh retry and interruption
-- budgets (an operator retrying a POISON job has fixed what killed its workers), runnable now.
WITH updated AS (
    UPDATE jobs j
    SET status = 'PENDING', retry_count = 0, interruptions = 0, not_before = now(),
        completed_at = NULL, worker_id = NULL, assigned_at = NULL, result = NULL,
        updated_at = now(), cancel_requested_at = NULL, cancelled_by = NULL, progress = NULL,
        progress_message = NULL, progress_updated_at = NULL
    FROM (SELECT job_id, status FROM jobs WHERE job_id = $1 FOR UPDATE) old
    WHERE j.job_id = old.job_id AND old.status IN ('FAILED', 'DEAD_LETTERED')
    RETURNING j.*, old.status AS from_status
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, reason, attempt, shard)
    SELECT job_id, from_status, 'PENDING', 'MANUAL_RETRY', attempt, shard FROM updated
)
SELECT job_id, queue_name, payload, status, priority, max_retries, retry_count, attempt, worker_id,
       result, error_message, not_before, created_at, started_at, completed_at, updated_at,
       interruptions, concurrency_key, from_status
FROM updated;

-- name: job_insert_assigned
-- One new job, written straight to a worker of this replica that has a free slot (issue 17):
-- inserted ASSIGNED to worker $8 (whose stream belongs to its process $9), with its SUBMITTED
-- and ASSIGNED events, in one statement and one commit, instead of an insert, a commit, a wake
-- of the dispatcher and a claim (jobs_claim) with a commit of its own. It saves a round trip
-- and two process wake-ups between submit and start: `make bench`'s pickup scenario (300
-- jobs at 50/s into an idle worker), three pairs back to back on one server, took p50 2.96,
-- 2.91 and 3.44 ms with it against 3.98, 3.97 and 3.87 without, p99 4.3 to 5.1 against 5.7 to
-- 6.0. The job is written as jobs_claim would leave it (attempt 1, a new
-- claim_id, assigned_at, updated_at the statement's start), and only when jobs_claim would
-- have given it to that worker at once:
-- - the worker is ONLINE and of incarnation $9, its row locked FOR KEY SHARE until commit (see
--   jobs_claim's holder: a registration or deregistration waits for this statement, or this
--   one finds the incarnation changed);
-- - no job of the queue is PENDING, due or not: claim order (priority, then age) would put
--   any of them first, so then the job is written PENDING and waits its turn like any other.
--   One probe of ready_jobs_claim_idx (V22; its first entry for the queue, if any), not a
--   walk past jobs that are not due yet. It is a scalar sub-select in the index's order with
--   LIMIT 1, not NOT EXISTS: PostgreSQL drops the ORDER BY and LIMIT of an EXISTS, and its
--   generic plan then read the whole table (it expects the queue's rows anywhere in a
--   sequential scan, so the first one found at once): 1.6 ms with 27,000 jobs of another
--   queue pending, a pickup 2.5 ms slower in `make bench`. In the index's order, reading the
--   index is the cheapest plan whatever the estimate.
-- - the queue is not paused or limited (queues.flow_limited): its claims count what is held
--   and started under the queue's lock (queue_flow.sql), which this statement does not take.
-- Otherwise it is inserted PENDING, as jobs_insert would (the caller wakes the dispatcher).
-- ON CONFLICT DO NOTHING: a job id or idempotency key already taken inserts nothing and
-- returns no row (the key is claimed in job_idempotency_keys first, V24; a job is written
-- only if it got its key or has none); the caller then submits the job through jobs_insert or jobs_insert_by_id,
-- which say what holds it. $1 id, $2 queue, $3 payload, $4 priority, $5 max_retries (NULL: the
-- queue's), $6 idempotency key, $7 correlation id, $10 concurrency key, $11 trace context (V21),
-- $12 the job's shard (V25). An unknown queue breaks max_retries' NOT NULL (or the queue's
-- foreign key), as in jobs_insert.
WITH holder AS MATERIALIZED (
    SELECT w.worker_id
    FROM workers w
    WHERE w.worker_id = $8 AND w.status = 'ONLINE' AND w.incarnation = $9::uuid
    FOR KEY SHARE
), verdict AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM holder)
           AND (SELECT r.job_id FROM ready_jobs r
                WHERE r.shard = $12::smallint AND r.queue_name = $2
                ORDER BY r.priority DESC, r.created_at, r.job_id
                LIMIT 1) IS NULL
           AND NOT COALESCE((SELECT q.flow_limited FROM queues q WHERE q.name = $2), true)
           AS assign
), keyed AS MATERIALIZED (
    INSERT INTO job_idempotency_keys (shard, idempotency_key, job_id, created_at)
    SELECT $12::smallint, $6, $1, now() WHERE $6::text IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING job_id
), written AS (
    INSERT INTO jobs AS j (job_id, queue_name, payload, priority, max_retries, idempotency_key,
                           correlation_id, status, worker_id, attempt, claim_id, assigned_at,
                           updated_at, concurrency_key, trace_context, shard)
    SELECT $1, $2, $3, $4, COALESCE($5::smallint, q.max_retries), $6, $7,
           CASE WHEN v.assign THEN 'ASSIGNED' ELSE 'PENDING' END::job_status,
           CASE WHEN v.assign THEN $8::uuid END,
           CASE WHEN v.assign THEN 1 ELSE 0 END,
           CASE WHEN v.assign THEN gen_random_uuid() END,
           CASE WHEN v.assign THEN now() END,
           CASE WHEN v.assign THEN statement_timestamp() ELSE now() END,
           $10::text, $11::text, $12::smallint
    FROM verdict v LEFT JOIN queues q ON q.name = $2
    WHERE $6::text IS NULL OR EXISTS (SELECT FROM keyed)
    ON CONFLICT DO NOTHING
    RETURNING j.job_id, j.queue_name, j.payload, j.status, j.priority, j.max_retries,
              j.retry_count, j.attempt, j.worker_id, j.result, j.error_message, j.not_before,
              j.created_at, j.started_at, j.completed_at, j.updated_at, j.interruptions,
              j.claim_id, j.trace_context
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, attempt, claim_id,
                            occurred_at, shard)
    SELECT job_id, NULL::job_status, 'PENDING'::job_status, NULL::uuid, 'SUBMITTED', NULL::integer,
           NULL::uuid, created_at, $12::smallint
    FROM written
    UNION ALL
    SELECT job_id, 'PENDING'::job_status, 'ASSIGNED'::job_status, worker_id, 'ASSIGNED', attempt,
           claim_id, updated_at, $12::smallint
    FROM written WHERE status = 'ASSIGNED'

)
SELECT w.*, q.ttl_seconds
FROM written w JOIN queues q ON q.name = w.queue_name;

-- name: jobs_claim
-- updated_at is the claim statement's own start (statement_timestamp(), not now()): a claim runs
-- in a transaction begun before it (SET LOCAL synchronous_commit), and the lifecycle stream
-- orders one job's changes by that time (server/publication_order.py), which must follow the
-- commit of the change that made the job PENDING. The transitions' occurred_at is the same.
-- Claim up to $3 eligible jobs of the queues $2 for worker $1, whose stream belongs to the
-- process of incarnation $4, of those queues that are not paused or limited (flow_limited:
-- their jobs are claimed by the limited claim, queue_flow.sql; one primary-key probe of queues
-- per queue here): PENDING → ASSIGNED, attempt + 1, a new random claim_id; of them at
-- most one suspect (a job interrupted twice or more), and none while the worker holds one.
-- The ready table (V22). Candidates are read from ready_jobs, one row per PENDING job, not from
-- jobs: no index of jobs names its status, so a job's updates are HOT. Three steps, in this
-- order: the chosen ready rows are locked FOR UPDATE SKIP LOCKED; then their jobs rows, FOR
-- UPDATE SKIP LOCKED too (`got`), with the status guard; then jobs is updated, again with the
-- guard (EvalPlanQual re-checks it on a row changed since the snapshot), and the update's
-- trigger (jobs_side_rows_update) deletes the ready rows of the jobs claimed, rows this
-- statement holds already. The claim never waits for a jobs row while it holds ready rows: a
-- cancel, a TTL expiry, a queue's deletion and every manual path lock the jobs row first and
-- then, through the trigger, delete the ready row, so a claim that waited would deadlock with
-- them. A job whose ready row the claim locked but whose jobs row it skipped keeps its ready
-- row (it is free again at commit), and the claim takes fewer jobs this time.
-- Each queue's head is read from ready_jobs_claim_idx in claim order (the LATERAL
-- sub-select, one ordered index range per queue, stopping at the limit), and the heads are
-- merged in claim order. The candidates CTE is MATERIALIZED so that the LIMIT and SKIP LOCKED
-- apply once, before the join (an inlined sub-select could be re-planned as a join that locks
-- more rows than it returns). Concurrent claimers skip each other's locked rows instead of
-- queueing behind them. A worker serving several queues locks up to $3 rows of each while the
-- statement runs and assigns the best $3; the others are free again at its commit. A worker
-- that is not ONLINE (declared lost, draining, deregistered — possibly by another replica) gets
-- nothing, even if this replica still holds its stream; nor does a stream of a superseded
-- process (another incarnation registered since, possibly on another replica). The holder CTE
-- locks the worker row FOR KEY SHARE until commit (the weakest lock: heartbeats are not held
-- up; the foreign key check of `worker_id = $1` takes it anyway): a registration of a new
-- process or a deregistration locks the row FOR UPDATE before it releases the jobs the worker
-- holds, so either it waits for this claim and then releases what the claim took, or it
-- commits first and the lock's recheck of the row finds the incarnation (or status) changed
-- and the claim takes nothing. Without it, a claim that read the row just before a restart
-- committed could hand the old process jobs the new one never hears of. The update finds its
-- rows by primary
-- key through `= ANY(ARRAY(...))`: as a join with the candidates, the planner preferred a hash
-- join over a sequential scan of the whole table while it was small (measured: 2.2 of 7.8 ms of
-- a 156-job claim with 20,000 jobs in the table).
--
-- At most one suspect per worker. A job that kills its worker (a poison job) takes down the jobs
-- running beside it; these bystanders were interrupted too, claimed again together with it,
-- and dead-lettered as POISON with it although innocent. A suspect is a job interrupted twice
-- or more, and a worker holding one is given no other. With the default max_interruptions of
-- 3, a bystander can then share a worker with the poison job only while one of the two has
-- fewer than 2 interruptions, so the poison job adds at most 2 to it and it is never
-- dead-lettered, while the poison job, alone among the suspects of its worker, goes on to 4 and
-- is dead-lettered. (The same holds for any max_interruptions of 2 or more; each further poison
-- job can add up to 2 more, so the rule protects bystanders from one at a time.)
-- Suspects are kept out of the ordinary branch by a filter, so its index range, order and limit
-- stay as they were, and are read by the suspect CTE from ready_jobs_suspect_idx, which is
-- empty unless jobs are being interrupted: one empty index probe per queue. It locks at most
-- one suspect per queue, keeps the best, and only if held_jobs_suspect_idx (empty as a rule,
-- unlike the walk of every held job that held_jobs_worker_idx would need) has none of the
-- worker's; chosen then takes the best $3 of both in claim order (a claim of one takes the
-- better of the two heads). A suspect locked but not chosen is free again at commit, as the
-- surplus of a multi-queue claim is. The held check assumes a worker's claims do not run
-- concurrently (one stream, claimed for by one dispatcher); two at once could each take one.
-- Shard (V25): $5 is the shard claimed from; every table but workers is read and written on
-- that shard only (the caller claims from the shards it serves, one statement each). The
-- holder's workers row lives on the worker's home shard: the fence moves to a per-shard row
-- before jobq runs on several nodes (docs/scaling.md, F7).
WITH holder AS MATERIALIZED (
    SELECT w.worker_id
    FROM workers w
    WHERE w.worker_id = $1 AND w.status = 'ONLINE' AND w.incarnation = $4::uuid
    FOR KEY SHARE
), candidates AS MATERIALIZED (
    SELECT head.job_id, head.priority, head.created_at
    FROM (SELECT DISTINCT unnest($2::text[])) AS q(name)
    JOIN queues fl ON fl.name = q.name AND NOT fl.flow_limited  -- limited: queue_flow.sql
    CROSS JOIN LATERAL (
        SELECT r.job_id, r.priority, r.created_at
        FROM ready_jobs r
        WHERE r.shard = $5::smallint
          AND r.queue_name = q.name
          AND NOT r.suspect  -- not a suspect (interrupted twice or more, see above)
          AND (r.not_before IS NULL OR r.not_before <= now())
          AND EXISTS (SELECT 1 FROM holder)
        ORDER BY r.priority DESC, r.created_at, r.job_id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) AS head
    ORDER BY head.priority DESC, head.created_at, head.job_id
    LIMIT $3
), suspect AS MATERIALIZED (
    SELECT head.job_id, head.priority, head.created_at
    FROM (SELECT DISTINCT unnest($2::text[])) AS q(name)
    JOIN queues fl ON fl.name = q.name AND NOT fl.flow_limited  -- limited: queue_flow.sql
    CROSS JOIN LATERAL (
        SELECT r.job_id, r.priority, r.created_at
        FROM ready_jobs r
        WHERE r.shard = $5::smallint
          AND r.queue_name = q.name
          AND r.suspect  -- the predicate of ready_jobs_suspect_idx
          AND (r.not_before IS NULL OR r.not_before <= now())
          AND EXISTS (SELECT 1 FROM holder)
          AND NOT EXISTS (
              SELECT 1 FROM held_jobs h
              WHERE h.shard = $5::smallint AND h.worker_id = $1
                AND h.suspect)  -- the predicate of held_jobs_suspect_idx
        ORDER BY r.priority DESC, r.created_at, r.job_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS head
    ORDER BY head.priority DESC, head.created_at, head.job_id
    LIMIT 1
), chosen AS MATERIALIZED (
    SELECT c.job_id
    FROM (SELECT * FROM candidates UNION ALL SELECT * FROM suspect) AS c
    ORDER BY c.priority DESC, c.created_at, c.job_id
    LIMIT $3
), got AS MATERIALIZED (
    -- the jobs rows of the chosen ready rows, those not locked by anyone else: never waited
    -- for while this statement holds ready rows (see above)
    SELECT j.job_id
    FROM jobs j
    WHERE j.job_id = ANY(ARRAY(SELECT job_id FROM chosen)) AND j.shard = $5::smallint
      AND j.status = 'PENDING'
      AND j.job_id BETWEEN jobq_ids_low(ARRAY(SELECT job_id FROM chosen)) AND jobq_ids_high(ARRAY(SELECT job_id FROM chosen))
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs j
    SET status = 'ASSIGNED', worker_id = $1, attempt = j.attempt + 1,
        claim_id = gen_random_uuid(), assigned_at = now(), updated_at = statement_timestamp()
    WHERE j.job_id = ANY(ARRAY(SELECT job_id FROM got)) AND j.shard = $5::smallint
      AND j.status = 'PENDING'
      AND j.job_id BETWEEN jobq_ids_low(ARRAY(SELECT job_id FROM got)) AND jobq_ids_high(ARRAY(SELECT job_id FROM got))
    RETURNING j.job_id, j.queue_name, j.payload, j.status, j.priority, j.max_retries,
              j.retry_count, j.attempt, j.worker_id, j.result, j.error_message, j.not_before,
              j.created_at, j.started_at, j.completed_at, j.updated_at, j.interruptions,
              j.claim_id, j.trace_context
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, attempt, claim_id,
                            shard)
    SELECT job_id, 'PENDING', 'ASSIGNED', worker_id, 'ASSIGNED', attempt, claim_id,
           $5::smallint
    FROM claimed
), announced AS (
    -- A claimed job that a transactional enqueue wrote and no server announced yet (V14): the
    -- claim takes it out of enqueued_jobs, and `unannounced` tells the caller to publish its
    -- SUBMITTED before its ASSIGNED. A server announcing it right now holds the row: this waits
    -- for its commit and then finds the row gone (that server published SUBMITTED first). The
    -- table is empty as a rule, so this is one probe of an empty index per claim.
    DELETE FROM enqueued_jobs e
    WHERE e.job_id = ANY(ARRAY(SELECT job_id FROM claimed)) AND e.shard = $5::smallint
    RETURNING e.job_id
)
SELECT c.*, q.ttl_seconds, c.job_id IN (SELECT job_id FROM announced) AS unannounced

FROM claimed c JOIN queues q ON q.name = c.queue_name
ORDER BY c.priority DESC, c.created_at, c.job_id;

-- name: jobs_start
-- Start acknowledgements: ASSIGNED → RUNNING for the claims (ids $1, attempts $2, workers $3,
-- claim ids $4) that are still current and held by the presenting worker. Anything else is
-- left alone (stale or duplicate); the caller tells those apart. $5: the shard of every job
-- of the batch (the caller splits a batch by shard; V25).
WITH old AS MATERIALIZED (
    SELECT j.job_id, j.status
    FROM unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[])
        AS a(job_id, attempt, worker_id, claim_id)
    JOIN jobs j ON j.job_id = a.job_id AND j.attempt = a.attempt AND j.worker_id = a.worker_id
               AND j.claim_id = a.claim_id
    WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $5::smallint
      AND j.job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[])
    FOR UPDATE OF j
), started AS (
    UPDATE jobs j
    SET status = 'RUNNING', started_at = now(), updated_at = now()
    FROM old o
    WHERE j.job_id = o.job_id AND o.status = 'ASSIGNED' AND j.shard = $5::smallint
    RETURNING j.job_id, j.attempt, j.worker_id, j.claim_id, j.queue_name, j.created_at,
              j.started_at, 'ASSIGNED'::job_status AS from_status, j.status AS to_status,
              'STARTED' AS reason, statement_timestamp() AS occurred_at
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, attempt, claim_id,
                            shard)
    SELECT job_id, from_status, to_status, worker_id, reason, attempt, claim_id, $5::smallint
    FROM started

)
SELECT * FROM started;

-- name: jobs_complete
-- Successful results for current claims (ids $1, attempts $2, workers $3, claim ids $4, results
-- $5) held by the presenting worker: RUNNING → DONE, or ASSIGNED → RUNNING → DONE when the result arrives
-- before any start acknowledgement (a worker folds the acknowledgement of a job that finished
-- within its reporting window into the result: one row update instead of two). The sub-select
-- locks the rows and yields each one's status before the update; both transitions get their
-- event, the start first. $6: the shard of every job of the batch (V25).
WITH old AS MATERIALIZED (
    SELECT j.job_id, j.status AS from_status, r.result
    FROM unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[], $5::bytea[])
        AS r(job_id, attempt, worker_id, claim_id, result)
    JOIN jobs j ON j.job_id = r.job_id AND j.attempt = r.attempt AND j.worker_id = r.worker_id
               AND j.claim_id = r.claim_id
    WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $6::smallint
      AND j.job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[])
    FOR UPDATE OF j
), done AS (
    UPDATE jobs j
    SET status = 'DONE', result = o.result, error_message = NULL, completed_at = now(),
        updated_at = now(),
        started_at = CASE WHEN o.from_status = 'ASSIGNED' THEN now() ELSE j.started_at END
    FROM old o
    WHERE j.job_id = o.job_id AND o.from_status IN ('ASSIGNED', 'RUNNING') AND j.shard = $6::smallint
    RETURNING j.job_id, j.attempt, j.worker_id, j.claim_id, j.queue_name, j.created_at,
              j.started_at, o.from_status, j.status AS to_status, 'COMPLETED' AS reason,
              statement_timestamp() AS occurred_at, j.has_dependants
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, attempt, claim_id,
                            shard)
    SELECT d.job_id, e.from_status, e.to_status, d.worker_id, e.reason, d.attempt, d.claim_id,
           $6::smallint

    FROM done d
    CROSS JOIN LATERAL (VALUES
        (1, 'ASSIGNED'::job_status, 'RUNNING'::job_status, 'STARTED'),
        (2, 'RUNNING'::job_status, 'DONE'::job_status, 'COMPLETED')
    ) AS e(step, from_status, to_status, reason)
    WHERE e.step = 2 OR d.from_status = 'ASSIGNED'
    ORDER BY d.job_id, e.step
)
SELECT * FROM done;

-- name: jobs_lock_for_failure
-- Lock the current claims (ids $1, attempts $2, workers $3, claim ids $4) in one of the
-- statuses $5, so the retry policy can decide each job's next state before jobs_apply_failure
-- writes it. $6: the shard of every job of the batch (V25).
WITH locked AS MATERIALIZED (
    SELECT j.job_id, j.attempt, j.worker_id, j.claim_id, j.status, j.retry_count, j.max_retries,
           j.cancel_requested_at
    FROM unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[])
        AS a(job_id, attempt, worker_id, claim_id)
    JOIN jobs j ON j.job_id = a.job_id AND j.attempt = a.attempt AND j.worker_id = a.worker_id
               AND j.claim_id = a.claim_id
    WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $6::smallint
      AND j.job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[])
    ORDER BY j.job_id

    FOR UPDATE OF j
)
SELECT * FROM locked WHERE status = ANY($5::job_status[]) ORDER BY job_id;

-- name: jobs_apply_failure
-- Record failed attempts decided by the retry policy, for the claims (ids $1, attempts $2,
-- workers $3, claim ids $4) that are still current and in the status $5 the decision was made
-- for: each job moves to its next state ($8: PENDING with a backoff, or DEAD_LETTERED: retries
-- exhausted or, with retry_count unchanged, refused by the worker) and two events are written
-- per job: the failure itself ($5 → FAILED, reason $11, the error $6 as detail) and the
-- policy's move (FAILED → $8, reason $9); $7 is the new retry_count, $10 the not_before.
-- PgJobStore.jobs_fail runs it after jobs_lock_for_failure in the same transaction, so the
-- guard holds for every row it locked; it is in the UPDATE all the same, so that the statement
-- alone can never move a job that is no longer in the state the policy decided for (another
-- claim, another status). Rows that fail it are left alone and yield nothing.
-- The guard compares each row with its own input (no constant status), so no partial index
-- applies and every job is found by primary key, as in jobs_lock_for_failure. $12: the shard
-- of every job of the batch (V25).
WITH input AS (
    SELECT *
    FROM unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[], $5::job_status[],
                $6::text[], $7::smallint[], $8::job_status[], $9::text[], $10::timestamptz[])
        WITH ORDINALITY AS t(job_id, attempt, worker_id, claim_id, from_status, error_message,
                             retry_count, to_status, reason, not_before, ord)
), updated AS (
    UPDATE jobs j
    SET status = i.to_status, retry_count = i.retry_count,
        -- a job whose cancel was requested ends CANCELLED (decided in PgJobStore.jobs_fail):
        -- its error says who cancelled it; the worker's error stays in the FAILED event
        error_message = CASE WHEN i.reason = 'CANCELLED' THEN 'cancelled by ' || j.cancelled_by
                             ELSE i.error_message END,
        not_before = i.not_before, assigned_at = NULL, updated_at = now(),
        completed_at = CASE WHEN i.to_status = 'DEAD_LETTERED' THEN now() END,
        -- progress belongs to the attempt: a job going back to PENDING starts without any
        progress = CASE WHEN i.to_status = 'PENDING' THEN NULL ELSE j.progress END,
        progress_message = CASE WHEN i.to_status = 'PENDING' THEN NULL
                                ELSE j.progress_message END,
        progress_updated_at = CASE WHEN i.to_status = 'PENDING' THEN NULL
                                   ELSE j.progress_updated_at END
    FROM input i
    WHERE j.job_id = i.job_id AND j.attempt = i.attempt AND j.worker_id = i.worker_id
      AND j.claim_id = i.claim_id AND j.status = i.from_status AND j.shard = $12::smallint
    RETURNING j.job_id, j.attempt, j.claim_id, j.queue_name, j.created_at, j.started_at,
              j.has_dependants
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, detail, attempt,
                            claim_id, shard)
    SELECT e.job_id, e.from_status, e.to_status, i.worker_id, e.reason, e.detail, u.attempt,
           u.claim_id, $12::smallint

    FROM input i
    JOIN updated u ON u.job_id = i.job_id
    CROSS JOIN LATERAL (VALUES
        (1, i.job_id, i.from_status, 'FAILED'::job_status, $11::text, i.error_message),
        (2, i.job_id, 'FAILED'::job_status, i.to_status, i.reason, NULL::text)
    ) AS e(step, job_id, from_status, to_status, reason, detail)
    ORDER BY i.ord, e.step
)
SELECT u.job_id, u.attempt, i.worker_id, u.queue_name, u.created_at, u.started_at,
       i.from_status, i.to_status, i.reason, statement_timestamp() AS occurred_at,
       u.has_dependants
FROM updated u JOIN input i ON i.job_id = u.job_id;

-- name: jobs_release
-- Give claims back without consuming a retry or counting an interruption (WORKER_SHUTDOWN: an
-- orderly shutdown; DELIVERY_FAILED: the stream write failed, the worker never had the job):
-- ASSIGNED/RUNNING → PENDING for current claims (ids $1, attempts $2, workers $3, claim ids
-- $4), reason $5. A job whose cancel was requested (V18) is not given back: it ends
-- DEAD_LETTERED (CANCELLED), the release's reason as the event's detail. $6: the shard of
-- every job of the batch (V25).
WITH old AS MATERIALIZED (
    SELECT j.job_id, j.status, j.worker_id, j.cancel_requested_at IS NOT NULL AS cancel
    FROM unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[])
        AS a(job_id, attempt, worker_id, claim_id)
    JOIN jobs j ON j.job_id = a.job_id AND j.attempt = a.attempt AND j.worker_id = a.worker_id
               AND j.claim_id = a.claim_id
    WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $6::smallint
      AND j.job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[])
    FOR UPDATE OF j
), released AS (
    UPDATE jobs j
    SET status = CASE WHEN old.cancel THEN 'DEAD_LETTERED' ELSE 'PENDING' END::job_status,
        worker_id = CASE WHEN old.cancel THEN j.worker_id END, assigned_at = NULL,
        updated_at = now(),
        completed_at = CASE WHEN old.cancel THEN now() END,
        error_message = CASE WHEN old.cancel THEN 'cancelled by ' || j.cancelled_by
                             ELSE j.error_message END,
        progress = CASE WHEN old.cancel THEN j.progress END,
        progress_message = CASE WHEN old.cancel THEN j.progress_message END,
        progress_updated_at = CASE WHEN old.cancel THEN j.progress_updated_at END
    FROM old
    WHERE j.job_id = old.job_id AND old.status IN ('ASSIGNED', 'RUNNING') AND j.shard = $6::smallint
    RETURNING j.job_id, j.attempt, old.worker_id, j.claim_id, j.queue_name, j.created_at,
              j.started_at, old.status AS from_status, j.status AS to_status,
              CASE WHEN old.cancel THEN 'CANCELLED' ELSE $5::text END AS reason,
              statement_timestamp() AS occurred_at
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, detail, attempt,
                            claim_id, shard)
    SELECT job_id, from_status, to_status, worker_id, reason,
           CASE WHEN reason = 'CANCELLED' THEN $5::text END, attempt, claim_id, $6::smallint

    FROM released
)
SELECT * FROM released;

-- name: jobs_interrupt
-- Deliveries that ended without a result from their worker — reason $5 (WORKER_LOST,
-- WORKER_RESTARTED, ASSIGNMENT_TIMEOUT), detail $6 — for the current claims (ids $1, attempts
-- $2, workers $3, claim ids $4) in one of the statuses $7: interruptions + 1, no retry used.
-- A job now interrupted more often than its queue's max_interruptions is dead-lettered
-- (POISON): from RUNNING through FAILED, as failures are (the FAILED event carries the
-- interruption's reason); from ASSIGNED directly (it never started). Any other goes back to
-- PENDING at once, without a backoff: an interruption is detected late already (a heartbeat
-- or assignment timeout) or at a restart, and most interrupted jobs are bystanders of a dead
-- process that should run again soon; a job that kills every worker is stopped by the count,
-- which a backoff would only spread over more time. The events' details carry the count and
-- the limit, so a job's history explains its POISON. Callers are the server's own monitors and
-- the registration of a restarted worker, which read the tokens from the rows.
-- Rows are found by primary key and locked in the MATERIALIZED sub-select as in the reports
-- above; FOR UPDATE OF j locks no queue row (deleting a queue takes its row lock). $8: the
-- shard of every job of the batch (V25).
WITH old AS MATERIALIZED (
    SELECT j.job_id, j.status, j.worker_id, j.claim_id, j.interruptions + 1 AS interruptions,
           q.max_interruptions, j.cancel_requested_at IS NOT NULL AS cancel, j.cancelled_by
    FROM unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[])
        AS a(job_id, attempt, worker_id, claim_id)
    JOIN jobs j ON j.job_id = a.job_id AND j.attempt = a.attempt AND j.worker_id = a.worker_id
               AND j.claim_id = a.claim_id
    JOIN queues q ON q.name = j.queue_name
    WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $8::smallint
      AND j.job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[])
    ORDER BY j.job_id
    FOR UPDATE OF j
), decided AS (
    -- A job whose cancel was requested (V18) is not run again: it ends DEAD_LETTERED
    -- (CANCELLED), which wins over POISON; `poison` is false for it.
    SELECT o.*, NOT o.cancel AND o.interruptions > o.max_interruptions AS poison
    FROM old o
    WHERE o.status = ANY($7::job_status[])
), moved AS (
    UPDATE jobs j
    SET status = CASE WHEN d.poison OR d.cancel THEN 'DEAD_LETTERED'
                      ELSE 'PENDING' END::job_status,
        interruptions = d.interruptions,
        worker_id = CASE WHEN d.poison OR d.cancel THEN j.worker_id END,
        assigned_at = NULL,
        updated_at = now(),
        completed_at = CASE WHEN d.poison OR d.cancel THEN now() END,
        error_message = CASE WHEN d.cancel THEN 'cancelled by ' || d.cancelled_by
            WHEN d.poison
            THEN format('poison: interrupted %s times, more than the queue''s max_interruptions'
                        ' of %s (last: %s)', d.interruptions, d.max_interruptions, $5::text)
            ELSE j.error_message END,
        progress = CASE WHEN d.poison OR d.cancel THEN j.progress END,
        progress_message = CASE WHEN d.poison OR d.cancel THEN j.progress_message END,
        progress_updated_at = CASE WHEN d.poison OR d.cancel THEN j.progress_updated_at END
    FROM decided d
    WHERE j.job_id = d.job_id AND j.shard = $8::smallint
    RETURNING j.job_id, j.attempt, d.worker_id, d.claim_id, j.queue_name, j.created_at,
              j.started_at, d.status AS from_status, j.status AS to_status,
              CASE WHEN d.cancel THEN 'CANCELLED' WHEN d.poison THEN 'POISON'
                   ELSE $5::text END AS reason,
              d.interruptions, d.max_interruptions, statement_timestamp() AS occurred_at,
              j.has_dependants
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, detail, attempt,
                            claim_id, shard)
    SELECT m.job_id, e.from_status, e.to_status, m.worker_id, e.reason, e.detail, m.attempt,
           m.claim_id, $8::smallint

    FROM moved m
    CROSS JOIN LATERAL (VALUES
        -- back to PENDING; or, for a poison job, RUNNING → FAILED (the interruption) or
        -- ASSIGNED → DEAD_LETTERED (POISON); or, for a job whose cancel was requested, →
        -- DEAD_LETTERED (CANCELLED) with the interruption as detail
        (1, m.from_status,
            CASE WHEN m.reason = 'CANCELLED' THEN 'DEAD_LETTERED'
                 WHEN m.reason <> 'POISON' THEN 'PENDING'
                 WHEN m.from_status = 'RUNNING' THEN 'FAILED'
                 ELSE 'DEAD_LETTERED' END::job_status,
            CASE WHEN m.reason = 'CANCELLED' THEN 'CANCELLED'
                 WHEN m.reason <> 'POISON' OR m.from_status = 'RUNNING' THEN $5::text
                 ELSE 'POISON' END,
            CASE WHEN m.reason = 'CANCELLED'
                 THEN format('%s (%s)', $6::text, $5::text)
                 WHEN m.reason <> 'POISON'
                 THEN format('%s; interruption %s of %s allowed', $6::text, m.interruptions,
                             m.max_interruptions)
                 WHEN m.from_status = 'RUNNING'
                 THEN format('%s; interruption %s, more than the %s allowed', $6::text,
                             m.interruptions, m.max_interruptions)
                 ELSE format('%s (%s); interruption %s, more than the %s allowed', $6::text,
                             $5::text, m.interruptions, m.max_interruptions) END),
        -- a poison job that was RUNNING: FAILED → DEAD_LETTERED (POISON)
        (2, 'FAILED'::job_status, 'DEAD_LETTERED'::job_status, 'POISON',
            format('interrupted %s times, more than the queue''s max_interruptions of %s',
                   m.interruptions, m.max_interruptions))
    ) AS e(step, from_status, to_status, reason, detail)
    WHERE e.step = 1 OR (m.reason = 'POISON' AND m.from_status = 'RUNNING')
    ORDER BY m.job_id, e.step
)
SELECT * FROM moved;

-- name: jobs_attempt_outcomes
-- The reports a worker already made for claims (ids $1, attempts $2, workers $3, claim ids
-- $4), with the job's current claim and holder: tells an idempotent duplicate (the same report
-- of the same claim was applied before) from a stale report. The claim id is part of the
-- match: a report of a lost claim must not pass as a duplicate of the reissued claim's. $5:
-- the shard of every job asked about (V25); jobs is joined on (shard, job_id).
SELECT e.job_id, e.attempt, e.reason, a.worker_id, j.attempt AS current_attempt,
       j.worker_id AS current_worker, j.claim_id = a.claim_id AS current_claim
FROM job_events e
JOIN unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[])
    AS a(job_id, attempt, worker_id, claim_id)
    ON e.job_id = a.job_id AND e.attempt = a.attempt AND e.worker_id = a.worker_id
   AND e.claim_id = a.claim_id
JOIN jobs j ON j.shard = e.shard AND j.job_id = e.job_id
WHERE e.shard = $5::smallint
  AND e.reason IN ('STARTED', 'COMPLETED', 'FAILED', 'WORKER_SHUTDOWN', 'CANCELLED');


-- name: jobs_held_by_worker
-- The current claims held by a worker (ASSIGNED or RUNNING): found through held_jobs (V22),
-- read from jobs, which is the truth. $2: the shard (V25; the caller asks each shard it
-- serves); jobs is joined on (shard, job_id).
SELECT j.job_id, j.attempt, j.claim_id, j.status
FROM held_jobs h JOIN jobs j ON j.shard = h.shard AND j.job_id = h.job_id
WHERE h.shard = $2::smallint AND h.worker_id = $1

  AND j.worker_id = $1 AND j.status IN ('ASSIGNED', 'RUNNING');

-- name: queues_existing
-- Which of the names $1 are existing queues.
SELECT name FROM queues WHERE name = ANY($1::text[]);

-- name: jobs_count_by_status
-- Jobs per status over all queues (GetSystemStatus).
SELECT status, count(*) AS n FROM jobs GROUP BY status;

-- name: jobs_active_depth
-- Unfinished jobs per queue and status, for the jq_job_queue_depth gauge, and on the PENDING
-- rows the age in seconds of the oldest runnable one (jq_queue_oldest_pending_age_seconds):
-- since it became runnable, its creation or its not_before (a delayed job, a retry's backoff),
-- whichever is later, as the claim sees it; jobs not yet due are not waiting and are left out
-- (NULL when none is due). Counted from the side tables (V22), whose rows are exactly the
-- unfinished jobs: a scan of each, never of jobs and its finished history (until V22 this
-- read the whole of jobs sequentially, 20 ms with 300,000 finished jobs). The three counts
-- are read in one snapshot, so a job moving between them is counted once.
SELECT queue_name, 'PENDING'::job_status AS status, count(*) AS n,
       EXTRACT(EPOCH FROM now() - min(GREATEST(created_at, not_before))
           FILTER (WHERE not_before IS NULL OR not_before <= now()))::float8 AS oldest_s
FROM ready_jobs
GROUP BY queue_name
UNION ALL
SELECT queue_name, status, count(*), NULL::float8
FROM held_jobs
GROUP BY queue_name, status
UNION ALL
SELECT queue_name, 'WAITING'::job_status, count(*), NULL::float8
FROM waiting_jobs
GROUP BY queue_name;
