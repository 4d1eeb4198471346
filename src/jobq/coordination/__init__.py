"""Coordination between jq-server replicas beyond PostgreSQL: optional, advisory claim locks.

PostgreSQL stays the only guard of correctness (SPEC §6); what lives here may be lost or
unreachable without a job being lost or run twice.
"""
