"""Where job lifecycle events go besides PostgreSQL: the log by default, Kafka when enabled.

Event sinks are never on the critical path (SPEC §12): they publish after the state change
is committed, and their failures are logged and counted, never raised into job processing.
"""
