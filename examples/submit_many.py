"""Submit a hundred jobs in SubmitJobs batches, then wait for them all with a few WatchJobs calls.

PYTHONPATH=examples jq-worker --import tasks     # a worker that trusts examples/tasks.py
python examples/submit_many.py                   # prints 9900 (the sum of 2*i)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import add

import jobq


async def main() -> None:
    async with jobq.AsyncClient() as client:
        jobs = await client.submit_many(add.job(i, i) for i in range(100))
        results = await asyncio.gather(*(job.result(timeout=120) for job in jobs))
        print(sum(results))


if __name__ == "__main__":
    asyncio.run(main())
