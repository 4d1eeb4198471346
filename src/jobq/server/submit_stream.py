"""SubmitJobStream: batches of submits over one long-lived call.

A client that submits continuously (the SDK's auto-batching sends a batch every few
milliseconds) pays a unary call's setup for every SubmitJobs: measured on the bench's machine,
a bare grpc.aio unary round trip costs about 600 µs and 650 µs of CPU (client and server), a
message each way on an open stream about 250 µs and 330 µs. On the stream each request is one
batch, checked and inserted by the very code of SubmitJobs (`submit`), all or nothing; its
response carries the request's tag and either the ids or the status code and message SubmitJobs
would have ended with, so a refused batch does not end the stream.

Up to MAX_IN_FLIGHT batches of one stream are inserted at once and answered as each commits, in
any order (hence the tag): a client that keeps two batches in flight overlaps one's insert with
the other's travel. Beyond that the stream reads no further request until a batch is answered,
and gRPC's flow control holds the client back. The stream ends with an error only for what
breaks the stream itself: a tag already in flight (INVALID_ARGUMENT), a request too large to
read (RESOURCE_EXHAUSTED, from the guard), the server stopping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence

from jobq.domain.errors import InvalidArgument, Unavailable
from jobq.rpc._gen import job_service_pb2 as pb
from jobq.rpc.status_codes import is_database_outage, status_for
from jobq.server.rpc_handler import RpcObserver, log_failure

__all__ = ["MAX_IN_FLIGHT", "STOPPING", "BatchSubmit", "SubmitStreams", "serve_submit_stream"]

MAX_IN_FLIGHT = 4
"""Batches of one stream inserted at once; each holds a database connection while it does."""

BatchSubmit = Callable[[Sequence[pb.SubmitJobRequest]], Awaitable[tuple[list[str], list[bool]]]]
"""SubmitJobs' own work: a batch's ids and existing flags, or the error that refused it."""

Write = Callable[[pb.SubmitJobStreamResponse], Awaitable[None]]

_END = object()
"""Put on the answer queue when the client has sent its last request."""
_CLOSING = object()
"""Put on the answer queue when the server is stopping."""
STOPPING = "jq-server is stopping: send the batch again (another replica takes it)"


class SubmitStreams:
    """The submit streams a server has open, so that its shutdown can end them."""

    def __init__(self) -> None:
        self._open: set[asyncio.Queue[object]] = set()
        self._closed = False

    def close_all(self) -> None:
        """Stop every stream reading: each answers the batches it has in flight, then ends
        with UNAVAILABLE, which tells the client to send its next batches again elsewhere (or
        here, once restarted). A stream opened after this ends at once."""
        self._closed = True
        for answers in self._open:
            answers.put_nowait(_CLOSING)

    async def serve(
        self,
        requests: AsyncIterable[pb.SubmitJobStreamRequest],
        write: Write,
        submit: BatchSubmit,
        observer: RpcObserver,
        service: str,
    ) -> None:
        """One stream: see serve_submit_stream."""
        if self._closed:
            raise Unavailable(STOPPING)
        answers: asyncio.Queue[object] = asyncio.Queue()
        self._open.add(answers)
        try:
            await serve_submit_stream(requests, write, submit, observer, service, answers)
        finally:
            self._open.discard(answers)


async def serve_submit_stream(
    requests: AsyncIterable[pb.SubmitJobStreamRequest],
    write: Write,
    submit: BatchSubmit,
    observer: RpcObserver,
    service: str,
    answers: asyncio.Queue[object] | None = None,
) -> None:
    """Answer every request of `requests` through `write` (one writer: gRPC allows one write
    at a time), until the client ends its side and every batch is answered. An error of the
    stream itself propagates (the caller's @rpc turns it into the call's status); batches still
    in flight are then cancelled, which leaves each committed or not, as a dropped SubmitJobs
    call would, and the client's retry with the same idempotency keys settles which. `answers`
    is where `SubmitStreams.close_all` reaches this stream: on _CLOSING it stops reading,
    answers what is in flight, and raises Unavailable. A request read but not yet started when
    reading stops goes unanswered; the client sends it again, as any batch of a broken stream."""
    answers = asyncio.Queue() if answers is None else answers
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    tags_in_flight: set[int] = set()
    tasks: set[asyncio.Task[None]] = set()
    unanswered = 0  # batches read and not yet written back
    loop = asyncio.get_running_loop()

    async def answer(request: pb.SubmitJobStreamRequest) -> None:
        try:
            ids, existing = await submit(request.jobs)
            reply = pb.SubmitJobStreamResponse(tag=request.tag, job_ids=ids, existing=existing)
        except Exception as exc:  # the batch's own error, answered: the stream goes on
            code, message = status_for(exc)
            log_failure(service, "SubmitJobStream", code, exc)
            if is_database_outage(exc):
                observer.database_error()
            reply = pb.SubmitJobStreamResponse(tag=request.tag, code=code.value[0], message=message)
        finally:
            tags_in_flight.discard(request.tag)
            slots.release()
        answers.put_nowait(reply)

    async def read() -> None:
        nonlocal unanswered
        try:
            async for request in requests:
                await slots.acquire()
                if request.tag in tags_in_flight:
                    slots.release()
                    raise InvalidArgument(
                        f"tag {request.tag} is already in flight on this stream: give each "
                        "batch a tag no batch still waiting for its answer has"
                    )
                tags_in_flight.add(request.tag)
                unanswered += 1
                task = loop.create_task(answer(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            answers.put_nowait(_END)
        except asyncio.CancelledError:  # the writer stopped reading, or the call is over
            raise
        except BaseException as exc:  # handed to the writer, which raises it in the handler
            answers.put_nowait(exc)

    reader = loop.create_task(read())
    try:
        ended = stopping = False
        while not (ended and unanswered == 0):
            if stopping and unanswered == 0:
                raise Unavailable(STOPPING)
            item = await answers.get()
            if item is _END:
                ended = True
            elif item is _CLOSING:
                stopping = True
                reader.cancel()
            elif isinstance(item, BaseException):
                raise item
            else:
                assert isinstance(item, pb.SubmitJobStreamResponse)
                unanswered -= 1
                await write(item)
    finally:
        reader.cancel()
        for task in list(tasks):
            task.cancel()
