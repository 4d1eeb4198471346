"""Structured logging and correlation ids shared by jq-server, jq-worker and jq-ctl (SPEC §10).

structlog is imported here, before any module of this package can, and without rich: structlog
imports rich (and pygments) whenever it is installed, for its development console's tracebacks,
and jq-ctl's tables need rich installed. That costs every program about 3.5 MB of resident
memory for a renderer production never uses (JSON lines; measured with jq-server and jq-worker,
issue 17). `logging_setup` imports rich itself when the console format writes to a terminal.

Hiding rich works by a `None` entry in `sys.modules` while structlog is imported, which another
thread importing rich at that moment would see as "not installed"; so it is done only while this
is the process's one thread (the programs, at start-up), and only if neither is imported yet.
"""

from __future__ import annotations

import sys
import threading


def _import_structlog_without_rich() -> None:
    if "structlog" in sys.modules or "rich" in sys.modules or threading.active_count() > 1:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # "import rich" fails while set
    try:
        import structlog  # noqa: F401
    finally:
        if "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]


_import_structlog_without_rich()
