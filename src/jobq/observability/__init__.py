"""Structured logging and correlation ids shared by jq-server, jq-worker and jq-ctl (SPEC §10)."""
