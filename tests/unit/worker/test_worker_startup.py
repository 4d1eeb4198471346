"""jq-worker's start-up checks: its own listeners follow the exposure rule, mistakes are
ConfigErrors before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobq.config import Settings, load_settings
from jobq.domain.errors import ConfigError
from jobq.worker.app import prepare_worker


def settings(**overrides: Any) -> Settings:
    base: dict[str, object] = {"worker.allow_root_jobs": True}
    base.update(overrides)
    return load_settings(None, env={}, overrides=base).settings


def test_loopback_listeners_need_no_authentication() -> None:
    setup = prepare_worker(settings())
    assert not setup.credentials.authenticated


def test_a_listener_on_every_interface_without_authentication_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        prepare_worker(settings(**{"health.host": "0.0.0.0", "metrics.host": "0.0.0.0"}))
    lines = str(raised.value).splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["health.host", "metrics.host"]
    assert all("--insecure" in line for line in lines)


def test_only_listeners_that_are_on_count() -> None:
    prepare_worker(settings(**{"health.host": "0.0.0.0", "worker.health_port": 0}))
    with pytest.raises(ConfigError, match=r"^metrics\.host is 0\.0\.0\.0"):
        prepare_worker(settings(**{"metrics.host": "0.0.0.0", "worker.health_port": 0}))


def test_insecure_or_a_token_allows_them(tmp_path: Path) -> None:
    exposed = {"health.host": "0.0.0.0", "metrics.host": "0.0.0.0"}
    prepare_worker(settings(**exposed, **{"grpc.insecure": True}))
    token = tmp_path / "token"
    token.write_text("secret\n")
    setup = prepare_worker(settings(**exposed, **{"worker.token_file": str(token)}))
    assert setup.credentials.authenticated


def test_an_unknown_job_user_stops_the_worker_before_it_starts() -> None:
    with pytest.raises(ConfigError, match=r"^worker\.run_as_user: no such user 'jobq-nobody-x'"):
        prepare_worker(settings(**{"worker.run_as_user": "jobq-nobody-x"}))
