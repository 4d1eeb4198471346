"""Handlers that take down the jq-worker running them, for the poison-job tests
(`jq-worker --import support.poison_tasks`)."""

from __future__ import annotations

import os
import signal
import time


def kill_my_worker(delay_s: float = 0.5) -> None:
    """SIGKILL the worker process running this handler, after `delay_s` (time enough for its
    start acknowledgement to reach the server, so the job dies RUNNING, not ASSIGNED)."""
    time.sleep(delay_s)
    os.kill(os.getpid(), signal.SIGKILL)
