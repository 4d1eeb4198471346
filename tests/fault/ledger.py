"""The fault suite's ledger: what really ran (the sink) against what jobq recorded (PostgreSQL).

After a fault and a settle deadline it counts, over every job of the scenario's database:

- lost: accepted (the submit returned an id) but not ended as expected: missing, in a terminal
  state the scenario did not expect, or DONE although no execution of it ever finished;
- stuck: not terminal (PENDING, ASSIGNED, RUNNING, FAILED) after the settle deadline;
- excess: executions beyond at-least-once. Each execution is matched to the attempt assigned
  to its jq-worker (by worker id: the latest ASSIGNED event before it started). At-least-once
  lets an attempt run once and lets a job run again when an attempt was interrupted; so an
  execution is excess when it matches no attempt, when its attempt already ran, when it
  started after its attempt had ended (a superseded assignment run late), or when its
  attempt was given up on (rescued: WORKER_LOST, ASSIGNMENT_TIMEOUT, ...) although no fault
  hit it (assigned after every fault on its worker was over, e.g. a result lost by a worker
  that was connected all along);
- overlap: jobs two of whose executions were alive at the same time (the spans from `start`
  to the last line each wrote intersect);
- stale: DONE jobs whose credit (the COMPLETED event's worker and attempt) is not the job's
  last started execution, or went to a superseded attempt, to an attempt that never ran, or
  to an execution that never finished;
- orphans: executions still alive more than ORPHAN_GRACE_S after their jq-worker process
  died (a job's processes must die with their worker);
- recovery: for each fault, the jobs it interrupted (an attempt in progress during the fault,
  on a worker the fault hit, that was then not credited), and for each the seconds from the fault
  to the start of its next execution (of a later attempt, started while that attempt was
  current; never: it did not run again). A job a later fault hits again before it ran again
  counts for that fault instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fault.history import (
    ALIVE_AT_FAULT_S,
    Event,
    Execution,
    Fault,
    Incarnation,
    JobRow,
)
from fault.report import Recovery, Report

TERMINAL = frozenset({"DONE", "DEAD_LETTERED"})
DONE_ONLY = frozenset({"DONE"})
ORPHAN_GRACE_S = 0.5
"""How long after its worker died a job's process may still be seen (its death is not instant)."""


def compute(
    scenario: str,
    rows: list[JobRow],
    events: Mapping[str, list[Event]],
    sink: Mapping[str, list[Execution]],
    *,
    accepted: Mapping[str, str],
    expected: Mapping[str, frozenset[str]],
    incarnations: Iterable[Incarnation],
    faults: Iterable[Fault],
) -> Report:
    """Count everything the module docstring lists; `expected` maps tags to the terminal
    states allowed (DONE when a tag is not in it)."""
    report = Report(scenario, jobs=len(rows), accepted=len(accepted))
    faults = sorted(faults, key=lambda f: f.at)
    by_pid = {i.pid: i for i in incarnations}
    report.unacknowledged = sum(1 for row in rows if row.tag not in accepted)
    report.statuses = Counter(row.status for row in rows)
    report.events = Counter(
        e.reason
        for evs in events.values()
        for e in evs
        if e.reason not in ("SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED")
    )
    report.executions = sum(len(runs) for runs in sink.values())
    stored = {row.tag for row in rows}
    report.lost += [f"{tag}:missing" for tag in accepted if tag not in stored]
    for row in rows:
        job = _Job(row, sink.get(row.tag or "", []), events.get(row.job_id, []))
        job.attribute(by_pid)
        job.check(report, expected.get(row.tag or "", DONE_ONLY), faults)
        for index, fault in enumerate(faults):
            job.recover(report, fault, faults[index + 1 :])
    for tag, runs in sink.items():
        for run in runs:
            owner = run.owner
            if owner and owner.ended is not None and run.last > owner.ended + ORPHAN_GRACE_S:
                report.orphans.append(f"{tag}/{run.run}")
    origin = faults[0].at if faults else 0.0
    troubled = {t.split(":")[0].split("+")[0].split("/")[0] for t in report.problem_tags()}
    for row in rows:
        if row.tag in troubled and len(report.trails) < 4:
            report.trails[row.tag] = _trail(
                origin, events.get(row.job_id, []), sink.get(row.tag, [])
            )
    return report


