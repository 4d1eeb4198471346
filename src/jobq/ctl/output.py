"""Printing a reply as a table (for people) or as JSON or YAML (for scripts).

JSON and YAML print the whole response message (see `documents` for the rules). Tables show
what an operator scans for: status, age, a payload preview. This module holds the printer and
the cell helpers the table views share; `job_tables` and `admin_tables` hold the views.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from jobq.ctl.documents import bytes_value, dump_json, dump_yaml, enum_name, to_document
from jobq.ctl.durations import age, iso_utc

OutputFormat = Literal["table", "json", "yaml"]
TableView = Callable[[], RenderableType]

PAGE_WIDTH = 1000
"""Tables are laid out at their natural width, never squeezed to the terminal's: rich would cut
or drop columns (ids included) to fit; a terminal wraps a long line instead."""
NONE = "-"
"""What an empty cell shows."""

_STATUS_STYLES: dict[str, str] = {
    "PENDING": "yellow",
    "ASSIGNED": "cyan",
    "RUNNING": "blue",
    "DONE": "green",
    "FAILED": "red",
    "DEAD_LETTERED": "bold red",
    "WAITING": "magenta",
    "ONLINE": "green",
    "DRAINING": "yellow",
    "OFFLINE": "dim",
    "HEALTHY": "green",
    "UNHEALTHY": "bold red",
    "DISABLED": "dim",
}


def make_console(file: TextIO | None = None) -> Console:
    """A console on stdout: colours on a terminal, plain text in a pipe, and a wide page."""
    return Console(
        file=file or sys.stdout,
        width=PAGE_WIDTH,
        highlight=False,
        soft_wrap=True,
        emoji=False,
        markup=False,
    )


class Printer:
    """Prints each reply once, in the chosen format."""

    def __init__(self, output: OutputFormat, console: Console | None = None) -> None:
        self.output = output
        self.console = console or make_console()

    def show(self, reply: Message | Mapping[str, Any], table: TableView) -> None:
        """The reply as JSON or YAML, or `table()` rendered for people."""
        if self.output == "table":
            with self.console.capture() as captured:
                self.console.print(table())
            lines = captured.get().splitlines()
            self.console.file.write("".join(line.rstrip(" ") + "\n" for line in lines))
            return
        document = to_document(reply) if isinstance(reply, Message) else dict(reply)
        text = dump_json(document) if self.output == "json" else dump_yaml(document)
        self.console.file.write(text + "\n")


# Cells shared by the views.


def status_text(name: str | None) -> Text:
    """A status (job, worker or component) coloured by what it means."""
    if not name:
        return Text(NONE)
    return Text(name, style=_STATUS_STYLES.get(name, ""))


def enum_field(message: Message, name: str) -> str | None:
    """The enum field `name` of `message` by name without its prefix (`PENDING`)."""
    field = message.DESCRIPTOR.fields_by_name[name]
    return enum_name(field.enum_type, getattr(message, name))


def instant(message: Message, name: str) -> str:
    """The timestamp field `name` in ISO 8601 UTC, or `-` when unset."""
    if not message.HasField(name):
        return NONE
    return iso_utc(getattr(message, name).ToDatetime(tzinfo=UTC))


def when(message: Message, name: str, now: datetime, *, exact: bool = False) -> str:
    """The timestamp field `name` as an age (`3s ago`), after the ISO time when `exact`."""
    if not message.HasField(name):
        return NONE
    value = getattr(message, name).ToDatetime(tzinfo=UTC)
    return f"{iso_utc(value)} ({age(value, now)})" if exact else age(value, now)


def preview(data: bytes | str, limit: int = 48) -> str:
    """One line of at most `limit` characters: newlines shown as `\\n`, the rest cut with `…`."""
    if isinstance(data, bytes):
        value = bytes_value(data)
        if isinstance(value, dict):
            return f"<{len(data)} bytes, not UTF-8>"
        data = value
    text = data.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    if not text:
        return NONE
    return text if len(text) <= limit else text[: limit - 1] + "…"


def or_none(value: object) -> str:
    """`value` as text, or `-` when it is empty or zero."""
    return NONE if value in (None, "", 0) else str(value)


def short_id(value: str) -> str:
    """The first 8 characters of a worker id (random UUIDs): enough to tell them apart in a
    table; `-` for none. Job ids (UUIDv7, time first) are always shown whole."""
    return value[:8] if value else NONE


def list_table(headers: Sequence[str], rows: Iterable[Sequence[str | Text]]) -> Table:
    """An aligned table in the style of kubectl: upper-case headers, no borders."""
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for header in headers:
        table.add_column(header.upper(), no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    return table


def detail_table(rows: Iterable[tuple[str, str | Text]]) -> Table:
    """`Label  value` lines, the labels aligned, for one object."""
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(label, value)
    return table


def now_utc() -> datetime:
    """The moment ages are measured from."""
    return datetime.now(UTC)
