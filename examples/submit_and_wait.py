"""Submit a job with `.delay()` and wait for its result (pushed by the server, not polled).

    make run                                         # jq-server + jq-worker, in one terminal
    PYTHONPATH=examples jq-worker --import tasks     # or a worker that trusts examples/tasks.py
    python examples/submit_and_wait.py               # prints 5

The connection comes from JQ_CTL_SERVER_ADDR / JQ_CTL_TOKEN ... like jq-ctl (default
localhost:50051), or from jobq.configure(...).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import add

import jobq


def main() -> None:
    job = add.delay(2, 3)
    print(f"submitted {job.id}", file=sys.stderr)
    try:
        print(job.result(timeout=60))
    except jobq.JobDeadLettered as exc:
        sys.exit(f"job failed: {exc}")


if __name__ == "__main__":
    main()
