"""jobq: a distributed job queue over PostgreSQL with a gRPC control plane."""

__version__ = "0.1.0"

from jobq.task import task  # the public decorator: `@jobq.task`

__all__ = ["__version__", "task"]
