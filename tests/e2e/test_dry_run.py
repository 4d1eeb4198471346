"""`jq-server --dry-run`: one line per component, exit 0 only when every configured one answers.

The checks run in-process against real PostgreSQL, redis-server and a Kafka-protocol broker
(and a closed port for the failures); the last tests run the real `jq-server --dry-run` program.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.kafka_broker import running_kafka_broker
from support.processes import free_port, program
from support.redis_server import RedisServer, redis_server_binary, running_redis_server

from jobq.config import Settings, load_settings
from jobq.server import dry_run as dry_run_module
from jobq.server.dry_run import dry_run
from jobq.storage.embedded import EmbeddedPostgres

COMPONENTS = ("postgres", "redis", "kafka")


def settings(**overrides: object) -> Settings:
    """Settings from dotted overrides only (the environment of the test run is ignored)."""
    return load_settings(None, env={}, overrides=overrides).settings


async def run(config: Settings) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = await dry_run(config, out)
    return code, out.getvalue().splitlines()


def by_component(lines: list[str]) -> dict[str, str]:
    """Line per component; fails unless there is exactly one line for each, in order."""
    assert [line.split(":", 1)[0] for line in lines] == list(COMPONENTS), lines
    return {line.split(":", 1)[0]: line for line in lines}


def closed_port_url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{free_port()}/0"


def redis_version() -> str:
    """The version of the redis-server binary the tests start ("7.0.15")."""
    binary = redis_server_binary()
    assert binary is not None
    reply = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return reply.stdout.split("v=", 1)[1].split()[0]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path / "redis") as server:
        yield server


async def test_reachable_postgres_with_redis_and_kafka_off_exits_0(db_dsn: str) -> None:
    code, lines = await run(settings(**{"db.dsn": db_dsn}))

    found = by_component(lines)
    assert code == 0
    assert found["postgres"].startswith("postgres: ok (PostgreSQL ")
    assert urlsplit(db_dsn).path.lstrip("/") in found["postgres"]  # names the database
    assert found["redis"] == "redis: disabled"
    assert found["kafka"] == "kafka: disabled"


async def test_unreachable_redis_fails_the_run(db_dsn: str) -> None:
    config = settings(
        **{"db.dsn": db_dsn, "redis.enabled": True, "redis.url": closed_port_url("redis")}
    )

    code, lines = await run(config)

    found = by_component(lines)
    assert code == 1
    assert found["postgres"].startswith("postgres: ok")
    assert found["redis"].startswith("redis: FAILED (")


async def test_reachable_redis_is_ok(db_dsn: str, redis_server: RedisServer) -> None:
    config = settings(**{"db.dsn": db_dsn, "redis.enabled": True, "redis.url": redis_server.url})

    code, lines = await run(config)

    assert code == 0
    assert by_component(lines)["redis"].startswith(f"redis: ok (Redis {redis_version()} at ")


@pytest.mark.parametrize("where", ["redis.password", "redis.url"])
async def test_a_redis_password_is_used_and_not_printed(
    where: str, db_dsn: str, tmp_path: Path
) -> None:
    with running_redis_server(tmp_path / "redis", password="Redis-Pw-3") as server:
        auth = (
            {"redis.url": server.url, "redis.password": "Redis-Pw-3"}
            if where == "redis.password"
            else {"redis.url": f"redis://:Redis-Pw-3@127.0.0.1:{server.port}/0"}
        )
        config = settings(**{"db.dsn": db_dsn, "redis.enabled": True, **auth})

        code, lines = await run(config)

    assert code == 0
    assert by_component(lines)["redis"] == (
        f"redis: ok (Redis {redis_version()} at redis://127.0.0.1:{server.port}/0)"
    )
    assert "Redis-Pw-3" not in "\n".join(lines)


async def test_unreachable_postgres_fails_and_no_password_is_printed(tmp_path: Path) -> None:
    password = "pg-Secret-42"
    config = settings(
        **{
            "db.host": "127.0.0.1",
            "db.port": free_port(),
            "db.password": password,
            "db.connect_timeout_s": 2,
        }
    )

    code, lines = await run(config)

    assert code == 1
    assert by_component(lines)["postgres"].startswith("postgres: FAILED (127.0.0.1:")
    assert password not in "\n".join(lines)


async def test_a_secret_echoed_by_a_library_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    async def echoes(dsn: str, timeout_s: float) -> str:
        raise OSError(f"cannot log in as jobq with Long-Secret-1 (or pw {dsn})")

    monkeypatch.setattr(dry_run_module, "_server_version", echoes)
    config = settings(**{"db.dsn": "postgresql://jobq:Long-Secret-1@db.example:5432/jobq"})

    code, lines = await run(config)

    line = by_component(lines)["postgres"]
    assert code == 1
    assert "Long-Secret-1" not in line
    assert line.startswith("postgres: FAILED (db.example:5432/jobq: cannot log in as jobq with ***")


async def test_a_wrong_redis_password_fails_without_printing_it(
    db_dsn: str, tmp_path: Path
) -> None:
    with running_redis_server(tmp_path / "redis", password="right-one") as server:
        url = f"redis://:Wrong-Pw-7@127.0.0.1:{server.port}/0"
        config = settings(**{"db.dsn": db_dsn, "redis.enabled": True, "redis.url": url})

        code, lines = await run(config)

    assert code == 1
    assert by_component(lines)["redis"].startswith("redis: FAILED (redis://127.0.0.1:")
    assert "Wrong-Pw-7" not in "\n".join(lines)


async def test_unreachable_kafka_fails_without_printing_the_sasl_password(db_dsn: str) -> None:
    config = settings(
        **{
            "db.dsn": db_dsn,
            "kafka.enabled": True,
            "kafka.bootstrap_servers": f"127.0.0.1:{free_port()}",
            "kafka.sasl_username": "alice",
            "kafka.sasl_password": "Kafka-Pw-9",
        }
    )

    code, lines = await run(config)

    assert code == 1
    assert by_component(lines)["kafka"].startswith("kafka: FAILED (127.0.0.1:")
    assert "Kafka-Pw-9" not in "\n".join(lines)


async def test_a_reachable_kafka_broker_is_ok(db_dsn: str, tmp_path: Path) -> None:
    with running_kafka_broker(tmp_path / "kafka") as broker:
        config = settings(
            **{
                "db.dsn": db_dsn,
                "kafka.enabled": True,
                "kafka.bootstrap_servers": broker.bootstrap_servers,
            }
        )
        code, lines = await run(config)

    assert code == 0, lines
    assert by_component(lines)["kafka"] == (
        f"kafka: ok (1 broker(s) via {broker.bootstrap_servers})"
    )


async def test_embedded_default_is_checked_but_not_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "pg"

    code, lines = await run(settings(**{"db.embedded_data_dir": str(data_dir)}))

    assert code == 0
    assert by_component(lines)["postgres"] == (
        f"postgres: ok (embedded PostgreSQL in {data_dir}: available (not started by --dry-run))"
    )
    assert not data_dir.exists()


async def test_an_unusable_embedded_data_dir_fails(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "pg"
    not_a_dir.write_text("a file where the data directory should be")

    code, lines = await run(settings(**{"db.embedded_data_dir": str(not_a_dir)}))

    assert code == 1
    assert by_component(lines)["postgres"] == (
        f"postgres: FAILED (embedded PostgreSQL in {not_a_dir}: {not_a_dir} is not a directory)"
    )


async def test_a_running_embedded_server_is_asked_for_its_version(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    embedded = EmbeddedPostgres(data_dir)  # the port jq-server's embedded default uses
    embedded.start()
    try:
        code, lines = await run(settings(**{"db.embedded_data_dir": str(data_dir)}))
    finally:
        embedded.stop(mode="immediate")

    assert code == 0
    assert by_component(lines)["postgres"].startswith(
        f"postgres: ok (embedded PostgreSQL in {data_dir}: running PostgreSQL "
    )


# --- the real program ----------------------------------------------------------------------


def run_program(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JQ_")}
    return subprocess.run(
        [program("jq-server"), "--dry-run", "--log-level", "warning"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def component_lines(stdout: str) -> list[str]:
    """The dry-run lines among stdout (log lines, JSON objects, are left out)."""
    return [line for line in stdout.splitlines() if line.split(":", 1)[0] in COMPONENTS]


def test_jq_server_dry_run_exits_0_when_everything_configured_answers(db_dsn: str) -> None:
    result = run_program({"JQ_DB_DSN": db_dsn})

    assert result.returncode == 0, result.stderr
    found = by_component(component_lines(result.stdout))
    assert found["postgres"].startswith("postgres: ok")
    assert found["redis"] == "redis: disabled"
    assert found["kafka"] == "kafka: disabled"


def test_jq_server_dry_run_exits_1_when_redis_does_not_answer(db_dsn: str) -> None:
    result = run_program(
        {
            "JQ_DB_DSN": db_dsn,
            "JQ_REDIS_ENABLED": "true",
            "JQ_REDIS_URL": closed_port_url("redis"),
            "JQ_REDIS_PASSWORD": "Env-Secret-5",
        }
    )

    assert result.returncode == 1, result.stderr
    found = by_component(component_lines(result.stdout))
    assert found["postgres"].startswith("postgres: ok")
    assert found["redis"].startswith("redis: FAILED (")
    assert "Env-Secret-5" not in result.stdout + result.stderr
