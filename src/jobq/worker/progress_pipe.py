"""A command job's progress channel: a pipe whose write end the child inherits (issue 18).

The child finds the descriptor's number in `JOBQ_PROGRESS_FD` and writes one line per update,
`<fraction> [message]`, the fraction a number in 0..1 and the message at most 200 characters
(longer ones are cut). The number is whatever the worker's pipe got (often above 9, which
POSIX sh's `>&N` does not take), so from a shell script write to its /proc path:

    echo "0.42 resized 42 of 100" > /proc/self/fd/$JOBQ_PROGRESS_FD   # sh, dash, bash
    echo "0.42 resized 42 of 100" >&"$JOBQ_PROGRESS_FD"               # bash only

and from Python `os.write(int(os.environ["JOBQ_PROGRESS_FD"]), b"0.42 resized\n")`.

Lines that do not parse (not a number, out of range) are ignored, and so is a line longer than
MAX_LINE_BYTES, so a child cannot make the worker buffer without bound. Only the latest value
matters: the worker sends at most one per job per second (`progress_sender.py`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Final

from jobq.observability.logging_setup import get_logger
from jobq.running_job import MAX_PROGRESS_MESSAGE, CurrentJob

__all__ = ["MAX_LINE_BYTES", "PROGRESS_FD_ENV", "ProgressPipe", "parse_progress_line"]

log = get_logger("jobq.worker.command")

PROGRESS_FD_ENV: Final = "JOBQ_PROGRESS_FD"
"""The child's environment variable naming its progress descriptor."""
MAX_LINE_BYTES: Final = 1024


def parse_progress_line(line: bytes) -> tuple[float, str] | None:
    """(fraction, message) of one progress line, or None when it does not parse."""
    text = line.decode("utf-8", errors="replace").strip()
    number, _, message = text.partition(" ")
    try:
        fraction = float(number)
    except ValueError:
        return None
    if not 0.0 <= fraction <= 1.0:  # NaN fails this too
        return None
    return fraction, message.strip()[:MAX_PROGRESS_MESSAGE]


class _ProgressLines:
    """Splits what the child writes into lines and hands each parsed one to the job."""

    def __init__(self, job: CurrentJob) -> None:
        self._job = job
        self._buffer = bytearray()
        self._skipping = False  # inside a line that was too long

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            parsed = parse_progress_line(line)
            if parsed is not None:
                self._job.progress(*parsed)
        if len(self._buffer) > MAX_LINE_BYTES:
            self._buffer.clear()
            self._skipping = True


class ProgressPipe:
    """The pipe of one command job: made before the spawn, read while the job runs.

    Read with the loop's `add_reader` on the bare descriptor rather than a pipe transport,
    which cost more (the pipe's whole life, measured on a busy 2-core machine: 67 µs with a
    transport, 28-55 µs this way, of which the pipe itself 5-11 µs): every command job pays it,
    whether it reports progress or not, beside a spawn of about 2.5 ms."""

    def __init__(self, job: CurrentJob) -> None:
        self._lines = _ProgressLines(job)
        self._read_fd, self.child_fd = os.pipe()
        os.set_blocking(self._read_fd, False)  # ours only; the child's end stays blocking
        self._child_open = True
        self._loop: asyncio.AbstractEventLoop | None = None

    async def started(self) -> None:
        """The child holds its end now: close ours and read the lines as they come."""
        os.close(self.child_fd)
        self._child_open = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._read_fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._read_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self._lines.feed(data)
        elif self._loop is not None:  # end of file: every writer closed it
            self._loop.remove_reader(self._read_fd)

    def close(self) -> None:
        """The job ended: stop reading (a process left holding the write end writes into a
        pipe nobody reads, and gets EPIPE)."""
        if self._child_open:
            os.close(self.child_fd)
            self._child_open = False
        if self._read_fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._read_fd)
            os.close(self._read_fd)
            self._read_fd = -1
