"""The guardian's reading of the worker's pipe: the first line is the worker's marker, then
`+PGID` registers, `-PGID` forgets, `end` says the worker stops in order; lines may arrive cut
anywhere, and nothing malformed is ever killed. And its /proc scan for marked processes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.worker.guardian_process import MARKER_VARIABLE, Orders, marked

MARKER = b"0123456789abcdef0123456789abcdef"
events = st.lists(st.tuples(st.booleans(), st.integers(min_value=2, max_value=4_194_304)))


def _stream(items: list[tuple[bool, int]]) -> bytes:
    return MARKER + b"\n" + b"".join(b"%s%d\n" % (b"+" if add else b"-", p) for add, p in items)


def _expected(items: list[tuple[bool, int]]) -> set[int]:
    groups: set[int] = set()
    for add, pgid in items:
        (groups.add if add else groups.discard)(pgid)
    return groups


def _orders(data: bytes) -> Orders:
    orders = Orders()
    orders.feed(data)
    return orders


@given(events, st.lists(st.integers(min_value=0, max_value=10_000)))
def test_the_same_orders_however_the_pipe_cuts_the_stream(
    items: list[tuple[bool, int]], cuts: list[int]
) -> None:
    data = _stream(items) + b"end\n"
    orders, start = Orders(), 0
    for cut in [*sorted(c for c in cuts if c < len(data)), len(data)]:
        orders.feed(data[start:cut])
        start = cut
    assert orders.marker == MARKER
    assert orders.groups == _expected(items)
    assert orders.in_order


def test_an_unfinished_line_waits_for_the_rest() -> None:
    orders = Orders()
    orders.feed(MARKER[:5])
    assert orders.marker == b""
    orders.feed(MARKER[5:] + b"\n+123\n+45")
    assert (orders.marker, orders.groups) == (MARKER, {123})
    orders.feed(b"6\nen")
    assert orders.groups == {123, 456}
    assert not orders.in_order
    orders.feed(b"d\n")
    assert orders.in_order


def test_malformed_lines_and_our_own_group_are_ignored() -> None:
    orders = _orders(MARKER + b"\n+\n+abc\n*77\n+0\n+1\n+-5\n\n+42\nend \n")
    assert orders.groups == {42}
    assert not orders.in_order


@pytest.mark.parametrize("first", [b"", b"+42", b"not a marker", b"\xff\xfe", b"abc=def"])
def test_a_first_line_that_is_no_marker_is_refused(first: bytes) -> None:
    with pytest.raises(ValueError, match="not a marker"):
        _orders(first + b"\n+42\n")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def test_marked_finds_exactly_the_processes_holding_the_entry(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    marker = os.urandom(16).hex()
    entry = f"{MARKER_VARIABLE}={marker}"
    for env in (
        {MARKER_VARIABLE: marker, "OTHER": "x"},  # the one to find
        {MARKER_VARIABLE: marker + "0"},  # another worker's marker that starts the same
        {"OTHER": entry},  # the entry as part of another variable's value
        {"X": "1"},
    ):
        processes.append(subprocess.Popen(["sleep", "60"], env=env))
    assert marked(entry.encode()) == {processes[0].pid}
