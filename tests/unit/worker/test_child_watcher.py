"""The worker's loop learns of command jobs' exits through pidfds, not a thread per child."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from jobq.worker.child_watcher import watch_children_with_pidfd


async def _threads_while_a_child_runs() -> tuple[int, int, int]:
    """Threads before, while a child process runs, and its exit status."""
    before = threading.active_count()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(0.3)", stdout=subprocess.DEVNULL
    )
    await asyncio.sleep(0.1)
    during = threading.active_count()
    return before, during, await process.wait()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 chooses pidfd itself")
def test_a_child_process_costs_no_thread_once_pidfds_watch_children() -> None:
    async def main() -> tuple[bool, tuple[int, int, int]]:
        return watch_children_with_pidfd(), await _threads_while_a_child_runs()

    try:
        installed, (before, during, status) = asyncio.run(main())
    finally:
        asyncio.set_child_watcher(None)  # the next test's loop gets the default again
    assert installed
    assert status == 0
    assert during == before


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 chooses pidfd itself")
def test_the_default_watcher_would_start_a_thread_per_child() -> None:
    """What the test above guards against (and proof that it can fail)."""
    asyncio.set_child_watcher(None)
    before, during, status = asyncio.run(_threads_while_a_child_runs())
    assert status == 0
    assert during == before + 1
