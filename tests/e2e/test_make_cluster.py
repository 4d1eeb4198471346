"""`make cluster` (tools/cluster.py, run as the Makefile runs it): the whole topology from
deploy/jobq.env, a job through each of its two servers with the real jq-ctl and the printed
token, Prometheus scraping all four programs, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from support.cluster import PORT_SPAN, REPO, Launcher, alive, descendants, start_launcher
from support.proc_scan import processes_with

STARTS_WITHIN_S = 60
SERVERS = ("server-1", "server-2")
WORKERS = ("worker-1", "worker-2")
SERVICES = ("Redis", "Kafka", "Prometheus")
"""Optional: printed either with an address or as `not running: not installed (...)`."""


def first_word(where: str) -> str:
    return where.split()[0]


def listed_ports(endpoints: dict[str, str]) -> dict[str, int]:
    """The loopback port of every printed endpoint that has one (servers, workers, services)."""
    ports = {}
    for label, where in endpoints.items():
        found = re.search(r"127\.0\.0\.1:(\d+)", first_word(where))
        if found and label != "jq-ctl":
            ports[label] = int(found[1])
    return ports


def jq_ctl(usage: list[str], server_addr: str, *args: str) -> Any:
    """Run jq-ctl as the printed usage line does (its program, token file), at `server_addr`,
    with `args` instead of its example command; the JSON it prints."""
    program, _flag, _addr, token_flag, token_file = usage[:5]
    assert (_flag, token_flag) == ("--server-addr", "--token-file"), usage
    argv = [program, "--server-addr", server_addr, token_flag, token_file, "-o", "json", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_done(usage: list[str], server_addr: str, job_id: str, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        job = jq_ctl(usage, server_addr, "job", "status", job_id)["job"]
        if job["status"] == "DONE":
            return job
        assert job["status"] in ("PENDING", "ASSIGNED", "RUNNING"), job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def wait_targets_up(prometheus: str, within: float) -> list[dict[str, Any]]:
    """Prometheus's active targets once every one has been scraped successfully."""
    deadline = time.monotonic() + within
    while True:
        answer = httpx.get(f"{prometheus}api/v1/targets", timeout=5).json()
        targets: list[dict[str, Any]] = answer["data"]["activeTargets"]
        if targets and all(target["health"] == "up" for target in targets):
            return targets
        assert time.monotonic() < deadline, json.dumps(targets, indent=1)
        time.sleep(0.5)


TEST_RULES = """\
groups:
  - name: cluster-test
    rules:
      - record: cluster_test:up:sum
        expr: sum(up)
"""


def rule_groups(directory: Path) -> list[str]:
    """The names of the rule groups in every *.yml of `directory`."""
    return [
        group["name"]
        for path in directory.glob("*.yml")
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", [])
    ]


def wait_recorded(prometheus: str, metric: str, value: float, within: float) -> None:
    """Wait until a recording rule's series has `value` (each evaluation, every few seconds,
    sees the targets scraped by then)."""
    deadline = time.monotonic() + within
    while True:
        answer = httpx.get(f"{prometheus}api/v1/query", params={"query": metric}, timeout=5)
        result = answer.json()["data"]["result"]
        if result and float(result[0]["value"][1]) == value:
            return
        assert time.monotonic() < deadline, f"{metric}: {result}, not {value}"
        time.sleep(0.5)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def postmaster(state: Path) -> int:
    """The PostgreSQL server's main process (pg_ctl starts it detached from the launcher)."""
    [pid_file] = state.glob("postgres-*/postmaster.pid")
    return int(pid_file.read_text().splitlines()[0])


def postgres_processes(state: Path) -> set[int]:
    """The postmaster and its backends."""
    pid = postmaster(state)
    return {pid, *descendants(pid)}


def assert_nothing_left(launcher: Launcher, tree: set[int]) -> None:
    """No process of the launcher's tree lives on, nor any holding its state directory in its
    command line (PostgreSQL, which pg_ctl detaches; the broker; redis-server; Prometheus)."""
    left = {pid for pid in tree if alive(pid)}
    assert not left, f"left running: {left}\n{launcher.text()}"
    holding = processes_with(str(launcher.state))
    assert not holding, f"left running: {holding}\n{launcher.text()}"


def stop_and_check(launcher: Launcher, tree: set[int]) -> str:
    launcher.process.send_signal(signal.SIGINT)
    code, seen = launcher.wait_exit(within=90)
    assert code == 0, launcher.text()
    assert_nothing_left(launcher, tree | seen)
    return launcher.text()


