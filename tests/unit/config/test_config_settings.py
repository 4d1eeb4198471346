"""The settings models: defaults, validation rules, immutability and resolved_dsn()."""

from __future__ import annotations

import string
from pathlib import Path

import platformdirs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from jobq.config.settings import (
    SECRET_FIELDS,
    DbSettings,
    LoggingSettings,
    MetricsSettings,
    SchedulerSettings,
    Settings,
    WorkerSettings,
    section_models,
)

QUEUE_ALPHABET = string.ascii_letters + string.digits + "_.-"


def test_defaults_run_the_embedded_setup() -> None:
    settings = Settings()
    # Loopback only, with no authentication configured out of the box.
    assert settings.grpc.host == "127.0.0.1"
    assert settings.health.host == settings.metrics.host == "127.0.0.1"
    assert settings.auth.tokens == ()
    assert not settings.grpc.tls_client_ca
    assert settings.worker.allowed_commands == ()
    assert settings.grpc.port == 50051
    assert settings.db.resolved_dsn() is None
    assert settings.db.embedded_data_dir == Path(platformdirs.user_data_dir("jobq")) / "postgres"
    assert settings.redis.enabled is False
    assert settings.kafka.enabled is False
    assert settings.scheduler.interval_ms == 500
    assert settings.worker.queues == ("default",)
    assert settings.limits.max_payload_bytes == 1024 * 1024
    assert (settings.metrics.port, settings.health.port) == (9090, 8080)
    assert (settings.logging.level, settings.logging.format) == ("info", "json")
    assert settings.ctl.output == "table"


def test_models_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.grpc.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.db = DbSettings()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.worker.queues.append("other")  # type: ignore[attr-defined]


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="prot"):
        DbSettings(prot=1)  # type: ignore[call-arg]


def test_secret_fields_exist_and_stay_out_of_repr() -> None:
    settings = Settings.model_validate(
        {
            "db": {"password": "pg-secret"},
            "redis": {"password": "redis-secret"},
            "kafka": {"sasl_password": "kafka-secret"},
            "ctl": {"token": "ctl-secret"},
            "dashboard": {"session_secret": "dashboard-secret-" * 2},
        }
    )
    models = section_models()
    for dotted in SECRET_FIELDS:
        section, name = dotted.split(".")
        assert name in models[section].model_fields
    text = repr(settings)
    for value in ("pg-secret", "redis-secret", "kafka-secret", "ctl-secret", "dashboard-secret"):
        assert value not in text


def test_resolved_dsn_prefers_an_explicit_dsn() -> None:
    db = DbSettings(dsn="postgresql://a@b/c", host="ignored")
    assert db.resolved_dsn() == "postgresql://a@b/c"


def test_resolved_dsn_is_built_from_host_and_quotes_credentials() -> None:
    db = DbSettings(host="db.internal", port=6543, name="jobs", user="us@er", password="p@ss:w/rd")
    assert db.resolved_dsn() == "postgresql://us%40er:p%40ss%3Aw%2Frd@db.internal:6543/jobs"


def test_resolved_dsn_without_password_and_with_ipv6_host() -> None:
    assert DbSettings(host="::1").resolved_dsn() == "postgresql://jobq@[::1]:5432/jobq"


def test_resolved_dsn_is_none_for_the_embedded_server() -> None:
    assert DbSettings(user="x", password="y").resolved_dsn() is None


def test_pool_max_below_min_is_rejected_even_when_max_is_the_default() -> None:
    with pytest.raises(ValidationError, match=r"db.pool_min_size \(20\)"):
        DbSettings(pool_min_size=20)
    assert DbSettings(pool_min_size=10, pool_max_size=10).pool_max_size == 10


def test_retry_max_below_base_is_rejected() -> None:
    with pytest.raises(ValidationError, match="retry_base_delay_s"):
        SchedulerSettings(retry_base_delay_s=10, retry_max_delay_s=5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interval_ms", 0),
        ("batch_size", 0),
        ("batch_size", 10001),
        ("assignment_timeout_s", 0),
        ("retry_base_delay_s", -1),
    ],
)
def test_scheduler_ranges(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        SchedulerSettings.model_validate({field: value})


def test_zero_port_disables_endpoints_but_not_grpc() -> None:
    assert MetricsSettings(port=0).port == 0
    assert WorkerSettings(health_port=0).health_port == 0
    with pytest.raises(ValidationError):
        Settings.model_validate({"grpc": {"port": 0}})
    with pytest.raises(ValidationError):
        MetricsSettings(port=65536)


def test_logging_level_is_case_insensitive_and_stored_lower_case() -> None:
    assert LoggingSettings(level="WARNING").level == "warning"
    with pytest.raises(ValidationError):
        LoggingSettings(level="verbose")


def test_worker_queues_must_not_be_empty() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        WorkerSettings(queues=())


@given(st.lists(st.text(QUEUE_ALPHABET, min_size=1, max_size=128), min_size=1, max_size=5))
def test_valid_queue_names_are_accepted(names: list[str]) -> None:
    assert WorkerSettings(queues=tuple(names)).queues == tuple(names)


@given(
    st.one_of(
        st.just(""),
        st.text(QUEUE_ALPHABET, min_size=129, max_size=200),
        st.text(min_size=1, max_size=20).filter(lambda s: any(c not in QUEUE_ALPHABET for c in s)),
    )
)
def test_invalid_queue_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match="queue names"):
        WorkerSettings(queues=("default", name))


@pytest.mark.parametrize("module", ["tasks", "my_app.tasks", "a.b.c"])
def test_imports_accept_module_names(module: str) -> None:
    assert WorkerSettings(imports=(module,)).imports == (module,)


@pytest.mark.parametrize("module", ["", "1tasks", "my-app", "a..b", "pkg.mod:func"])
def test_imports_reject_non_module_names(module: str) -> None:
    with pytest.raises(ValidationError, match="module name"):
        WorkerSettings(imports=(module,))


def test_embedded_data_dir_expands_the_home_directory() -> None:
    assert DbSettings(embedded_data_dir=Path("~/pg")).embedded_data_dir == Path.home() / "pg"
