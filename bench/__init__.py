"""jobq's benchmark: the real jq-server and jq-worker on a fresh PostgreSQL (bench.postgres)."""
