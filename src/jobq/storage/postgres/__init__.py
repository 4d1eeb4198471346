"""The PostgreSQL implementations of the storage protocols (asyncpg, named queries)."""
