"""The auto-batchers: concurrent submits share calls, each caller gets its own outcome."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

from jobq.client.async_batcher import AsyncBatcher
from jobq.client.batch_plan import Submitted
from jobq.client.errors import CallFailed, ClientError
from jobq.client.sync_batcher import SyncBatcher
from jobq.rpc._gen import job_service_pb2 as jpb


def request(n: int) -> jpb.SubmitJobRequest:
    return jpb.SubmitJobRequest(queue_name="default", payload=b"{}", idempotency_key=str(n))


def fake_send(calls: list[int]) -> object:
    def send(requests: Sequence[jpb.SubmitJobRequest]) -> list[Submitted | ClientError]:
        calls.append(len(requests))
        return [
            CallFailed("INVALID_ARGUMENT", "bad")
            if r.idempotency_key == "13"
            else Submitted(f"id-{r.idempotency_key}")
            for r in requests
        ]

    return send


def test_threads_submitting_together_share_calls() -> None:
    calls: list[int] = []
    send = fake_send(calls)

    def round_trip(requests: Sequence[jpb.SubmitJobRequest]) -> list[Submitted | ClientError]:
        time.sleep(0.01)  # a call takes time: threads gather behind the one in flight
        return send(requests)  # type: ignore[operator,no-any-return]

    batcher = SyncBatcher(round_trip, linger_s=0.05, max_batch=8)
    results: dict[int, object] = {}
    start = threading.Barrier(20)

    def submit(n: int) -> None:
        start.wait()
        try:
            results[n] = batcher.submit(request(n)).job_id
        except CallFailed as exc:
            results[n] = exc

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(calls) == 20
    assert len(calls) < 20  # coalesced
    assert max(calls) <= 8
    assert isinstance(results[13], CallFailed)
    assert all(results[n] == f"id-{n}" for n in range(20) if n != 13)


def test_a_lone_thread_submits_at_once_without_waiting_out_the_linger() -> None:
    calls: list[int] = []
    # A linger of a minute: were a lone submit to wait for company, this test would time out.
    batcher = SyncBatcher(fake_send(calls), linger_s=60, max_batch=8)  # type: ignore[arg-type]
    assert batcher.submit(request(1)).job_id == "id-1"
    assert batcher.submit(request(2)).job_id == "id-2"
    assert calls == [1, 1]


def test_submits_made_while_a_call_is_in_flight_go_together_when_it_returns() -> None:
    calls: list[int] = []
    in_call = threading.Event()
    release = threading.Event()
    send = fake_send(calls)

    def slow_send(requests: Sequence[jpb.SubmitJobRequest]) -> list[Submitted | ClientError]:
        if not calls:  # the first call is held until the others have queued behind it
            in_call.set()
            assert release.wait(10)
        return send(requests)  # type: ignore[operator,no-any-return]

    batcher = SyncBatcher(slow_send, linger_s=60, max_batch=8)
    first = threading.Thread(target=batcher.submit, args=(request(0),))
    first.start()
    assert in_call.wait(10)
    followers = [threading.Thread(target=batcher.submit, args=(request(n),)) for n in (1, 2, 3)]
    for thread in followers:
        thread.start()
    while True:  # the three joined the gathering batch
        with batcher._lock:
            if batcher._open is not None and len(batcher._open.requests) == 3:
                break
    release.set()
    for thread in (first, *followers):
        thread.join(10)
        assert not thread.is_alive()
    # The gathering batch went when the first call returned, not after the minute's linger.
    assert calls == [1, 3]


async def test_coroutines_submitting_together_share_one_call() -> None:
    calls: list[int] = []
    sync_send = fake_send(calls)

    async def send(requests: Sequence[jpb.SubmitJobRequest]) -> list[Submitted | ClientError]:
        return sync_send(requests)  # type: ignore[operator, no-any-return]

    batcher = AsyncBatcher(send, linger_s=0.01, max_batch=1000)
    results = await asyncio.gather(
        *(batcher.submit(request(n)) for n in range(50)), return_exceptions=True
    )
    assert calls == [50]
    assert isinstance(results[13], CallFailed)
    assert [r.job_id for r in results if isinstance(r, Submitted)] == [
        f"id-{n}" for n in range(50) if n != 13
    ]
    await batcher.aclose()


async def test_a_full_batch_is_sent_at_once_and_a_send_error_reaches_every_caller() -> None:
    sizes: list[int] = []

    async def send(requests: Sequence[jpb.SubmitJobRequest]) -> list[Submitted | ClientError]:
        sizes.append(len(requests))
        raise RuntimeError("broken")

    batcher = AsyncBatcher(send, linger_s=60, max_batch=3)  # the linger never ends a batch
    async with asyncio.timeout(5):
        results = await asyncio.gather(
            *(batcher.submit(request(n)) for n in range(6)), return_exceptions=True
        )
    assert sizes == [3, 3]
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_without_a_linger_a_batch_is_one_pass_of_the_event_loop() -> None:
    """linger 0 (AsyncClient's default): the coroutines woken in one pass all join its batch,
    one that submits in a later pass gets a batch of its own, and no timer is waited for."""
    calls: list[int] = []
    sync_send = fake_send(calls)

    async def send(requests: Sequence[jpb.SubmitJobRequest]) -> list[Submitted | ClientError]:
        return sync_send(requests)  # type: ignore[operator, no-any-return]

    batcher = AsyncBatcher(send, linger_s=0, max_batch=1000)

    async def late(n: int) -> Submitted:
        await asyncio.sleep(0)  # a pass later than the others
        await asyncio.sleep(0)
        return await batcher.submit(request(n))

    async with asyncio.timeout(1):
        together = [asyncio.ensure_future(batcher.submit(request(n))) for n in range(10)]
        later = asyncio.ensure_future(late(99))
        await asyncio.gather(*together, later, return_exceptions=True)
    assert calls == [10, 1]
    assert later.result().job_id == "id-99"
    await batcher.aclose()
