"""How `jq-ctl events tail` prints lifecycle events: a table that grows as events arrive, or
JSON and YAML documents.

Without `--follow` the output is one document, `{"events": [...]}`, like `job logs`. With
`--follow` it never ends, so each event is a document of its own as it arrives: one line of
JSON per event (JSON Lines, which `jq` and log shippers read as they come) or one YAML document
per event (`---` separated). Either way an event is the JobEvent message under the documents
module's rules, the same from PostgreSQL and from Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text

from jobq.ctl.documents import dump_yaml, to_document
from jobq.ctl.output import (
    NONE,
    Printer,
    enum_field,
    instant,
    or_none,
    preview,
    short_id,
    status_text,
)

if TYPE_CHECKING:
    from jobq.rpc._gen import common_pb2 as cpb

HEADERS = ("id", "time", "job", "queue", "from → to", "reason", "worker", "attempt", "detail")
DETAIL_PREVIEW = 60
"""Characters of an event's detail shown in the table; JSON and YAML carry all of it."""

# The narrowest each column starts (besides its header): the widths of the values those columns
# take (a time, a job id, the longest transition and reason), so a tail that starts empty is
# aligned with what comes later. Queue names and ids vary: they start as wide as their first
# values, or (a tail that starts with no event) as _EMPTY_START_WIDTHS.
_MIN_WIDTHS = {"time": 27, "job": 36, "from → to": 24, "reason": 18, "worker": 8}
_EMPTY_START_WIDTHS = {**_MIN_WIDTHS, "id": 8, "queue": 16}
_GAP = "  "


def event_cells(event: cpb.JobEvent) -> list[Text]:
    """One table row: the cells of HEADERS for `event`."""
    transition = status_text(enum_field(event, "from_status"))
    transition.append(" → ")
    transition.append_text(status_text(enum_field(event, "to_status")))
    return [
        Text(str(event.id)),
        Text(instant(event, "occurred_at")),
        Text(event.job_id or NONE),
        Text(event.queue_name or NONE),
        transition,
        Text(event.reason or NONE),
        Text(short_id(event.worker_id)),
        Text(or_none(event.attempt)),
        Text(preview(event.detail, DETAIL_PREVIEW)),
    ]


class EventTable:
    """Aligned rows under one header, printed batch by batch as events arrive.

    Lines already printed cannot move, so the columns keep the widths of the first batch (at
    least their headers' and _MIN_WIDTHS); a later, longer value pushes the rest of its own line
    to the right, as `kubectl get --watch` does, rather than re-aligning the screen."""

    def __init__(self) -> None:
        self._widths: list[int] | None = None

    def lines(self, events: Sequence[cpb.JobEvent]) -> list[Text]:
        """The rows of `events`, after the header on the first call."""
        rows = [event_cells(event) for event in events]
        out: list[Text] = []
        if self._widths is None:
            header = [Text(name.upper(), style="bold") for name in HEADERS]
            least = _MIN_WIDTHS if rows else _EMPTY_START_WIDTHS
            self._widths = [
                max([least.get(name, 0), *(row[i].cell_len for row in [header, *rows])])
                for i, name in enumerate(HEADERS)
            ]
            out.append(self._line(header))
        out.extend(self._line(row) for row in rows)
        return out

    def _line(self, cells: list[Text]) -> Text:
        assert self._widths is not None
        line = Text()
        for index, (cell, width) in enumerate(zip(cells, self._widths, strict=True)):
            if index:
                line.append(_GAP)
            line.append_text(cell)
            if index < len(cells) - 1:  # the last column is never padded: no trailing blanks
                line.pad_right(max(0, width - cell.cell_len))
        return line


class EventPrinter:
    """Prints the first events of a tail, then (following) each later batch, in the printer's
    format (see the module's docstring)."""

    def __init__(self, printer: Printer, *, follow: bool) -> None:
        self._printer = printer
        self._follow = follow
        self._table = EventTable()

    def first(self, events: Sequence[cpb.JobEvent]) -> None:
        if self._follow:  # the header at once, so the operator sees the tail has started
            self._emit(events, header=True)
            return
        self._printer.show(
            {"events": [to_document(event) for event in events]},
            lambda: Text("\n").join(self._table.lines(events)) if events else Text("no events"),
        )

    def more(self, events: Sequence[cpb.JobEvent]) -> None:
        """A later batch (following); nothing for an empty one."""
        if events:
            self._emit(events, header=False)

    def _emit(self, events: Sequence[cpb.JobEvent], *, header: bool) -> None:
        console = self._printer.console
        if self._printer.output == "table":
            for line in self._table.lines(events) if events or header else []:
                console.print(line)
        elif self._printer.output == "json":
            for event in events:
                console.file.write(json.dumps(to_document(event), ensure_ascii=False) + "\n")
        else:
            for event in events:
                console.file.write("---\n" + dump_yaml(to_document(event)) + "\n")
        console.file.flush()
