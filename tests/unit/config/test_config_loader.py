"""load_settings(): precedence, environment parsing, error messages and warnings."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.config.loader import LoadedSettings, env_var_name, iter_fields, load_settings
from jobq.config.settings import Settings
from jobq.domain.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "jobq.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(
    path: Path | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, object] | None = None,
) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env or {}, overrides=overrides)
    message = str(caught.value)
    assert "Traceback" not in message
    return message


def test_no_file_and_empty_env_give_the_defaults() -> None:
    loaded = load_settings(env={})
    assert loaded.settings == Settings()
    assert loaded.warnings == ()
    assert set(loaded.sources) == {f"{s}.{n}" for s, n, _ in iter_fields()}
    assert set(loaded.sources.values()) == {"default"}


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JQ_GRPC_PORT", "6000")
    loaded = load_settings()
    assert loaded.settings.grpc.port == 6000
    assert loaded.sources["grpc.port"] == "env"


def test_file_values_are_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "grpc:\n  port: 6001\nworker:\n  queues: [a, b]\nlogging:\n  level: DEBUG\n",
    )
    loaded = load_settings(path, env={})
    assert loaded.settings.grpc.port == 6001
    assert loaded.settings.worker.queues == ("a", "b")
    assert loaded.settings.logging.level == "debug"
    assert loaded.sources["grpc.port"] == "file"
    assert loaded.sources["grpc.host"] == "default"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "db:\n", "db:\n  # port: 1\n"])
def test_empty_file_or_section_is_fine(tmp_path: Path, text: str) -> None:
    assert load_settings(write(tmp_path, text), env={}).settings == Settings()


def test_env_beats_file_and_flags_beat_env(tmp_path: Path) -> None:
    path = write(tmp_path, "grpc:\n  port: 6001\n  host: 127.0.0.1\nworker:\n  concurrency: 2\n")
    env = {"JQ_GRPC_PORT": "6002", "JQ_WORKER_CONCURRENCY": "3"}
    loaded = load_settings(path, env=env, overrides={"grpc.port": 6003, "worker.concurrency": None})
    assert loaded.settings.grpc.port == 6003
    assert loaded.settings.grpc.host == "127.0.0.1"
    assert loaded.settings.worker.concurrency == 3
    assert loaded.sources["grpc.port"] == "flag"
    assert loaded.sources["grpc.host"] == "file"
    assert loaded.sources["worker.concurrency"] == "env"


def test_list_from_env_is_comma_separated() -> None:
    env = {"JQ_WORKER_QUEUES": " a, b ,,c", "JQ_WORKER_IMPORTS": "x.tasks,y"}
    worker = load_settings(env=env).settings.worker
    assert worker.queues == ("a", "b", "c")
    assert worker.imports == ("x.tasks", "y")


def test_list_flag_may_be_a_comma_separated_string_or_a_list() -> None:
    assert load_settings(env={}, overrides={"worker.queues": "a,b"}).settings.worker.queues == (
        "a",
        "b",
    )
    loaded = load_settings(env={}, overrides={"worker.imports": ["m1", "m2"]})
    assert loaded.settings.worker.imports == ("m1", "m2")


@given(st.lists(st.text(string.ascii_letters + string.digits + "_.-", min_size=1), min_size=1))
def test_queue_lists_round_trip_through_the_environment(names: list[str]) -> None:
    env = {"JQ_WORKER_QUEUES": ",".join(names)}
    assert load_settings(env=env).settings.worker.queues == tuple(names)


@given(st.integers(min_value=1, max_value=10_000))
def test_integers_parse_from_the_environment(value: int) -> None:
    env = {"JQ_SCHEDULER_BATCH_SIZE": str(value)}
    assert load_settings(env=env).settings.scheduler.batch_size == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("No", False),
    ],
)
def test_booleans_from_env(text: str, expected: bool) -> None:
    assert load_settings(env={"JQ_REDIS_ENABLED": text}).settings.redis.enabled is expected


def test_bad_boolean_from_env_names_field_and_variable() -> None:
    message = config_error(env={"JQ_KAFKA_ENABLED": "maybe"})
    assert message == (
        "kafka.enabled (from JQ_KAFKA_ENABLED): must be one of true, false, 1, 0, yes, no, "
        "got maybe"
    )


def test_range_error_from_env() -> None:
    message = config_error(env={"JQ_SCHEDULER_INTERVAL_MS": "-5"})
    assert message == (
        "scheduler.interval_ms (from JQ_SCHEDULER_INTERVAL_MS): must be greater than 0, got -5"
    )


def test_not_a_number_from_env() -> None:
    message = config_error(env={"JQ_GRPC_PORT": "http"})
    assert message == "grpc.port (from JQ_GRPC_PORT): must be a valid integer, got http"


def test_range_error_from_file(tmp_path: Path) -> None:
    path = write(tmp_path, "grpc:\n  port: 70000\n")
    assert config_error(path) == (
        f"grpc.port (from config file {path}): must be less than or equal to 65535, got 70000"
    )


def test_type_errors_from_the_file_read_plainly(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  queues: default\n  concurrency: 2.5\n")
    assert config_error(path).splitlines() == [
        f"worker.concurrency (from config file {path}): must be a valid integer, got 2.5",
        f"worker.queues (from config file {path}): must be a list "
        "(in YAML, [a, b]; in the environment, a,b), got default",
    ]


def test_enum_error_names_the_choices(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "logging:\n  format: xml\n"))
    assert message.startswith("logging.format (from config file ")
    assert "must be 'json' or 'console', got xml" in message


def test_pool_sizes_cross_field_error_names_pool_max_size() -> None:
    message = config_error(env={"JQ_DB_POOL_MIN_SIZE": "20"})
    assert message == "db.pool_max_size (default): must be >= db.pool_min_size (20), got 10"


def test_bad_queue_name_error_names_the_field() -> None:
    message = config_error(env={"JQ_WORKER_QUEUES": "good,bad/name"})
    assert message.startswith("worker.queues (from JQ_WORKER_QUEUES): queue names are")
    assert message.endswith("got bad/name")


def test_unknown_file_key_is_an_error_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "grpc:\n  prot: 1\n")
    assert config_error(path) == (
        f"config file {path}: unknown field 'grpc.prot' (did you mean 'grpc.port'?)"
    )


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "databse:\n  host: x\n")
    assert config_error(path).startswith(f"config file {path}: unknown section 'databse'")


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "grpc: [1, 2]\n")
    assert config_error(path) == f"config file {path}: section 'grpc' must be a mapping, got list"


def test_bad_yaml_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "grpc:\n  port: [1,\n")
    message = config_error(path)
    assert message.startswith(f"config file {path}: not valid YAML: ")
    assert "line " in message
    assert "\n" not in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- grpc\n")
    assert config_error(path) == (
        f"config file {path}: the top level must be a mapping of sections, got list"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert config_error(path) == f"config file {path}: not found"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert config_error(tmp_path) == f"config file {tmp_path}: is a directory, not a file"


def test_unknown_flag_key_is_an_error() -> None:
    assert config_error(overrides={"grpc.prot": 1}) == (
        "unknown setting 'grpc.prot' (from command-line flag)"
    )


def test_flag_errors_say_they_come_from_a_flag() -> None:
    assert config_error(overrides={"worker.concurrency": 0}) == (
        "worker.concurrency (from command-line flag): must be greater than or equal to 1, got 0"
    )


def test_every_problem_is_reported_one_per_line(tmp_path: Path) -> None:
    path = write(tmp_path, "grpc:\n  prot: 1\nlogging:\n  level: loud\n")
    message = config_error(path, env={"JQ_SCHEDULER_BATCH_SIZE": "0"})
    lines = message.splitlines()
    assert len(lines) == 3
    assert any(line.startswith("logging.level") for line in lines)
    assert any(
        line.startswith("scheduler.batch_size (from JQ_SCHEDULER_BATCH_SIZE)") for line in lines
    )


def test_foreign_jq_variables_are_ignored_silently() -> None:
    env = {"JQ_TEST_DSN": "postgresql://x", "JQ_": "", "jq_grpc_port": "1", "JQ_grpc_port": "1"}
    loaded = load_settings(env=env)
    assert loaded.settings == Settings()
    assert loaded.warnings == ()


def test_unknown_field_of_known_section_warns() -> None:
    loaded = load_settings(env={"JQ_DB_PASWORD": "x"})
    assert loaded.warnings == (
        "JQ_DB_PASWORD is ignored: section 'db' has no field 'pasword' "
        "(did you mean JQ_DB_PASSWORD?)",
    )


def test_secret_in_file_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "db:\n  password: hunter2\nctl:\n  token: abc\n", name="x.yaml")
    loaded = load_settings(path, env={})
    assert loaded.settings.db.password == "hunter2"
    assert loaded.warnings == (
        f"db.password is set in the config file {path}; "
        "pass secrets through the environment (JQ_DB_PASSWORD) instead",
        f"ctl.token is set in the config file {path}; "
        "pass secrets through the environment (JQ_CTL_TOKEN) instead",
    )


def test_secret_from_env_does_not_warn(tmp_path: Path) -> None:
    path = write(tmp_path, "db:\n  host: db.internal\n  password: ''\n")
    loaded = load_settings(path, env={"JQ_DB_PASSWORD": "hunter2", "JQ_REDIS_PASSWORD": "x"})
    assert loaded.settings.db.password == "hunter2"
    assert loaded.sources["db.password"] == "env"
    assert loaded.warnings == ()


def test_password_inside_a_dsn_in_the_file_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "db:\n  dsn: postgresql://jobq:hunter2@db/jobq\n")
    (warning,) = load_settings(path, env={}).warnings
    assert warning.startswith("db.dsn in the config file")
    assert "JQ_DB_DSN" in warning
    assert "hunter2" not in warning


def test_secret_values_are_never_echoed_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "db:\n  password: 123456\n")
    message = config_error(path)
    assert message == (
        f"db.password (from config file {path}): must be a string (in YAML, put it in quotes)"
    )
    assert "123456" not in message


def test_loaded_settings_are_immutable() -> None:
    loaded = load_settings(env={})
    with pytest.raises(AttributeError):
        loaded.settings = Settings()  # type: ignore[misc]
    with pytest.raises(TypeError):
        loaded.sources["grpc.port"] = "flag"  # type: ignore[index]
    assert isinstance(loaded, LoadedSettings)


def test_env_var_name() -> None:
    assert env_var_name("db", "password") == "JQ_DB_PASSWORD"
    assert env_var_name("scheduler", "interval_ms") == "JQ_SCHEDULER_INTERVAL_MS"