@dataclass
class _Attempt:
    """One attempt of a job, from its events: who got it, when, and how it ended."""

    number: int
    worker_id: str | None
    assigned: float
    ended: float | None = None
    outcome: str | None = None  # the reason of the event that ended it


JOB_FAILURES = frozenset({"FAILED", "REFUSED"})
"""Ends of an attempt that are the job's own doing (a failure it reported), not a fault's."""


class _Job:
    """One job's executions and attempts, and the checks on them."""

    def __init__(self, row: JobRow, runs: list[Execution], job_events: list[Event]) -> None:
        self.row = row
        self.tag = row.tag or row.job_id
        self.runs = runs
        self.events = job_events
        self.attempts: dict[int, _Attempt] = {}
        for event in job_events:
            if event.attempt is None:
                continue
            if event.reason == "ASSIGNED":
                self.attempts[event.attempt] = _Attempt(event.attempt, event.worker_id, event.at)
                continue
            attempt = self.attempts.get(event.attempt)
            if attempt is not None and attempt.ended is None and event.reason != "STARTED":
                attempt.ended, attempt.outcome = event.at, event.reason
        self.credited: Execution | None = None

    def attribute(self, by_pid: Mapping[int, Incarnation]) -> None:
        """Set each execution's jq-worker incarnation and the attempt it ran: the latest one
        assigned to that worker before the execution started. An execution none of whose
        ancestors is a jq-worker started after its worker had died (it was handed to init):
        it ran the latest attempt assigned to anyone, for the incarnation that was alive then."""
        incarnations = list(by_pid.values())
        for run in self.runs:
            run.owner = next((by_pid[p] for p in (run.pid, *run.chain) if p in by_pid), None)
            mine = [
                a
                for a in self.attempts.values()
                if a.assigned <= run.start + 0.001
                and (run.owner is None or a.worker_id == run.owner.worker_id)
            ]
            if not mine:
                continue
            attempt = max(mine, key=lambda a: a.assigned)
            run.attempt = attempt.number
            if run.owner is None:
                run.owner = next(
                    (
                        i
                        for i in incarnations
                        if i.worker_id == attempt.worker_id
                        and i.started <= attempt.assigned
                        and (i.ended is None or i.ended >= attempt.assigned)
                    ),
                    None,
                )

    def check(self, report: Report, allowed: frozenset[str], faults: list[Fault]) -> None:
        status = self.row.status
        if status not in TERMINAL:
            report.stuck.append(f"{self.tag}:{status}")
        elif status not in allowed:
            report.lost.append(f"{self.tag}:{status}")
        elif status == "DONE" and not any(r.end is not None for r in self.runs):
            report.lost.append(f"{self.tag}:DONE-never-ran")
        if status == "DONE":
            self._check_credit(report)
        self._check_excess(report, faults)
        self._check_overlap(report, faults)

    def _check_overlap(self, report: Report, faults: list[Fault]) -> None:
        """Two executions alive at once, unless the older one belonged to a worker paused
        meanwhile (see Report.excused)."""
        excused = False
        for index, later in enumerate(self.runs):
            for older in self.runs[:index]:
                if older.last <= later.start:
                    continue
                if any(_paused_during(older, fault) for fault in faults):
                    excused = True
                    continue
                report.overlap.append(self.tag)
                return
        if excused:
            report.excused.append(self.tag)

    def _check_credit(self, report: Report) -> None:
        completions = [e for e in self.events if e.reason == "COMPLETED"]
        if not completions:
            report.stale.append(f"{self.tag}:no-COMPLETED-event")
            return
        credit = completions[-1]
        mine = [
            r
            for r in self.runs
            if r.owner is not None
            and r.owner.worker_id == credit.worker_id
            and r.attempt == credit.attempt
        ]
        self.credited = mine[-1] if mine else None
        if credit.attempt != self.row.attempt:
            report.stale.append(
                f"{self.tag}:credited-attempt-{credit.attempt}-of-{self.row.attempt}"
            )
        elif self.credited is None:
            report.stale.append(f"{self.tag}:credited-attempt-{credit.attempt}-never-ran")
        elif self.credited.end is None:
            report.stale.append(f"{self.tag}:credited-run-never-finished")
        elif self.credited is not self.runs[-1]:
            report.stale.append(f"{self.tag}:a-later-run-started")

    def _check_excess(self, report: Report, faults: list[Fault]) -> None:
        """Executions at-least-once does not explain: one that ran no attempt of its
        worker's, a second execution of one attempt, one that started after its attempt had
        ended (a superseded assignment run late), or one whose attempt was given up on
        (rescued, not credited) though no fault hit it: assigned after every fault on its
        worker was over."""
        seen: set[int] = set()
        excess: list[str] = []
        for run in self.runs:
            if run.attempt is None:
                excess.append("no-attempt")
                continue
            if run.attempt in seen:
                excess.append(f"attempt-{run.attempt}-again")
                continue
            seen.add(run.attempt)
            attempt = self.attempts[run.attempt]
            if self._zombie(run):
                excess.append(f"attempt-{run.attempt}-started-after-its-{attempt.outcome}")
                continue
            if run is self.credited or attempt.outcome in (None, "COMPLETED", *JOB_FAILURES):
                continue
            if not any(_hit(attempt, fault) for fault in faults):
                excess.append(f"attempt-{run.attempt}-{attempt.outcome}-after-the-faults")
        if excess:
            report.excess.append(f"{self.tag}+{len(excess)}:{','.join(excess)}")
        report.duplicates += max(0, len(self.runs) - 1)

    def recover(self, report: Report, fault: Fault, later_faults: list[Fault]) -> None:
        """If `fault` interrupted this job (hit an attempt in progress that was then not
        credited), how long until it ran again. When a later fault hit the job again before
        it ran (an attempt in between was in progress, or assigned, while that fault
        lasted), the wait is that fault's to account for, not this one's."""
        hit = [
            a
            for a in self.attempts.values()
            if _hit(a, fault) and a.outcome not in ("COMPLETED", *JOB_FAILURES)
        ]
        if not hit:
            return
        last = max(a.number for a in hit)
        later = [
            r
            for r in self.runs
            if r.attempt is not None and r.attempt > last and not self._zombie(r)
        ]
        if not later and self.row.status == "DEAD_LETTERED":
            return  # given up on, as a poison job should be: nothing to recover
        rerun = min(later, key=lambda r: r.start) if later else None
        between = [
            a
            for a in self.attempts.values()
            if a.number > last and (rerun is None or a.number < (rerun.attempt or 0))
        ]
        if any(_hit(a, g) for a in between for g in later_faults):
            return
        seconds = rerun.start - fault.at if rerun is not None else None
        trail = _trail(fault.at, self.events, self.runs)
        report.recoveries.append(Recovery(self.tag, fault.name, seconds, trail))

    def _zombie(self, run: Execution) -> bool:
        """An execution that started after its attempt had ended (given up on, or the job
        finished): it does not count as the job running again."""
        attempt = self.attempts.get(run.attempt) if run.attempt is not None else None
        return attempt is not None and attempt.ended is not None and run.start > attempt.ended


