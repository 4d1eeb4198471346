"""The named-query loader and the ListJobs page token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from jobq.domain.errors import InvalidArgument
from jobq.storage.page_token import decode_page_token, encode_page_token
from jobq.storage.queries import load_queries, parse_queries


def test_parse_queries_splits_on_name_lines_and_drops_comments() -> None:
    text = """
-- file header
-- name: first
-- What it does.
SELECT 1;

-- name: second
-- Another.
SELECT 2
FROM x;
"""
    assert parse_queries(text) == {"first": "SELECT 1", "second": "SELECT 2\nFROM x"}


def test_duplicate_and_empty_queries_are_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")
    with pytest.raises(ValueError, match="no statement"):
        parse_queries("-- name: a\n-- only a comment\n")


def test_the_package_queries_load() -> None:
    queries = load_queries()
    for name in ("jobs_insert", "jobs_claim", "jobs_complete", "queue_create", "worker_register"):
        assert name in queries
    assert "FOR UPDATE SKIP LOCKED" in queries["jobs_claim"]


def test_page_token_round_trip() -> None:
    created = datetime(2026, 11, 22, 7, 30, 1, 123456, tzinfo=UTC)
    job_id = uuid.uuid4()
    token = encode_page_token(created, job_id)
    assert "=" not in token
    assert decode_page_token(token) == (created, job_id)


@pytest.mark.parametrize(
    "token", ["", "abc", "!!!!", "eyJjIjoiMjAyNi0xMS0yMlQwNzozMDowMSIsImoiOiJ4In0"]
)
def test_forged_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument):
        decode_page_token(token)
