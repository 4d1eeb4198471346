"""A real, throw-away Prometheus for tests: scrapes given /metrics endpoints every second and
answers queries over its HTTP API.

The binary comes from PATH (Debian package `prometheus`, which `.ci/run` installs). Where it is
missing the test is skipped with a reason, as with redis-server (support/redis_server.py).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.processes import LoopbackServer, free_port

SCRAPE_INTERVAL = "1s"
START_TIMEOUT_S = 30.0


@dataclass
class PrometheusServer(LoopbackServer):
    """A running Prometheus on 127.0.0.1:`port`, its configuration and data in `directory`."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return (self.directory / "prometheus.log").read_text(errors="replace")
        except OSError:
            return "(no prometheus.log)"

    def api(self, path: str, params: Mapping[str, str | list[str]]) -> dict[str, Any]:
        """GET /api/v1/`path`; the decoded JSON reply, also for a 400 or 422 (a query that
        does not parse or cannot run comes back with status "error" and the reason)."""
        reply = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        if reply.status_code not in (200, 400, 422):
            reply.raise_for_status()
        decoded: dict[str, Any] = reply.json()
        return decoded

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; raises on an error reply."""
        reply = self.api("query", {"query": expr})
        if reply["status"] != "success":
            raise AssertionError(f"{expr}: {reply.get('errorType')}: {reply.get('error')}")
        result: list[dict[str, Any]] = reply["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        """The single value of an instant query, NaN when it returns nothing."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else math.nan

    def wait_until(self, expr: str, within: float = 30.0) -> None:
        """Wait until the instant query `expr` returns a sample (a comparison such as
        `sum(x) >= 3` returns none while false)."""
        deadline = time.monotonic() + within
        while not self.query(expr):
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus never had {expr} within {within} s")
            time.sleep(0.2)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def scrape_config(targets: Mapping[str, str]) -> dict[str, Any]:
    """A configuration scraping each {job name: host:port} every second."""
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in targets.items()
        ],
    }


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_prometheus(directory: Path, targets: Mapping[str, str]) -> Iterator[PrometheusServer]:
    """Prometheus scraping `targets` ({job name: host:port}), ready to query; killed on exit.
    Skips the calling test when the binary is missing."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("prometheus is not on PATH (install the Debian package prometheus)")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(targets)))
    port = free_port()
    with open(directory / "prometheus.log", "wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(process, port, directory)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(server.url):
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited {process.returncode}:\n{server.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"prometheus not ready in {START_TIMEOUT_S} s:\n{server.log()}"
                )
            time.sleep(0.1)
        yield server
    finally:
        server.kill()
