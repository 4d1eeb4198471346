-- Named queries over the audit trail (audit_events, append-only).

-- name: audit_event_insert
-- Append one audit record; returns it with its id and time.
INSERT INTO audit_events (actor, action, target, outcome, detail)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, occurred_at, actor, action, target, outcome, detail;

-- name: audit_events_list
-- A page of audit records, newest first, optionally filtered by action and actor. Keyset
-- pagination on (occurred_at, id) as jobs_list does; with a filter it reads the matching
-- (action|actor, occurred_at DESC, id DESC) index.
SELECT id, occurred_at, actor, action, target, outcome, detail
FROM audit_events
WHERE ($1::text IS NULL OR action = $1)
  AND ($2::text IS NULL OR actor = $2)
  AND ($3::timestamptz IS NULL OR (occurred_at, id) < ($3, $4::bigint))
ORDER BY occurred_at DESC, id DESC
LIMIT $5;
