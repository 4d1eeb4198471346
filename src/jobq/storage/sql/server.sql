-- Named queries about the PostgreSQL server and the session rather than jobq's tables: start-up
-- checks, the database clock and liveness probes. None of them reads jobq's schema, so they
-- work before migrations have run.

-- name: db_ping
-- The cheapest round trip that proves the server answers: /readyz and the heartbeat monitor's
-- probe (which must not count a dead database as silence from every worker).
SELECT 1;

-- name: db_now
-- The database clock: the `now` of decisions made in Python when the caller passed none, so
-- they agree with the now() the statements write into the rows.
SELECT now();

-- name: server_version
-- What the server says it is (not the connection's startup report, which a pooler may supply).
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS number;

-- name: backend_pid
-- The server process serving this session: the pooler check compares it across transactions.
SELECT pg_backend_pid();

-- name: role_may_create_databases
-- The session's role and whether it may create the database it was asked to use (run on the
-- server's maintenance database, when that one does not exist yet).
SELECT current_user AS role, rolsuper OR rolcreatedb AS may_create
FROM pg_roles WHERE rolname = current_user;
