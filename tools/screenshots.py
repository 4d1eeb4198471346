"""`make screenshots`: a PNG of every dashboard page, for the README (docs/screenshots/).

Starts a jq-server with the dashboard and a token on a fresh embedded PostgreSQL in a temporary
directory (or on `--dsn`, a database of your own that it fills with demo jobs), and a jq-worker
with jobq.demo_tasks; submits a small mix of jobs (some done, some failing into the dead letter
queue, a few waiting in a paused queue), logs in with headless Chromium (/usr/bin/chromium,
driven by Playwright) and saves 1280x800 PNGs of /, /queues, /jobs, /jobs/<id> and /workers
into `--out`. Everything it started is stopped at the end; nothing is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "screenshots"
WIDTH, HEIGHT = 1280, 800
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
]
PAGES = [
    ("overview", "/"),
    ("queues", "/queues"),
    ("jobs", "/jobs"),
    ("job", "/jobs/{job_id}"),
    ("workers", "/workers"),
]
"""(file name, path): /jobs/{job_id} is a dead-lettered job of the mix."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools/screenshots.py", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the PNGs go")
    parser.add_argument(
        "--dsn", default="", help="a PostgreSQL database to use (default: a fresh embedded one)"
    )
    parser.add_argument(
        "--chart-samples",
        type=int,
        default=3,
        help="history samples (5 s apart) to wait for, so the charts show lines",
    )
    parser.add_argument("--chromium", default="", help="Chromium's path (default: found)")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"screenshots: {process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"screenshots: nothing listens on port {port} after {timeout:g} s")


@contextlib.contextmanager
def started(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def chromium_path(given: str) -> str:
    for candidate in (given, "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("chromium")
    if found is None:
        raise SystemExit("screenshots: Chromium not found (apt-get install chromium)")
    return found


def fill(grpc_port: int, token: str) -> str:
    """Submit the demo mix; the id of a dead-lettered job once the worker got through it."""
    import grpc

    from jobq import Client
    from jobq.client.errors import JobFailed
    from jobq.rpc._gen import admin_service_pb2, admin_service_pb2_grpc

    with Client(f"127.0.0.1:{grpc_port}", token=token) as client:
        done = [client.submit("jobq.demo_tasks:add", n, n * 2) for n in range(12)]
        done += [client.submit("greet", name=name) for name in ("Ada", "Grace", "Edsger")]
        # add() with one argument raises TypeError: no retries, so straight to the dead letters.
        failed = [client.submit("jobq.demo_tasks:add", n, max_retries=0) for n in range(3)]
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            admin = admin_service_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
            admin.CreateQueue(
                admin_service_pb2.CreateQueueRequest(name="reports"),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )
        client.pause_queue("reports")
        for n in range(5):
            client.submit("jobq.demo_tasks:add", n, 1, queue="reports")
        for job in done:
            job.wait(timeout=60)
        for job in failed:
            with contextlib.suppress(JobFailed):
                job.wait(timeout=60)
        return failed[0].id


def shoot(url: str, token: str, job_id: str, out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(url + "/login")
            page.get_by_label("API token").fill(token)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_load_state("networkidle")
            for name, path in PAGES:
                page.goto(url + path.format(job_id=job_id))
                with contextlib.suppress(Exception):  # a page without charts or live regions
                    page.wait_for_load_state("networkidle", timeout=3_000)
                if name == "overview":
                    page.wait_for_function(
                        "Number(document.body.dataset.chartPoints || 0) > 0", timeout=15_000
                    )
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=False)
                saved.append(target)
        finally:
            browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from jobq.domain.tokens import new_token_secret, token_digest

    token = new_token_secret()
    grpc_port, dashboard_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="jobq-screenshots-") as work:
        workdir = Path(work)
        env = {
            **os.environ,
            "JQ_GRPC_HOST": "127.0.0.1",
            "JQ_GRPC_PORT": str(grpc_port),
            "JQ_DASHBOARD_PORT": str(dashboard_port),
            "JQ_HEALTH_PORT": "0",
            "JQ_METRICS_PORT": "0",
            "JQ_AUTH_TOKENS": f"screenshots:submit+read+admin+worker:{token_digest(token)}",
        }
        if args.dsn:
            env["JQ_DB_DSN"] = args.dsn
        else:
            env.pop("JQ_DB_DSN", None)
            env["JQ_DB_EMBEDDED_DATA_DIR"] = str(workdir / "postgres")
        worker_env = {
            **env,
            "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{grpc_port}",
            "JQ_WORKER_TOKEN": token,
            "JQ_WORKER_METRICS_PORT": "0",
            "JQ_WORKER_HEALTH_PORT": "0",
        }
        server_argv = [str(BIN / "jq-server")]
        worker_argv = [str(BIN / "jq-worker"), "--import", "jobq.demo_tasks"]
        with started(server_argv, env, workdir / "jq-server.log") as server:
            wait_for_port(grpc_port, server, timeout=120)
            wait_for_port(dashboard_port, server, timeout=30)
            with started(worker_argv, worker_env, workdir / "jq-worker.log"):
                job_id = fill(grpc_port, token)
                # The overview's charts: History samples every 5 s from jq-server's start.
                time.sleep(5.0 * args.chart_samples)
                saved = shoot(
                    f"http://127.0.0.1:{dashboard_port}",
                    token,
                    job_id,
                    args.out,
                    chromium_path(args.chromium),
                )
    for path in saved:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
