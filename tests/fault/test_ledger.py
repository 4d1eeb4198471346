"""The ledger counts what it says it counts: hand-written histories (events as PostgreSQL
records them, executions as the sink does) with one fault each, and the counts they must give.
No processes; these run in milliseconds."""

from __future__ import annotations

from fault.history import Event, Execution, Fault, Incarnation, JobRow
from fault.ledger import DONE_ONLY, compute
from fault.report import Report

W1, W2 = "11111111-0000-0000-0000-000000000000", "22222222-0000-0000-0000-000000000000"
OLD, NEW, OTHER = (
    Incarnation("w1", W1, 101, 0.0, 10.0),
    Incarnation("w1", W1, 102, 10.5),
    Incarnation("w2", W2, 201, 0.0),
)
KILLED_W1 = Fault("w1 SIGKILL", 10.0, 10.0, frozenset({W1}))


def _events(*items: tuple[str, str | None, int | None, float]) -> list[Event]:
    to = {"ASSIGNED": "ASSIGNED", "STARTED": "RUNNING", "COMPLETED": "DONE"}
    return [Event("j", reason, to.get(reason, "PENDING"), w, a, at) for reason, w, a, at in items]


def _run(run: str, pid: int, start: float, last: float, *, end: bool = True) -> Execution:
    return Execution("t", run, pid, (1000,), start, last, last if end else None)


def _report(
    status: str,
    attempt: int,
    events: list[Event],
    runs: list[Execution],
    *,
    expected: frozenset[str] = DONE_ONLY,
    faults: tuple[Fault, ...] = (KILLED_W1,),
    incarnations: tuple[Incarnation, ...] = (OLD, NEW, OTHER),
) -> Report:
    return compute(
        "ledger",
        [JobRow("j", "t", status, attempt)],
        {"j": events},
        {"t": runs},
        accepted={"t": "j"},
        expected={"t": expected},
        incarnations=incarnations,
        faults=list(faults),
    )


RESCUED = _events(
    ("ASSIGNED", W1, 1, 9.0),
    ("STARTED", W1, 1, 9.1),
    ("WORKER_LOST", W1, 1, 13.0),
    ("ASSIGNED", W2, 2, 13.1),
    ("STARTED", W2, 2, 13.2),
    ("COMPLETED", W2, 2, 14.0),
)


def test_a_job_rescued_from_a_killed_worker_is_clean_and_its_recovery_measured() -> None:
    report = _report(
        "DONE", 2, RESCUED, [_run("a", 101, 9.1, 9.9, end=False), _run("b", 201, 13.15, 14.0)]
    )
    assert report.problems() == []
    assert [(r.tag, round(r.seconds or 0, 2)) for r in report.recoveries] == [("t", 3.15)]
    assert report.duplicates == 1


def test_an_execution_that_outlives_its_killed_worker_is_an_orphan_and_overlaps() -> None:
    # pid 5001: a command job whose parent, the worker, is gone (the ledger finds its owner
    # through the attempt it ran).
    report = _report("DONE", 2, RESCUED, [_run("a", 5001, 9.1, 14.5), _run("b", 201, 13.15, 14.0)])
    assert report.orphans == ["t/a"]
    assert report.overlap == ["t"]
    assert report.stale == []


def test_credit_to_a_run_that_never_finished_or_a_superseded_attempt_is_stale() -> None:
    never_finished = _report(
        "DONE",
        2,
        RESCUED,
        [_run("a", 101, 9.1, 9.9, end=False), _run("b", 201, 13.15, 13.5, end=False)],
    )
    assert never_finished.stale == ["t:credited-run-never-finished"]
    superseded = _report("DONE", 3, RESCUED, [_run("b", 201, 13.15, 14.0)])
    assert superseded.stale == ["t:credited-attempt-2-of-3"]


def test_a_late_start_of_a_rescued_attempt_is_excess_and_stale() -> None:
    zombie = _run("z", 102, 15.0, 15.5)  # the old attempt started after WORKER_LOST
    report = _report("DONE", 2, RESCUED, [_run("b", 201, 13.15, 14.0), zombie])
    assert report.excess == ["t+1:attempt-1-started-after-its-WORKER_LOST"]
    assert report.stale == ["t:a-later-run-started"]


def test_a_rerun_no_fault_explains_is_excess() -> None:
    events = _events(
        ("ASSIGNED", W2, 1, 20.0),
        ("ASSIGNMENT_TIMEOUT", W2, 1, 25.0),
        ("ASSIGNED", W2, 2, 25.1),
        ("COMPLETED", W2, 2, 26.0),
    )
    runs = [_run("a", 201, 20.1, 21.0), _run("b", 201, 25.2, 26.0)]
    report = _report("DONE", 2, events, runs)
    assert report.excess == ["t+1:attempt-1-ASSIGNMENT_TIMEOUT-after-the-faults"]
    explained = _report("DONE", 2, events, runs, faults=(Fault("any", 20.5, 21.0),))
    assert explained.excess == []


def test_unfinished_unexpected_and_missing_jobs() -> None:
    assert _report("RUNNING", 1, RESCUED[:2], []).stuck == ["t:RUNNING"]
    assert _report("DEAD_LETTERED", 2, RESCUED, []).lost == ["t:DEAD_LETTERED"]
    assert _report("DONE", 2, RESCUED, []).lost == ["t:DONE-never-ran"]
    poison = _report("DEAD_LETTERED", 2, RESCUED, [], expected=frozenset({"DEAD_LETTERED"}))
    assert poison.lost == []
    assert poison.recoveries == []


def test_overlap_of_a_paused_workers_run_is_excused() -> None:
    paused = Fault("w1 SIGSTOP", 10.0, 16.0, frozenset({W1}), frozen=True)
    runs = [_run("a", 101, 9.1, 16.5), _run("b", 201, 13.15, 14.0)]
    alive = Incarnation("w1", W1, 101, 0.0)
    report = _report("DONE", 2, RESCUED, runs, faults=(paused,), incarnations=(alive, OTHER))
    assert report.overlap == []
    assert report.excused == ["t"]
    assert report.problems() == []
