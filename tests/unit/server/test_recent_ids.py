"""The replica's memory of registered workers is bounded (worker ids are not reused)."""

from __future__ import annotations

import uuid

from jobq.server.worker_service import RecentIds


def test_keeps_the_most_recently_added_ids_only() -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    known = RecentIds(limit=3)
    for worker_id in ids:
        known.add(worker_id)
    assert len(known) == 3
    assert [i in known for i in ids] == [False, False, True, True, True]


def test_adding_again_makes_an_id_recent_and_discard_forgets_it() -> None:
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    known = RecentIds(limit=3)
    for worker_id in (a, b, c):
        known.add(worker_id)
    known.add(a)  # a is now the newest: b goes first
    known.add(d)
    assert [x in known for x in (a, b, c, d)] == [True, False, True, True]
    known.discard(c)
    known.discard(c)  # twice is harmless
    assert c not in known
    assert len(known) == 2
