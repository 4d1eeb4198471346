"""`jobq.current_job()` and `jobq.progress()`: the handler's view of its job, and the worker's
handle on it (cancel flag, executor hook, latest unsent progress)."""

from __future__ import annotations

import math

import pytest

import jobq
from jobq.running_job import CurrentJob, reset_current_job, set_current_job
from jobq.worker.progress_pipe import parse_progress_line


def test_outside_a_job_current_job_raises_and_progress_does_nothing() -> None:
    with pytest.raises(RuntimeError, match="only available inside a job"):
        jobq.current_job()
    jobq.progress(0.5, "ignored")  # a handler called directly still works


def test_inside_a_job_both_reach_it() -> None:
    job = CurrentJob("j", 3, "c")
    token = set_current_job(job)
    try:
        assert jobq.current_job() is job
        assert (job.job_id, job.attempt, job.cancelled) == ("j", 3, False)
        jobq.progress(0.5, "half")
    finally:
        reset_current_job(token)
    assert job.take_progress() == (0.5, "half")
    assert job.take_progress() is None  # sent already
    assert not job.progress_unsent


@pytest.mark.parametrize("fraction", [-0.01, 1.01, math.nan, math.inf])
def test_a_fraction_outside_0_to_1_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        CurrentJob("j", 1).progress(fraction)


def test_a_message_over_200_characters_is_refused() -> None:
    CurrentJob("j", 1).progress(1, "x" * 200)
    with pytest.raises(ValueError, match="at most 200"):
        CurrentJob("j", 1).progress(1, "x" * 201)


def test_a_failed_send_is_sent_again_unless_a_newer_value_came() -> None:
    job = CurrentJob("j", 1)
    job.progress(0.1)
    sent = job.take_progress()
    assert sent == (0.1, "")
    job.unsend_progress(sent)
    assert job.take_progress() == (0.1, "")
    job.progress(0.2)
    job.unsend_progress(sent)  # stale: 0.2 is what waits now
    assert job.take_progress() == (0.2, "")


def test_a_cancel_runs_the_executors_hook_once() -> None:
    job = CurrentJob("j", 1)
    assert job.request_cancel() is False  # no hook: the runner cancels the task itself
    assert job.cancelled
    calls: list[str] = []
    hooked = CurrentJob("j", 2)
    hooked.set_cancel_hook(lambda: calls.append("stop"))
    assert hooked.request_cancel() is True
    assert hooked.request_cancel() is True
    assert calls == ["stop"]


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (b"0.42 resized 42 of 100", (0.42, "resized 42 of 100")),
        (b"1", (1.0, "")),
        (b"  0.5   spaced  \r", (0.5, "spaced")),
        (b"0.5 " + "é".encode() * 300, (0.5, "é" * 200)),
        (b"half", None),
        (b"1.5 too much", None),
        (b"nan", None),
        (b"", None),
    ],
)
def test_progress_lines(line: bytes, parsed: tuple[float, str] | None) -> None:
    assert parse_progress_line(line) == parsed
