"""Checks of the dashboard's form fields and URL parts, before any RPC is called.

Every check raises `FormError` with a sentence for the operator; the page turns it into an
error notice (an action) or a 400/404 page (a URL), and calls nothing: a bad form changes
nothing. The rules are the domain's own (jobq.domain.validation), so the page refuses what the
RPC would refuse, with the same words, without a round trip.
"""

from __future__ import annotations

import re

from starlette.datastructures import FormData

from jobq.domain.errors import InvalidArgument
from jobq.domain.validation import check_queue_name, parse_uuid

__all__ = ["FormError", "job_id", "number", "queue_name", "text"]

_MAX_TEXT = 1024


class FormError(ValueError):
    """A form field or URL part that cannot be used; str() is the message for people."""


def text(form: FormData, field: str, *, max_chars: int = _MAX_TEXT) -> str:
    """The field's value, stripped; "" when absent. A file upload or an over-long value is
    a FormError."""
    value = form.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError(f"{field}: expected text")
    if len(value) > max_chars:
        raise FormError(f"{field}: at most {max_chars} characters")
    return value.strip()


def queue_name(value: str) -> str:
    try:
        return check_queue_name(value)
    except InvalidArgument as exc:
        raise FormError(str(exc)) from None


def job_id(value: str) -> str:
    """The canonical text of a job id (a UUID)."""
    return uuid_text(value, "job id")


def uuid_text(value: str, what: str) -> str:
    """The canonical text of a UUID; the error names the field as `what`."""
    try:
        return str(parse_uuid(value.strip(), what))
    except InvalidArgument as exc:
        raise FormError(str(exc)) from None


def number(value: str, what: str, low: int, high: int) -> int | None:
    """An integer in low..high, or None for an empty field."""
    if value == "":
        return None
    if not re.fullmatch(r"-?[0-9]{1,10}", value):
        raise FormError(f"{what} must be a whole number, got {value[:20]!r}")
    parsed = int(value)
    if not low <= parsed <= high:
        raise FormError(f"{what} must be between {low} and {high}, got {parsed}")
    return parsed
