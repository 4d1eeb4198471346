"""Faults of jq-worker processes, under a steady feed of jobs: SIGKILL, SIGSTOP past the
heartbeat timeout, a restart under the same id, a network partition, a poison job and a
handler that blocks the event loop. cluster.py says what runs, ledger.py what is counted;
each scenario prints one summary line (visible with `-s`, and in every failure).

Every scenario ends with lost = stuck = excess = overlap = stale = orphans = 0; where a worker
is lost, its jobs must be running again within RECOVERY_BOUND_S (the heartbeat timeout plus
two check intervals) of the fault.
"""

from __future__ import annotations

import random

from fault.cluster import HEARTBEAT_TIMEOUT_S, RECOVERY_BOUND_S, Cluster
from fault.feed import Feed, JobMix
from fault.ledger import TERMINAL
from fault.processes import hold
from fault.sink_tasks import command_payload, handler_payload

RATE_PER_S = 6.0
"""Submits per second: about half of what the workers left after a fault can run at once."""
FREEZE_S = RECOVERY_BOUND_S + 1.0
"""Pauses and partitions outlast the recovery bound: the lost worker's jobs must be running
elsewhere before it comes back."""
POISON_RETRIES = 2
POISON_RUNS_MAX = 5
"""A poison job is given up on after a handful of executions: after its retries (SPEC §4), or
after its queue's limit of interruptions (3 by default) where crash rescues consume none."""
BLOCK_S = HEARTBEAT_TIMEOUT_S + 2.0


async def test_worker_sigkill(cluster: Cluster) -> None:
    """A worker running handlers and command jobs (some longer than the heartbeat timeout) is
    SIGKILLed and stays dead: its jobs run again elsewhere, and its command jobs die with it."""
    [server] = await cluster.start_replicas(1)
    doomed, *_ = [cluster.start_worker(server) for _ in range(3)]
    mix = JobMix(cluster.sink, random.Random(1), long_share=0.4)
    feed = Feed(mix, RATE_PER_S)
    feed.route([cluster.client(server)])
    feed.start()
    try:
        await cluster.wait_runs(doomed, at_least=1, tagged=mix.is_long)
        await cluster.wait_runs(doomed, at_least=3)
        hit = [tag for tag, _ in cluster.live_runs(doomed)]
        died = doomed.kill()
        cluster.fault("worker SIGKILL", died, workers=[doomed])
        await cluster.wait_rerun(hit, after=died)
    finally:
        await feed.stop()
    report = await cluster.ledger(feed, bound_s=RECOVERY_BOUND_S)
    report.expect(report.interrupted >= 3, f"only {report.interrupted} jobs were interrupted")
    report.assert_clean()


async def test_worker_sigstop_past_the_heartbeat_timeout(cluster: Cluster) -> None:
    """A worker is SIGSTOPped for longer than the recovery bound, then SIGCONTed: its jobs run
    again elsewhere meanwhile, nothing it reports on waking is credited, and it takes jobs
    again.

    A paused worker can stop nothing: its handler threads resume with it on SIGCONT and its
    command jobs run on meanwhile, so an execution of it that outlives the pause overlaps its
    job's re-run whatever the queue does. The ledger reports those overlaps apart (excused);
    every other count must be zero."""
    [server] = await cluster.start_replicas(1)
    frozen, *_ = [cluster.start_worker(server) for _ in range(3)]
    feed = Feed(JobMix(cluster.sink, random.Random(2), long_share=0.3), RATE_PER_S)
    feed.route([cluster.client(server)])
    feed.start()
    try:
        await cluster.wait_runs(frozen, at_least=3)
        hit = [tag for tag, _ in cluster.live_runs(frozen)]
        stopped = frozen.pause()
        await cluster.wait_rerun(hit, after=stopped, within=FREEZE_S)
        await hold(stopped, FREEZE_S)  # the pause itself
        resumed = frozen.resume()
        cluster.fault("worker SIGSTOP", stopped, until=resumed, workers=[frozen], frozen=True)
        back = await cluster.ran_after(frozen, resumed)
    finally:
        await feed.stop()
    report = await cluster.ledger(feed, bound_s=RECOVERY_BOUND_S)
    report.expect(report.interrupted >= 3, f"only {report.interrupted} jobs were interrupted")
    report.expect(back, "the worker took no job after SIGCONT")
    report.assert_clean()


