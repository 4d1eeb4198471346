"""The contact deadline: from the sending of the last answered call, the server's timeout
less a margin; never moved back by a late answer to an earlier call."""

from __future__ import annotations

import pytest

from jobq.worker.server_contact import DEFAULT_TIMEOUT_S, ServerContact


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_deadline_is_the_timeout_less_a_fifth_after_the_last_answered_call_was_sent() -> None:
    clock = Clock()
    contact = ServerContact(clock)
    assert contact.timeout_s == DEFAULT_TIMEOUT_S
    contact.learn_timeout(10.0, 3)
    assert contact.margin_s == 2.0
    contact.answered(sent_at=101.0)
    assert contact.deadline == 101.0 + 10.0 - 2.0
    clock.now = 109.0
    assert not contact.lost()
    clock.now = 109.01
    assert contact.lost()
    assert contact.describe() == "no contact with jq-server for 8.0s (its heartbeat timeout is 10s)"


def test_an_answer_to_an_older_call_does_not_move_the_deadline_back() -> None:
    contact = ServerContact(Clock())
    contact.answered(sent_at=105.0)
    contact.answered(sent_at=103.0)  # a slow heartbeat's answer, arriving after a newer one's
    assert contact.deadline == 105.0 + DEFAULT_TIMEOUT_S - contact.margin_s


@pytest.mark.parametrize(
    ("timeout_s", "interval_s", "expected_timeout_s", "expected_margin_s"),
    [
        (3.0, 1, 3.0, 0.6),
        (2.0, 1, 2.0, 0.5),  # the margin's floor
        (300.0, 100, 300.0, 5.0),  # its ceiling
        (0.0, 4, 12.0, 2.4),  # a server that only sent its interval
        (0.0, 0, DEFAULT_TIMEOUT_S, 5.0),  # one that sent neither
    ],
)
def test_the_timeout_comes_from_the_server(
    timeout_s: float, interval_s: int, expected_timeout_s: float, expected_margin_s: float
) -> None:
    contact = ServerContact(Clock())
    contact.learn_timeout(timeout_s, interval_s)
    assert contact.timeout_s == expected_timeout_s
    assert contact.margin_s == pytest.approx(expected_margin_s)


def test_a_blocked_loop_may_stall_the_deadline_less_one_heartbeat() -> None:
    contact = ServerContact(Clock())
    contact.learn_timeout(3.0, 1)
    assert contact.stall_limit_s(heartbeat_s=0.5) == pytest.approx(3.0 - 0.6 - 0.5)
    assert contact.stall_limit_s(heartbeat_s=5.0) == 0.5  # never below the floor
