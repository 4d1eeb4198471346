"""The counts of one scenario (see ledger.py for what each means), its summary line, and the
problems that fail it."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Recovery:
    tag: str
    fault: str
    seconds: float | None  # None: never ran again
    trail: str = ""
    """The job's events and executions around the fault, in seconds from it."""


@dataclass
class Report:
    """The counts of one scenario (see the module docstring)."""

    scenario: str
    jobs: int = 0
    accepted: int = 0
    unacknowledged: int = 0
    failed_submits: Counter[str] = field(default_factory=Counter)
    executions: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    excess: list[str] = field(default_factory=list)
    overlap: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    excused: list[str] = field(default_factory=list)
    """Overlaps no queue could prevent: the older execution belonged to a paused worker,
    which could not stop it (a handler thread or a child process resumes or runs on)."""
    duplicates: int = 0
    recoveries: list[Recovery] = field(default_factory=list)
    settle_s: float = 0.0
    bound_s: float | None = None
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    """What the scenario observed beyond the counts (printed with them)."""
    trails: dict[str, str] = field(default_factory=dict)
    """The story of some jobs with problems (events and executions, seconds from the fault)."""

    @property
    def interrupted(self) -> int:
        return len(self.recoveries)

    def recovery_s(self) -> float | None:
        """The slowest recovery, or None when no job was interrupted (inf: one never ran)."""
        if not self.recoveries:
            return None
        return max(r.seconds if r.seconds is not None else float("inf") for r in self.recoveries)

    def summary(self) -> str:
        measured = [r.seconds for r in self.recoveries if r.seconds is not None]
        if not self.recoveries:
            recovery = "recovery n/a (no job interrupted)"
        else:
            never = sum(r.seconds is None for r in self.recoveries)
            recovery = (
                (
                    f"recovery max {max(measured):.2f}s p50 {statistics.median(measured):.2f}s"
                    if measured
                    else "recovery never"
                )
                + f" over {len(self.recoveries)} interrupted"
                + (f" ({never} never re-ran)" if never else "")
            )
            if self.bound_s is not None:
                recovery += f" (bound {self.bound_s:g}s)"
        failed = f" {dict(self.failed_submits)}" if self.failed_submits else ""
        return (
            f"[fault {self.scenario}] jobs {self.jobs} (accepted {self.accepted}, unacknowledged"
            f" {self.unacknowledged}; failed submits {sum(self.failed_submits.values())}{failed}),"
            f" executions {self.executions}, duplicates {self.duplicates}:"
            f" lost={len(self.lost)} stuck={len(self.stuck)} excess={len(self.excess)}"
            f" overlap={len(self.overlap)} stale={len(self.stale)}"
            f" orphans={len(self.orphans)}"
            + (f" (overlaps of a paused worker's runs {len(self.excused)})" if self.excused else "")
            + f"; {recovery}; settled in {self.settle_s:.1f}s;"
            f" statuses {dict(self.statuses)}; events {dict(self.events)}"
            + "".join(f"; {detail}" for detail in self.details)
        )

    def problem_tags(self) -> list[str]:
        return self.lost + self.stuck + self.excess + self.overlap + self.stale + self.orphans

    def expect(self, condition: bool, problem: str) -> None:
        """A scenario-specific check; `problem` is reported with the counts when it fails."""
        if not condition:
            self.notes.append(problem)

    def problems(self) -> list[str]:
        found = [
            f"{name} {len(tags)}: {sorted(tags)[:8]}"
            for name, tags in (
                ("lost", self.lost),
                ("stuck", self.stuck),
                ("excess", self.excess),
                ("overlap", self.overlap),
                ("stale", self.stale),
                ("orphans", self.orphans),
            )
            if tags
        ]
        slowest = self.recovery_s()
        if self.bound_s is not None and slowest is not None and slowest > self.bound_s:
            late = sorted(
                (r for r in self.recoveries if (r.seconds or float("inf")) > self.bound_s),
                key=lambda r: -(r.seconds or float("inf")),
            )
            found.append(
                f"recovery {slowest:.2f}s > bound {self.bound_s:g}s, e.g. "
                + "; ".join(f"{r.tag} ({r.fault}): {r.trail}" for r in late[:3])
            )
        found += [f"{tag}: {trail}" for tag, trail in list(self.trails.items())[:4]]
        return found + self.notes

    def assert_clean(self) -> None:
        """Fail with the summary and every problem found, or print the summary."""
        problems = self.problems()
        print("\n" + self.summary())
        assert not problems, self.summary() + "\n  " + "\n  ".join(problems)
