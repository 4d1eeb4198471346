"""The fault suite's cluster: real jq-server replicas and jq-worker processes on a database of
the scenario's own, with fast recovery settings, a job feed, and the faults' bookkeeping.

Every process is real and every fault is done to it for real: SIGKILL, SIGSTOP/SIGCONT (the
`Replica` and `Worker` methods of processes.py), a TCP proxy frozen between a worker and its server
(`tcp_proxy.py`), PostgreSQL stopped with `pg_ctl`, redis-server killed. A supervisor (as
systemd or Kubernetes would, and as the README asks of every deployment) restarts workers that
die, under the same `--worker-id`; every process start is kept as an `Incarnation`, so the
ledger knows which process ran what and when it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import asyncpg
from fault.feed import Feed
from fault.history import Fault, Incarnation, Sink, read_database, read_sink, wait_settled
from fault.ledger import TERMINAL, compute
from fault.processes import Replica, Worker, signal_if_alive
from fault.report import Report
from fault.sink_tasks import SCRIPT
from fault.tcp_proxy import TcpProxy
from support.server_harness import Client, client_for

HEARTBEAT_TIMEOUT_S = 3.0
CHECK_INTERVAL_S = 1.0
ASSIGNMENT_TIMEOUT_S = 5.0
WORKER_HEARTBEAT_S = 0.5
RETRY_BASE_DELAY_S = 0.1
RETRY_MAX_DELAY_S = 0.2
RECOVERY_BOUND_S = HEARTBEAT_TIMEOUT_S + 2 * CHECK_INTERVAL_S
"""The README's promise: a lost worker's jobs run again within the heartbeat timeout plus two
check intervals of the fault."""
SETTLE_S = 25.0
"""After the feed stops, how long every job gets to reach a terminal state."""

SERVER_ENV = {
    "JQ_GRPC_HOST": "127.0.0.1",
    "JQ_METRICS_PORT": "0",
    "JQ_HEALTH_PORT": "0",
    "JQ_GRPC_GRACEFUL_SHUTDOWN_S": "1",
    "JQ_SCHEDULER_WORKER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
    "JQ_SCHEDULER_HEARTBEAT_CHECK_INTERVAL_S": str(CHECK_INTERVAL_S),
    "JQ_SCHEDULER_ASSIGNMENT_TIMEOUT_S": str(ASSIGNMENT_TIMEOUT_S),
    "JQ_SCHEDULER_RETRY_BASE_DELAY_S": str(RETRY_BASE_DELAY_S),
    "JQ_SCHEDULER_RETRY_MAX_DELAY_S": str(RETRY_MAX_DELAY_S),
}
TESTS_DIR = Path(__file__).resolve().parents[1]
WORKER_ENV = {
    "JQ_WORKER_METRICS_PORT": "0",
    "JQ_WORKER_HEALTH_PORT": "0",
    "JQ_WORKER_HEARTBEAT_INTERVAL_S": str(WORKER_HEARTBEAT_S),
    "JQ_WORKER_SHUTDOWN_GRACE_PERIOD_S": "1",
    # Command jobs are opt-in; the tests run as root (here and in CI).
    "JQ_WORKER_ALLOWED_COMMANDS": "*",
    "JQ_WORKER_ALLOW_ROOT_JOBS": "true",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
}


class Cluster:
    """One scenario's processes, on the database `dsn`; `close()` stops everything."""

    def __init__(self, scenario: str, dsn: str, base: Path, server_env: Mapping[str, str]) -> None:
        self.scenario = scenario
        self.dsn = dsn
        self.base = base
        self.sink = base / "sink"
        self.sink.touch()
        self.sink.chmod(0o666)  # command jobs may run as another user on other machines
        self.executions = Sink(self.sink)
        self.replicas: list[Replica] = []
        self.workers: list[Worker] = []
        self.proxies: list[TcpProxy] = []
        self.faults: list[Fault] = []
        self.clients: dict[str, Client] = {}
        self.server_env = {**os.environ, **SERVER_ENV, "JQ_DB_DSN": dsn, **server_env}
        self._supervisor: asyncio.Task[None] | None = None

    # --- processes -------------------------------------------------------------------------

    async def start_replicas(self, count: int) -> list[Replica]:
        started = []
        for _ in range(count):
            replica = Replica(f"server{len(self.replicas)}", dict(self.server_env), self.base)
            replica.launch()
            self.replicas.append(replica)
            started.append(replica)
        for replica in started:
            await asyncio.to_thread(replica.serving)
            self.clients[replica.name] = client_for(replica.port)
        return started

    def client(self, replica: Replica) -> tuple[Replica, Client]:
        return replica, self.clients[replica.name]

    def start_worker(
        self,
        replica: Replica,
        *,
        concurrency: int = 10,
        via_proxy: bool = False,
        supervised: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> Worker:
        port = replica.port
        if via_proxy:
            proxy = TcpProxy(replica.port).start()
            self.proxies.append(proxy)
            port = proxy.port
        worker = Worker(
            f"worker{len(self.workers)}",
            str(uuid.uuid4()),
            port,
            concurrency,
            {**os.environ, **WORKER_ENV, **(env or {})},
            self.base,
            supervised=supervised,
        )
        worker.launch()
        self.workers.append(worker)
        self._ensure_supervisor()
        return worker

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name="supervisor"
            )

    async def _supervise(self) -> None:
        """Record every worker death; restart supervised workers (same id) after a delay."""
        while True:
            for worker in self.workers:
                if worker.noticed_exit() and worker.supervised and not worker.held_down:
                    asyncio.get_running_loop().call_later(
                        worker.restart_delay_s, self._restart, worker
                    )
            await asyncio.sleep(0.02)  # the supervisor's polling period

    def _restart(self, worker: Worker) -> None:
        process = worker.process
        if not worker.held_down and process is not None and process.poll() is not None:
            worker.launch()

    def incarnations(self) -> list[Incarnation]:
        for worker in self.workers:
            worker.noticed_exit()
        return [i for worker in self.workers for i in worker.incarnations]

    # --- watching the sink -----------------------------------------------------------------

    def live_runs(self, worker: Worker | None = None) -> list[tuple[str, float]]:
        """(tag, start) of the executions going on now (of `worker`'s current process, if
        given)."""
        live = []
        for tag, runs in self.executions.runs().items():
            for run in runs:
                if run.end is not None or run.last < time.time() - 1.0:
                    continue
                if worker is not None and worker.pid not in (run.pid, *run.chain):
                    continue
                live.append((tag, run.start))
        return live

    async def wait_runs(
        self,
        worker: Worker | None,
        *,
        at_least: int,
        tagged: Callable[[str], bool] = lambda tag: True,
        within: float = 20.0,
    ) -> None:
        """Wait until `worker` (any, if None) runs at least `at_least` matching executions."""
        try:
            async with asyncio.timeout(within):
                while sum(tagged(tag) for tag, _ in self.live_runs(worker)) < at_least:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            who = worker.name if worker is not None else "the workers"
            raise AssertionError(
                f"{who} did not run {at_least} such jobs at once within {within:g}s: the"
                f" cluster does not run jobs before the fault (logs: {self.base})"
            ) from None

    async def wait_rerun(self, tags: list[str], after: float, within: float = 20.0) -> None:
        """Wait until each of `tags` has an execution that started after `after` (wall clock)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    runs = self.executions.runs()
                    if all(any(r.start > after for r in runs.get(t, [])) for t in tags):
                        return
                    await asyncio.sleep(0.05)

    async def ran_after(self, worker: Worker, after: float, within: float = 20.0) -> bool:
        """Wait until `worker`'s current process starts an execution after `after` (it took
        work again); False if it did not within `within` seconds."""
        return await self._started_after(worker, after, within)

    async def ran_after_any(self, after: float, within: float = 20.0) -> bool:
        """Wait until any execution starts after `after`; False if none did within `within`."""
        return await self._started_after(None, after, within)

    async def _started_after(self, worker: Worker | None, after: float, within: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    for runs in self.executions.runs().values():
                        for run in runs:
                            if run.start > after and (
                                worker is None or worker.pid in (run.pid, *run.chain)
                            ):
                                return True
                    await asyncio.sleep(0.05)
        return False

    async def wait_terminal(self, job_id: str | None, within: float) -> str:
        """Wait until the job is DONE or DEAD_LETTERED (or `within` passed); its status."""
        status = "NOT SUBMITTED"
        if job_id is None:
            return status
        deadline = time.monotonic() + within
        while True:
            conn = await asyncpg.connect(self.dsn)
            try:
                status = await conn.fetchval(
                    "SELECT status::text FROM jobs WHERE job_id = $1::uuid", job_id
                )
            finally:
                await conn.close()
            if status in TERMINAL or time.monotonic() > deadline:
                return str(status)
            await asyncio.sleep(0.2)

    async def held(self, workers: list[Worker]) -> Counter[str]:
        """How many jobs `workers` hold now, by status (ASSIGNED, RUNNING)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT status::text, count(*) AS n FROM jobs WHERE worker_id = ANY($1::uuid[])"
                " AND status IN ('ASSIGNED', 'RUNNING') GROUP BY status",
                [w.worker_id for w in workers],
            )
        finally:
            await conn.close()
        return Counter({r["status"]: r["n"] for r in rows})

    def worker_of(self, pid: int, chain: tuple[int, ...] = ()) -> Worker | None:
        """The worker one of whose processes is `pid` or one of `chain`."""
        for worker in self.workers:
            pids = {i.pid for i in worker.incarnations}
            if pids & {pid, *chain}:
                return worker
        return None

    def faults_at_runs(self, tag: str, name: str) -> int:
        """A fault for each execution of `tag` (a job that harms its worker), from its start to
        its last sign of life, on the worker that ran it; how many."""
        runs = self.executions.runs().get(tag, [])
        for run in runs:
            worker = self.worker_of(run.pid, run.chain)
            self.fault(name, run.start, run.last, workers=[worker] if worker else None)
        return len(runs)

    def fault(
        self,
        name: str,
        at: float,
        until: float | None = None,
        workers: list[Worker] | None = None,
        *,
        frozen: bool = False,
    ) -> Fault:
        """Record a fault (see ledger.Fault) for the ledger."""
        ids = frozenset(w.worker_id for w in workers) if workers is not None else None
        fault = Fault(name, at, until if until is not None else at, ids, frozen)
        self.faults.append(fault)
        return fault

    # --- the verdict ---------------------------------------------------------------------------

    async def ledger(self, feed: Feed, *, bound_s: float | None = None) -> Report:
        """Wait for the jobs to settle, then count (see ledger.py)."""
        settle_s = await wait_settled(self.dsn, self.sink, SETTLE_S)
        rows, events = await read_database(self.dsn)
        report = compute(
            self.scenario,
            rows,
            events,
            self.executions.runs(),
            accepted=feed.accepted,
            expected=feed.expected,
            incarnations=self.incarnations(),
            faults=self.faults,
        )
        report.failed_submits = feed.failed
        report.settle_s = settle_s
        report.bound_s = bound_s
        return report

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        for client in self.clients.values():
            await client.channel.close()
        for proxy in self.proxies:
            proxy.thaw()
        processes = [w.process for w in self.workers] + [r.process for r in self.replicas]
        for process in processes:
            if process is not None and process.poll() is None:
                signal_if_alive(process, signal.SIGCONT)
                process.kill()
                process.wait(timeout=10)
        for proxy in self.proxies:
            proxy.close()
        _kill_leftover_jobs(self.sink)


def _kill_leftover_jobs(sink: Path) -> None:
    """Command jobs whose worker died may still run (if jobq let them): end them."""
    for runs in read_sink(sink).values():
        for run in runs:
            with contextlib.suppress(OSError):
                if SCRIPT.encode() in Path(f"/proc/{run.pid}/cmdline").read_bytes():
                    os.kill(run.pid, signal.SIGKILL)
