"""jobq: a distributed job queue over PostgreSQL with a gRPC control plane."""

__version__ = "0.1.0"