def _paused_during(run: Execution, fault: Fault) -> bool:
    owner = run.owner
    return (
        fault.frozen
        and owner is not None
        and (fault.workers is None or owner.worker_id in fault.workers)
        and run.start <= fault.at
        and run.last >= fault.at - ALIVE_AT_FAULT_S
    )


def _hit(attempt: _Attempt, fault: Fault) -> bool:
    """Whether `fault` hit `attempt`: on its worker (or on every worker), while the attempt
    was in progress (assigned before the fault ended, not ended before it began)."""
    if fault.workers is not None and attempt.worker_id not in fault.workers:
        return False
    return attempt.assigned <= fault.until and (attempt.ended is None or attempt.ended >= fault.at)


def _trail(at: float, job_events: list[Event], runs: list[Execution]) -> str:
    """`REASON@+s` for the job's events and `run@+s..+s` for its executions (s from `at`)."""
    items = [
        (e.at, f"{e.reason}[{(e.worker_id or '-')[:8]} a{e.attempt}]@{e.at - at:+.2f}")
        for e in job_events
        if e.at >= at - 10
    ]
    items += [
        (
            r.start,
            f"run[{r.owner.worker_id[:8] if r.owner else '?'} pid {r.pid} a{r.attempt}]"
            f"@{r.start - at:+.2f}..{(r.end or r.last) - at:+.2f}" + ("" if r.end else "(no end)"),
        )
        for r in runs
    ]
    return " ".join(text for _, text in sorted(items))
