"""db.schema: its default, the names it accepts and refuses, and where it can be set."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from jobq.config.loader import load_settings
from jobq.config.settings import SCHEMA_NAME_PATTERN, DbSettings
from jobq.domain.errors import ConfigError
from jobq.storage.pool import DEFAULT_SCHEMA, notify_channel

POSTGRES_NAME_BYTES = 63
"""NAMEDATALEN - 1: the longest identifier, and notification channel, PostgreSQL takes."""

schema_names = st.from_regex(SCHEMA_NAME_PATTERN, fullmatch=True).filter(
    lambda name: not name.startswith("pg_") and name != "information_schema"
)


def test_the_default_is_public_the_storage_layers_default_too() -> None:
    assert DbSettings().schema == "public" == DEFAULT_SCHEMA


@pytest.mark.parametrize("name", ["jobq", "_jobq", "app_jobs_2", "j" * 53, "public"])
def test_plain_lower_case_identifiers_are_accepted(name: str) -> None:
    assert DbSettings(schema=name).schema == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Jobq",  # folded to jobq unquoted, kept quoted: two names for one thing in psql
        "2jobs",
        "job-q",
        "job q",
        'jobq"; DROP SCHEMA public; --',
        "jöbq",
        "j" * 54,  # the channel jobq_jobs_<schema> would pass 63 bytes
    ],
)
def test_anything_else_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="1 to 53 characters from a-z 0-9 _"):
        DbSettings(schema=name)


@pytest.mark.parametrize("name", ["pg_catalog", "pg_jobq", "information_schema"])
def test_postgresql_s_own_schema_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="belong to PostgreSQL"):
        DbSettings(schema=name)


def test_set_from_the_environment_and_the_file(tmp_path: Path) -> None:
    assert load_settings(env={"JQ_DB_SCHEMA": "jobq"}).settings.db.schema == "jobq"
    path = tmp_path / "jobq.yaml"
    path.write_text("db:\n  schema: app_jobq\n", encoding="utf-8")
    loaded = load_settings(path, env={})
    assert loaded.settings.db.schema == "app_jobq"
    assert loaded.sources["db.schema"] == "file"


def test_a_bad_name_from_the_environment_names_the_field_and_its_source() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"JQ_DB_SCHEMA": "Jobs"})
    assert str(caught.value).startswith("db.schema (from JQ_DB_SCHEMA): must be 1 to 53")


@given(schema_names)
def test_every_accepted_name_gives_a_channel_postgresql_accepts(name: str) -> None:
    assert DbSettings(schema=name).schema == name
    channel = notify_channel(name)
    assert len(channel.encode()) <= POSTGRES_NAME_BYTES
    assert set(channel) <= set(string.ascii_lowercase + string.digits + "_")


def test_public_keeps_the_channel_name_of_older_releases() -> None:
    assert notify_channel("public") == "jobq_jobs"
    assert notify_channel("jobq") == "jobq_jobs_jobq"
