"""/metrics answers jq_server_ready from the readiness decision on every scrape, whatever
happens to the other gauges' refresh (PostgreSQL down makes it fail, or hang)."""

from __future__ import annotations

import asyncio

import pytest

from jobq.observability.metrics import ServerMetrics
from jobq.server import server_metrics
from jobq.server.server_metrics import scrape_route


def ready_value(metrics: ServerMetrics) -> float | None:
    return metrics.registry.get_sample_value("jq_server_ready")


async def test_readiness_is_served_although_the_gauges_cannot_be_refreshed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_metrics, "READY_CHECK_TIMEOUT_S", 0.05)
    metrics = ServerMetrics(process_collectors=False)
    answers = [(True, "ready"), (False, "postgres unavailable: OSError")]

    async def broken_gauges() -> None:
        await asyncio.sleep(10)  # a database that does not answer

    async def readiness() -> tuple[bool, str]:
        return answers.pop(0)

    scrape = scrape_route(metrics, broken_gauges, readiness)

    status, body, _ = await scrape()
    assert status == 200
    assert ready_value(metrics) == 1
    assert b"jq_server_ready 1.0" in body
    await scrape()
    assert ready_value(metrics) == 0


async def test_a_readiness_check_that_raises_or_hangs_means_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_metrics, "READY_CHECK_TIMEOUT_S", 0.05)
    metrics = ServerMetrics(process_collectors=False)
    metrics.server_ready.set(1)

    async def gauges() -> None:
        return None

    async def raising() -> tuple[bool, str]:
        raise RuntimeError("boom")

    async def hanging() -> tuple[bool, str]:
        await asyncio.sleep(10)
        return True, "ready"

    await scrape_route(metrics, gauges, raising)()
    assert ready_value(metrics) == 0
    metrics.server_ready.set(1)
    await scrape_route(metrics, gauges, hanging)()
    assert ready_value(metrics) == 0
