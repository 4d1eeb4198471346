"""A submit's statements split by shard (V25, docs/scaling.md F2): InsertBatch sends each kind
of job (keyed, by client id) in one statement per shard present, keyed ones first, each in
shard order, and repeats are resolved over the whole batch before the split."""

from __future__ import annotations

import uuid

import pytest

from jobq.domain import shards
from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.domain.shards import shard_of
from jobq.storage.postgres.job_insert import InsertBatch, assigned_arguments


def _on_shard(rand_a: int) -> uuid.UUID:
    return uuid.UUID(int=(uuid7().int & ~(0xFFF << 64)) | rand_a << 64)


def _job(rand_a: int, **fields: object) -> NewJob:
    return NewJob(_on_shard(rand_a), "default", b"{}", **fields)  # type: ignore[arg-type]


@pytest.fixture
def four_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "SHARD_COUNT", 4)


def test_one_shard_makes_one_statement_as_before() -> None:
    batch = InsertBatch([NewJob(uuid7(), "default", b"{}") for _ in range(5)])
    [(name, arguments)] = batch.statements(True)
    assert name == "jobs_insert"
    assert len(arguments) == 13
    assert arguments[-1] == 0
    assert arguments == batch.arguments(True)


def test_each_kind_is_split_by_shard_keyed_first_in_shard_order(four_shards: None) -> None:
    jobs = [
        _job(3, idempotency_key="a"),
        _job(1, idempotency_key="b"),
        _job(7, idempotency_key="c"),  # shard 3
        _job(2, id_from_client=True),
        _job(0, id_from_client=True),
    ]
    statements = InsertBatch(jobs).statements(False)
    assert [(name, args[-1]) for name, args in statements] == [
        ("jobs_insert", 1),
        ("jobs_insert", 3),
        ("jobs_insert_by_id", 0),
        ("jobs_insert_by_id", 2),
    ]
    sent = {(name, args[-1]): args[0] for name, args in statements}
    assert sent[("jobs_insert", 3)] == [jobs[0].job_id, jobs[2].job_id]
    assert sent[("jobs_insert_by_id", 2)] == [jobs[3].job_id]
    for (_, shard), ids in sent.items():
        assert {shard_of(i) for i in ids} == {shard}


def test_a_key_repeated_on_another_shard_is_sent_once(four_shards: None) -> None:
    """The leader of a key is chosen over the whole batch: the follower, whatever its shard,
    gets the leader's outcome and is not sent."""
    leader, follower = _job(1, idempotency_key="k"), _job(2, idempotency_key="k")
    batch = InsertBatch([leader, follower])
    [(name, arguments)] = batch.statements(True)
    assert (name, arguments[0], arguments[-1]) == ("jobs_insert", [leader.job_id], 1)


def test_arguments_without_a_shard_refuse_a_batch_of_several(four_shards: None) -> None:
    batch = InsertBatch([_job(0), _job(1)])
    with pytest.raises(ValueError, match="2 shards"):
        batch.arguments(True)
    assert batch.arguments(True, shard=1)[0] == [batch.by_key[1].job_id]


def test_the_assigned_insert_names_its_jobs_shard(four_shards: None) -> None:
    job = _job(6)
    assert assigned_arguments(job, uuid.uuid4(), uuid.uuid4())[-1] == 2
