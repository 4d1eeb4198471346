"""A job's shard from its id (jobq.domain.shards): the rule docs/scaling.md gives, and the
split of a batch into one group per shard (issue 21, must-show 4)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.domain import shards
from jobq.domain.ids import uuid7
from jobq.domain.shards import (
    SHARD_COUNT,
    every_shard,
    served_shards,
    shard_of,
    split_by_shard,
)


def _with_rand_a(rand_a: int) -> uuid.UUID:
    """A UUIDv7 whose 12 rand_a bits are `rand_a`."""
    base = uuid7().int & ~(0xFFF << 64)
    return uuid.UUID(int=base | rand_a << 64)


def test_one_shard_today_and_it_is_served() -> None:
    assert SHARD_COUNT == 1
    assert served_shards() == (0,)
    assert {shard_of(uuid7()) for _ in range(100)} == {0}
    assert {shard_of(uuid.uuid4()) for _ in range(100)} == {0}


def test_maintenance_covers_every_shard_of_the_count_in_force(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert every_shard() == (0,)
    monkeypatch.setattr(shards, "SHARD_COUNT", 4)
    assert every_shard() == (0, 1, 2, 3)


@given(st.integers(min_value=0, max_value=0xFFF), st.sampled_from([1, 2, 4, 64, 256, 4096]))
def test_the_shard_is_rand_a_modulo_the_count(rand_a: int, count: int) -> None:
    assert shard_of(_with_rand_a(rand_a), count) == rand_a % count


@given(st.uuids())
def test_only_the_rand_a_bits_count(job_id: uuid.UUID) -> None:
    """Bytes 6-7 below the version nibble, whatever the rest of the id: a v4 id works too."""
    b = job_id.bytes
    assert shard_of(job_id, 4096) == ((b[6] & 0x0F) << 8) | b[7]
    other_bits = uuid.UUID(int=job_id.int ^ ~(0xFFF << 64) & ((1 << 128) - 1))
    assert shard_of(other_bits, 4096) == shard_of(job_id, 4096)


def test_consecutive_uuid7_ids_take_the_shards_in_turn() -> None:
    """jobq's ids count up in rand_a within a millisecond, so a burst spreads over shards."""
    shards = {shard_of(uuid7(), 4) for _ in range(64)}
    assert len(shards) > 1


@pytest.mark.parametrize("count", [0, 3, 5000, -1])
def test_a_count_that_does_not_divide_4096_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="divide 4096"):
        shard_of(uuid7(), count)


def test_split_by_shard_groups_in_shard_order_keeping_input_order() -> None:
    ids = [_with_rand_a(r) for r in (7, 2, 5, 3, 1, 6, 4, 0)]  # shards mod 4: 3 2 1 3 1 2 0 0
    groups = split_by_shard(ids, lambda i: i, 4)
    assert [shard for shard, _ in groups] == [0, 1, 2, 3]
    assert groups == [
        (0, [ids[6], ids[7]]),
        (1, [ids[2], ids[4]]),
        (2, [ids[1], ids[5]]),
        (3, [ids[0], ids[3]]),
    ]


def test_split_by_shard_with_one_shard_is_one_group_of_everything() -> None:
    items = [(uuid7(), n) for n in range(10)]
    assert split_by_shard(items, lambda item: item[0]) == [(0, items)]
    assert split_by_shard([], lambda item: item) == []