def test_make_cluster_serves_a_job_through_each_server_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    # deploy/jobq.env as an operator would edit it: a copy given with --env-file.
    env_file = tmp_path / "jobq.env"
    shared = (REPO / "deploy" / "jobq.env").read_text()
    env_file.write_text(
        f"{shared}\nJQ_WORKER_CONCURRENCY=3\nJQ_WORKER_QUEUES=default,cluster-test\n"
    )
    # The repository's alert and recording rules, and one of the test's own.
    rules = tmp_path / "rules"
    rules.mkdir()
    for rule_file in (REPO / "deploy" / "prometheus" / "rules").glob("*.yml"):
        shutil.copyfile(rule_file, rules / rule_file.name)
    (rules / "cluster-test.yml").write_text(TEST_RULES)
    launcher = start_launcher(tmp_path, "--env-file", str(env_file), "--rules-dir", str(rules))
    try:
        endpoints = launcher.wait_ready(STARTS_WITHIN_S)
        usage = shlex.split(endpoints["jq-ctl"])
        state = tmp_path / "state"
        tree = descendants(launcher.process.pid) | postgres_processes(state)

        # Every port the launcher printed answers, and within the block it was given.
        ports = listed_ports(endpoints)
        running = [name for name in SERVICES if not endpoints[name].startswith("not running")]
        assert set(ports) == {
            *(
                f"{s} {what}"
                for s in SERVERS
                for what in ("gRPC", "dashboard", "health", "metrics")
            ),
            *(f"{w} {what}" for w in WORKERS for what in ("health", "metrics")),
            "PostgreSQL",
            *running,
        }, endpoints
        for label, port in ports.items():
            assert launcher.base_port <= port < launcher.base_port + PORT_SPAN, (label, port)
            assert listening(port), f"{label} ({port}) does not answer"

        # Authentication is on: without the printed token file the server refuses.
        anonymous = subprocess.run(
            [usage[0], "--server-addr", first_word(endpoints["server-1 gRPC"]), "queue", "list"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert anonymous.returncode != 0
        assert "missing credential" in anonymous.stderr, anonymous.stderr

        # A job through each server, each DONE on one of the cluster's workers.
        workers = jq_ctl(usage, first_word(endpoints["server-1 gRPC"]), "worker", "list")
        online = {w["worker_id"] for w in workers["workers"] if w["status"] == "ONLINE"}
        assert len(online) == len(WORKERS), workers
        # The shared settings file configured them (values apart from the defaults).
        for worker in workers["workers"]:
            assert worker["concurrency"] == 3, worker
            assert worker["queues"] == ["default", "cluster-test"], worker
        for n, server in enumerate(SERVERS, start=2):
            address = first_word(endpoints[f"{server} gRPC"])
            payload = json.dumps({"handler": "jobq.demo_tasks:add", "args": [n, n]})
            job_id = jq_ctl(usage, address, "job", "submit", "--payload", payload)["job_id"]
            done = wait_done(usage, address, job_id, within=30)
            assert json.loads(done["result"]) == n + n, done
            assert done["worker_id"] in online, (done, online)

        # Prometheus scrapes both servers and both workers (when it is installed; CI has it).
        if shutil.which("prometheus"):
            prometheus = first_word(endpoints["Prometheus"])
            targets = wait_targets_up(prometheus, within=30)
            scraped = {target["scrapeUrl"] for target in targets}
            printed = {first_word(endpoints[f"{name} metrics"]) for name in SERVERS + WORKERS}
            assert scraped == printed
            jobs = {target["labels"]["job"] for target in targets}
            assert jobs == {"jq-server", "jq-worker"}
            # Every group of the rules directory is loaded, deploy/prometheus/rules' and ours;
            # ours, evaluated, counts the four targets up.
            groups = httpx.get(f"{prometheus}api/v1/rules", timeout=5).json()["data"]["groups"]
            assert sorted(group["name"] for group in groups) == sorted(rule_groups(rules)), groups
            wait_recorded(prometheus, "cluster_test:up:sum", len(targets), within=30)
        else:
            assert endpoints["Prometheus"].startswith("not running"), endpoints

        text = stop_and_check(launcher, tree)
    finally:
        launcher.stop()

    # Workers stopped first (drained while the servers answered), then servers, then the rest.
    stopped = [
        line.split()[2] for line in text.splitlines() if line.startswith("cluster: stopped ")
    ]
    assert stopped[:4] == [*WORKERS, *SERVERS], stopped
    assert sorted(stopped[4:-1]) == sorted(name.lower() for name in running), stopped
    assert stopped[-1] == "PostgreSQL", stopped
    for label, port in ports.items():
        assert not listening(port), f"{label} ({port}) still answers after Ctrl-C"
    # The secrets made for this run appear in no log and not in what the launcher printed.
    secrets = [path.read_text().strip() for path in (state / "secrets").iterdir()]
    for log in [launcher.output, *(state / "logs").iterdir()]:
        content = log.read_text(errors="replace")
        assert not any(secret in content for secret in secrets), f"a secret is in {log}"


def test_a_program_that_fails_at_start_stops_everything_and_missing_tools_are_named(
    tmp_path: Path,
) -> None:
    """A worker that refuses its configuration (after PostgreSQL, the broker and both servers
    are up) makes the launcher stop all of them and exit 1; with redis-server and prometheus
    off PATH, it names the package that brings each and goes on without it."""
    env_file = tmp_path / "jobq.env"
    shared = (REPO / "deploy" / "jobq.env").read_text()
    env_file.write_text(f"{shared}\nJQ_WORKER_RUN_AS_USER=no-such-user-{tmp_path.name}\n")
    # /usr/sbin keeps useradd (PostgreSQL's system user when run as root); the programs the
    # launcher itself runs are found by absolute path.
    env = {**os.environ, "PATH": "/usr/sbin"}
    launcher = start_launcher(tmp_path, "--env-file", str(env_file), env=env)
    try:
        code, seen = launcher.wait_exit(within=STARTS_WITHIN_S)
    finally:
        launcher.stop()
    text = launcher.text()
    assert code == 1, text
    assert "cluster: ready" not in text
    for tool, package in (("Redis", "redis-server"), ("Prometheus", "prometheus")):
        assert f"cluster: {tool} is not installed (apt-get install {package}); running" in text
    [failed] = [line for line in text.splitlines() if line.startswith("cluster: did not start")]
    assert re.fullmatch(r"cluster: did not start: worker-[12] exited with \d+:", failed), text
    assert "no-such-user" in text  # the worker's own complaint, from its log
    stopped = [
        line.split()[2] for line in text.splitlines() if line.startswith("cluster: stopped ")
    ]
    # The other worker may still have been running: if so, it was stopped first.
    workers = [name for name in stopped if name.startswith("worker-")]
    assert stopped == [*workers, *SERVERS, "kafka", "PostgreSQL"], stopped
    assert_nothing_left(launcher, seen)
    for port in range(launcher.base_port, launcher.base_port + PORT_SPAN):
        assert not listening(port), f"port {port} still answers"


def test_make_cluster_runs_the_launcher_this_file_tests() -> None:
    """`make cluster` is tools/cluster.py under the virtualenv's Python, its arguments
    passed on: what the tests above run."""
    result = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "cluster", "CLUSTER_ARGS=--base-port 20000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.splitlines()[-1] == ".venv/bin/python tools/cluster.py --base-port 20000"
    # The settings file Compose reads is the one it reads unless told otherwise.
    usage = subprocess.run(
        [sys.executable, str(REPO / "tools" / "cluster.py"), "--help"],
        env={**os.environ, "COLUMNS": "1000"},  # argparse wraps paths at their hyphens
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert f"(default: {REPO / 'deploy' / 'jobq.env'})" in usage
    assert f"(default: {REPO / 'deploy' / 'prometheus' / 'rules'})" in usage


def test_a_killed_launcher_leaves_only_postgres_and_the_next_run_takes_it_back_and_runs_on(
    tmp_path: Path,
) -> None:
    """SIGKILL gives the launcher no chance to stop anything: its programs stop themselves
    (PR_SET_PDEATHSIG), PostgreSQL (detached by pg_ctl) stays, and the next `make cluster`
    stops it and starts it again on its own ports, with the jobs of the first run still there;
    when the broker then dies, that is reported and jobs still run."""
    first = start_launcher(tmp_path)
    second: Launcher | None = None
    tree: set[int] = set()
    try:
        endpoints = first.wait_ready(STARTS_WITHIN_S)
        usage = shlex.split(endpoints["jq-ctl"])
        address = first_word(endpoints["server-1 gRPC"])
        payload = json.dumps({"handler": "jobq.demo_tasks:add", "args": [20, 22]})
        job_id = jq_ctl(usage, address, "job", "submit", "--payload", payload)["job_id"]
        wait_done(usage, address, job_id, within=30)
        tree |= descendants(first.process.pid)
        postgres = postmaster(first.state)
        first.process.kill()
        first.process.wait()
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in tree):
            assert time.monotonic() < deadline, {pid for pid in tree if alive(pid)}
            time.sleep(0.1)
        assert alive(postgres)

        second = start_launcher(tmp_path, run=2)
        endpoints = second.wait_ready(STARTS_WITHIN_S)
        assert "was left running; stopping it first" in second.text()
        assert not alive(postgres)
        usage = shlex.split(endpoints["jq-ctl"])
        address = first_word(endpoints["server-2 gRPC"])
        again = jq_ctl(usage, address, "job", "status", job_id)
        assert again["job"]["status"] == "DONE", again
        assert json.loads(again["job"]["result"]) == 42

        # A program that dies while the cluster runs is reported, and the rest runs on.
        [broker] = processes_with(str(second.state / "kafka" / "tansu"))
        os.kill(broker, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "cluster: kafka exited (-9); the rest runs on" not in second.text():
            assert time.monotonic() < deadline, second.text()
            time.sleep(0.1)
        assert second.process.poll() is None
        job_id = jq_ctl(usage, address, "job", "submit", "--payload", payload)["job_id"]
        wait_done(usage, address, job_id, within=30)
        stop_and_check(second, descendants(second.process.pid) | postgres_processes(second.state))
    finally:
        first.stop()
        if second is not None:
            second.stop()
        # Orphans of the killed launcher, should they have outlived it (this test failing).
        for pid in tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