async def test_worker_restarted_under_the_same_id(cluster: Cluster) -> None:
    """A worker is SIGKILLed and started again at once with the same --worker-id, as a
    supervisor does: the jobs the dead process held run again (the new process does not run
    them: it never received them), and the new process takes jobs."""
    [server] = await cluster.start_replicas(1)
    doomed, *_ = [cluster.start_worker(server) for _ in range(3)]
    mix = JobMix(cluster.sink, random.Random(3), long_share=0.4)
    feed = Feed(mix, RATE_PER_S)
    feed.route([cluster.client(server)])
    feed.start()
    try:
        await cluster.wait_runs(doomed, at_least=1, tagged=mix.is_long)
        await cluster.wait_runs(doomed, at_least=3)
        hit = [tag for tag, _ in cluster.live_runs(doomed)]
        died = doomed.kill(restart=True)
        cluster.fault("worker restarted under its id", died, workers=[doomed])
        await cluster.wait_rerun(hit, after=died)
        back = await cluster.ran_after(doomed, died)
    finally:
        await feed.stop()
    report = await cluster.ledger(feed, bound_s=RECOVERY_BOUND_S)
    report.expect(report.interrupted >= 3, f"only {report.interrupted} jobs were interrupted")
    report.expect(back, "the restarted worker took no job")
    report.expect(len(doomed.incarnations) == 2, f"{len(doomed.incarnations)} incarnations")
    report.assert_clean()


async def test_network_partition_between_a_worker_and_its_server(cluster: Cluster) -> None:
    """The TCP link between one worker and its server carries nothing for longer than the
    recovery bound, both processes running and every connection open: the server re-runs the
    worker's jobs elsewhere, the worker stops its own (before they can overlap their re-runs)
    and rejoins when the link is back."""
    [server] = await cluster.start_replicas(1)
    cut = cluster.start_worker(server, via_proxy=True)
    for _ in range(2):
        cluster.start_worker(server)
    [proxy] = cluster.proxies
    mix = JobMix(cluster.sink, random.Random(4), python_share=0.4, long_share=0.3)
    feed = Feed(mix, RATE_PER_S)
    feed.route([cluster.client(server)])
    feed.start()
    try:
        await cluster.wait_runs(cut, at_least=1, tagged=mix.is_long)
        await cluster.wait_runs(cut, at_least=3)
        hit = [tag for tag, _ in cluster.live_runs(cut)]
        frozen = proxy.freeze()
        await cluster.wait_rerun(hit, after=frozen, within=FREEZE_S)
        await hold(frozen, FREEZE_S)  # the partition itself
        thawed = proxy.thaw()
        cluster.fault("partition", frozen, until=thawed, workers=[cut])
        back = await cluster.ran_after(cut, thawed)
    finally:
        await feed.stop()
    report = await cluster.ledger(feed, bound_s=RECOVERY_BOUND_S)
    report.expect(report.interrupted >= 3, f"only {report.interrupted} jobs were interrupted")
    # It may have exited (EXIT_CONTACT_LOST: a sync handler's thread ran on, which only the
    # process's exit stops) and been restarted by its supervisor: either way it is back.
    report.expect(back, "the worker took no job after the partition")
    report.assert_clean()


async def test_poison_job_that_kills_its_worker(cluster: Cluster) -> None:
    """A command job that SIGKILLs the jq-worker running it; a supervisor restarts each dead
    worker under its id. The job ends DEAD_LETTERED after a few executions (one per attempt,
    never a loop), and the jobs it took down with it run again and end DONE."""
    [server] = await cluster.start_replicas(1)
    for _ in range(2):
        cluster.start_worker(server, concurrency=3)
    feed = Feed(JobMix(cluster.sink, random.Random(5)), RATE_PER_S / 2)
    feed.route([cluster.client(server)])
    feed.start()
    try:
        await cluster.wait_runs(None, at_least=3)
        poison = await feed.submit(
            "poison",
            command_payload(cluster.sink, "poison", 0, poison=True),
            expect=frozenset({"DEAD_LETTERED"}),
            max_retries=POISON_RETRIES,
        )
        status = await cluster.wait_terminal(poison, within=30)
    finally:
        await feed.stop()
    runs = cluster.faults_at_runs("poison", "poison run")
    report = await cluster.ledger(feed)
    report.details.append(f"poison job {status} after {runs} executions")
    report.expect(1 <= runs <= POISON_RUNS_MAX, f"the poison job ran {runs} times")
    report.assert_clean()


async def test_handler_that_blocks_the_event_loop(cluster: Cluster) -> None:
    """An `async def` handler that calls time.sleep for longer than the heartbeat timeout, so
    its worker neither heartbeats nor reports meanwhile. Its outcome is defined (DONE, or
    DEAD_LETTERED after its retries), not a hang; the blocked worker's other jobs are not lost
    and nothing stale is credited. Workers that die are restarted under their id."""
    [server] = await cluster.start_replicas(1)
    for _ in range(3):
        cluster.start_worker(server, concurrency=6)
    feed = Feed(JobMix(cluster.sink, random.Random(6)), RATE_PER_S)
    feed.route([cluster.client(server)])
    feed.start()
    try:
        await cluster.wait_runs(None, at_least=4)
        blocker = await feed.submit(
            "blocker",
            handler_payload(cluster.sink, "blocker", BLOCK_S, blocking=True),
            expect=TERMINAL,
            max_retries=1,
        )
        status = await cluster.wait_terminal(blocker, within=30)
    finally:
        await feed.stop()
    runs = cluster.faults_at_runs("blocker", "blocked event loop")
    report = await cluster.ledger(feed, bound_s=RECOVERY_BOUND_S)
    report.details.append(f"blocking job {status} after {runs} executions")
    report.assert_clean()
