"""Polls an HTTP `/readyz` in the background and keeps every answer with its time, so a test can
ask what the endpoint said during a window (an outage) and wait for an answer after it."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

NO_ANSWER = 0
"""The status recorded when the endpoint did not answer at all (refused, timed out)."""


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the answer came
    status: int


def http_status(url: str, timeout_s: float) -> int:
    """The HTTP status of a GET of `url`; NO_ANSWER when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, TimeoutError):
        return NO_ANSWER


class ReadinessProbe:
    """GET http://127.0.0.1:`port`/readyz every `interval_s` until stopped."""

    def __init__(self, port: int, *, interval_s: float = 0.05, timeout_s: float = 5.0) -> None:
        self.url = f"http://127.0.0.1:{port}/readyz"
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self.answers: list[Answer] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="readyz-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            status = await asyncio.to_thread(http_status, self.url, self._timeout_s)
            self.answers.append(Answer(time.monotonic(), status))
            self._changed.set()
            await asyncio.sleep(self._interval_s)  # the polling period, not a wait for a state

    def between(self, start: float, end: float) -> list[Answer]:
        """The answers that came in [start, end] (monotonic times)."""
        return [a for a in self.answers if start <= a.at <= end]

    async def first(self, status: int, *, after: float, within: float) -> Answer:
        """The first answer `status` that came after `after`, waiting up to `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                for answer in self.answers:
                    if answer.at > after and answer.status == status:
                        return answer
                self._changed.clear()
                await self._changed.wait()
