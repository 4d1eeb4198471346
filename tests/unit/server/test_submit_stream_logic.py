"""serve_submit_stream's own logic, with a submit function the test controls: answers go out as
batches finish (by tag, in any order), at most MAX_IN_FLIGHT batches run at once and no further
request is read meanwhile, and a batch's unexpected error is its answer, not the stream's end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest

from jobq.domain.errors import NotFound
from jobq.rpc._gen import job_service_pb2 as pb
from jobq.server.submit_stream import MAX_IN_FLIGHT, serve_submit_stream


class Observer:
    def __init__(self) -> None:
        self.database_errors = 0

    def rpc_finished(self, service: str, method: str, code: str, seconds: float) -> None:
        pass

    def database_error(self) -> None:
        self.database_errors += 1


class Batches:
    """A submit whose batches finish when the test says so (`release(tag)`); each batch's
    first job's queue name is its tag."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.running = 0
        self.most_running = 0

    def release(self, tag: int) -> None:
        self.gates.setdefault(str(tag), asyncio.Event()).set()

    async def submit(self, jobs: Sequence[pb.SubmitJobRequest]) -> tuple[list[str], list[bool]]:
        name = jobs[0].queue_name
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gates.setdefault(name, asyncio.Event()).wait()
        finally:
            self.running -= 1
        if name == "404":
            raise NotFound("job 0: queue '404' not found")
        if name == "500":
            raise RuntimeError("a bug")
        if name == "503":
            raise OSError("connection lost")
        return [f"id-{name}"], [False]


def request(tag: int) -> pb.SubmitJobStreamRequest:
    return pb.SubmitJobStreamRequest(tag=tag, jobs=[pb.SubmitJobRequest(queue_name=str(tag))])


class Requests:
    """The client's side: requests the test sends, and how many the server has read."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[pb.SubmitJobStreamRequest | None] = asyncio.Queue()
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[pb.SubmitJobStreamRequest]:
        while (item := await self.queue.get()) is not None:
            self.read += 1
            yield item


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_answers_go_out_as_batches_finish_and_the_reads_wait_for_a_free_slot() -> None:
    batches, requests, written = Batches(), Requests(), []

    async def write(answer: pb.SubmitJobStreamResponse) -> None:
        written.append(answer.tag)

    serving = asyncio.create_task(
        serve_submit_stream(requests, write, batches.submit, Observer(), "JobService")
    )
    for tag in range(1, MAX_IN_FLIGHT + 3):
        requests.queue.put_nowait(request(tag))
    await settle()
    assert batches.running == MAX_IN_FLIGHT
    assert requests.read == MAX_IN_FLIGHT + 1  # the next one is read, then waits for a slot

    batches.release(3)
    await settle()
    assert written == [3]
    assert requests.read == MAX_IN_FLIGHT + 2

    for tag in (6, 1, 5, 2, 4):
        batches.release(tag)
    requests.queue.put_nowait(None)
    await asyncio.wait_for(serving, 5)
    assert sorted(written) == list(range(1, MAX_IN_FLIGHT + 3))
    assert written[0] == 3
    assert batches.most_running == MAX_IN_FLIGHT


async def test_a_batch_error_is_its_answer_and_the_stream_goes_on() -> None:
    batches, requests, written = Batches(), Requests(), {}
    observer = Observer()

    async def write(answer: pb.SubmitJobStreamResponse) -> None:
        written[answer.tag] = (
            grpc.StatusCode.OK.value[0] if not answer.code else answer.code,
            answer.message,
            list(answer.job_ids),
        )

    for tag in (404, 500, 503, 1):
        batches.release(tag)
        requests.queue.put_nowait(request(tag))
    requests.queue.put_nowait(None)
    await asyncio.wait_for(
        serve_submit_stream(requests, write, batches.submit, observer, "JobService"), 5
    )
    assert written == {
        404: (grpc.StatusCode.NOT_FOUND.value[0], "job 0: queue '404' not found", []),
        500: (grpc.StatusCode.INTERNAL.value[0], "internal error; see the server log", []),
        503: (
            grpc.StatusCode.UNAVAILABLE.value[0],
            "the database is unavailable; try again shortly",
            [],
        ),
        1: (0, "", ["id-1"]),
    }
    assert observer.database_errors == 1


async def test_a_broken_request_stream_ends_the_call_and_cancels_the_batches_in_flight() -> None:
    batches = Batches()

    async def broken() -> AsyncIterator[pb.SubmitJobStreamRequest]:
        yield request(1)
        await asyncio.sleep(0.01)
        raise ConnectionResetError("the client went away")

    async def write(answer: pb.SubmitJobStreamResponse) -> None:
        raise AssertionError("nothing is answered")

    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(
            serve_submit_stream(broken(), write, batches.submit, Observer(), "JobService"), 5
        )
    await settle()
    assert batches.running == 0  # the batch in flight was cancelled with the call
