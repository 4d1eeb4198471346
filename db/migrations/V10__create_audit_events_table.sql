-- audit_events: who did what to which object, and how it ended. One row per admin action
-- (queue create/delete, worker drain/shutdown, job cancel/retry), refusals included; read by
-- ListAuditEvents (`jq-ctl audit list`). Append-only: nothing updates or deletes these rows,
-- and they do not reference the objects they name, so deleting a queue keeps its history here.
CREATE TABLE audit_events (
    id          bigserial   PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    -- The caller as the server authenticated it: `token:NAME`, `cert:CN` or `anonymous`.
    actor       text        NOT NULL CHECK (actor <> ''),
    -- A stable name: `queue.create`, `queue.delete`, `worker.drain`, `job.cancel` ...
    action      text        NOT NULL CHECK (action <> ''),
    -- What it acted on: a queue name, a worker id or a job id.
    target      text        NOT NULL,
    -- `ok`, or the refusal: the status code's name and the message the caller got.
    outcome     text        NOT NULL CHECK (outcome <> ''),
    detail      text        NULL
);

-- Listings are newest first and keyset-paginated on (occurred_at, id): each page is a short
-- index range scan however deep it is. The filtered listings (by action, by actor) get one each,
-- so a filter never walks the rows of other actions or callers.
CREATE INDEX audit_events_newest_idx ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_action_newest_idx ON audit_events (action, occurred_at DESC, id DESC);
CREATE INDEX audit_events_actor_newest_idx ON audit_events (actor, occurred_at DESC, id DESC);
