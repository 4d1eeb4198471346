"""`python -m bench.job_guardian_cost`: what the job guardian costs a worker and each command job.

Prints, for this machine:
- the guardian's start time (`JobGuardian.start`, until it says it runs) and its memory (RSS,
  and PSS: its share of pages it shares with other processes);
- the worker's CPU for one job's `register` + `unregister` (two pipe writes, with an event loop
  turn between jobs as in a worker, the turn's own cost subtracted), and the guardian's CPU for
  reading them (it reads in batches, BATCH_S apart);
- a `["true"]` command job through `CommandExecutor` without and with the guardian: wall time
  and the worker's CPU per job, in alternating rounds so drift hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

from jobq.domain.payload import CommandSpec
from jobq.observability.logging_setup import configure_logging
from jobq.worker.command_executor import CommandExecutor
from jobq.worker.job_guardian import NO_GUARD, JobGuardian, JobProcessGuard
from jobq.worker.job_user import AS_WORKER

TICKS = os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def _start_times(rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        guardian = JobGuardian()
        started = time.perf_counter()
        await guardian.start()
        times.append(time.perf_counter() - started)
        await guardian.stop()
    return times


async def _pairs(guardian: JobGuardian, pairs: int) -> tuple[float, float]:
    """Worker CPU and guardian CPU (s) per register+unregister pair."""
    pid = guardian.pid
    assert pid is not None
    turns = time.process_time()
    for _ in range(pairs):
        await asyncio.sleep(0)
    turns = time.process_time() - turns
    guardian_before, worker_before = _cpu_s(pid), time.process_time()
    for i in range(pairs):
        pgid = 100_000 + i % 50_000  # ids no process holds: nothing is ever killed
        guardian.register(pgid)
        guardian.unregister(pgid)
        await asyncio.sleep(0)  # a loop turn between jobs, as in a worker
    worker = time.process_time() - worker_before - turns
    await asyncio.sleep(0.5)  # the guardian reads what is left
    return worker / pairs, (_cpu_s(pid) - guardian_before) / pairs


async def _jobs(guard: JobProcessGuard, jobs: int) -> tuple[float, float]:
    """Wall and worker CPU (s) per `true` job."""
    executor = CommandExecutor(
        allowed_commands=["*"], max_output_bytes=4096, job_user=AS_WORKER, guard=guard
    )
    spec = CommandSpec(argv=("true",))
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(jobs):
        result = await executor.run(spec, None)
        assert result.success
    return (time.perf_counter() - wall) / jobs, (time.process_time() - cpu) / jobs


async def main(pairs: int, jobs: int, rounds: int) -> None:
    starts = await _start_times(5)
    print(f"guardian start: median {statistics.median(starts) * 1e3:.1f} ms over {len(starts)}")
    guardian = JobGuardian()
    await guardian.start()
    assert guardian.pid is not None
    pid = guardian.pid
    print(f"guardian after start: RSS {_rss_kib(pid)} KiB, PSS {_pss_kib(pid)} KiB")
    worker_s, guardian_s = await _pairs(guardian, pairs)
    print(
        f"per job, register + unregister: worker CPU {worker_s * 1e6:.2f} µs, "
        f"guardian CPU {guardian_s * 1e6:.2f} µs (over {pairs} pairs)"
    )
    print(f"guardian after {pairs} pairs: RSS {_rss_kib(pid)} KiB, PSS {_pss_kib(pid)} KiB")
    without: list[tuple[float, float]] = []
    with_guard: list[tuple[float, float]] = []
    for _ in range(rounds):
        without.append(await _jobs(NO_GUARD, jobs))
        with_guard.append(await _jobs(guardian, jobs))
    for name, figures in (("without guardian", without), ("with guardian", with_guard)):
        wall = statistics.median(f[0] for f in figures)
        cpu = statistics.median(f[1] for f in figures)
        print(
            f"`true` job {name}: wall {wall * 1e6:.0f} µs, worker CPU {cpu * 1e6:.0f} µs "
            f"(median of {rounds} rounds of {jobs})"
        )
    await guardian.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging("bench", level="warning")
    asyncio.run(main(args.pairs, args.jobs, args.rounds))
