"""What an ingestion read, skipped and noticed: counts per kind and problems with file and segment number.

Nothing here holds ids, amounts or names: problems name segment tags, element positions and codes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_LISTED_PER_FILE = 50  # problems listed per file; the rest are counted


class X12Error(ValueError):
    """A file, transaction, claim or segment that cannot be read; `segment` is 1-based in the file."""

    def __init__(self, segment: int | None, reason: str):
        self.segment = segment
        self.reason = reason
        super().__init__(f"segment {segment}: {reason}" if segment else reason)


@dataclass
class Problem:
    file: str
    segment: int | None
    reason: str
    kind: str = "transaction"  # file | interchange | transaction | claim | line | segment | note

    def __str__(self) -> str:
        where = f"{self.file}" + (f", segment {self.segment}" if self.segment else "")
        label = "note" if self.kind == "note" else f"{self.kind} skipped"
        return f"{label}: {where}: {self.reason}"


@dataclass
class IngestSummary:
    files_read: int = 0
    files_skipped: int = 0
    files_already_ingested: int = 0
    transactions_read: int = 0
    transactions_skipped: int = 0
    claims: int = 0
    remits: int = 0
    acks: int = 0
    unmatched_remits: int = 0
    rows_added: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    read: Counter = field(default_factory=Counter)  # what was read, per kind ("835 transaction", ...)
    skipped: Counter = field(default_factory=Counter)  # what was not, per kind ("CAS segment", ...)
    not_listed: Counter = field(default_factory=Counter)  # problems per file beyond MAX_LISTED_PER_FILE
    listed: Counter = field(default_factory=Counter, repr=False, compare=False)  # problems listed per file

    def problem(self, file: str, segment: int | None, reason: str, kind: str, what: str | None = None) -> None:
        """Report something not read (`what`: the kind counted as skipped, e.g. "CAS segment")."""
        if what is not None:
            self.skipped[what] += 1
        self._list(Problem(file, segment, reason, kind))

    def _list(self, p: Problem) -> None:
        if self.listed[p.file] >= MAX_LISTED_PER_FILE:
            self.not_listed[p.file] += 1
            return
        self.listed[p.file] += 1
        self.problems.append(p)

    def as_dict(self) -> dict:
        return {
            "files_read": self.files_read, "files_skipped": self.files_skipped,
            "files_already_ingested": self.files_already_ingested,
            "transactions_read": self.transactions_read, "transactions_skipped": self.transactions_skipped,
            "claims": self.claims, "remits": self.remits, "acks": self.acks,
            "unmatched_remits": self.unmatched_remits,
            "read": dict(sorted(self.read.items())), "skipped": dict(sorted(self.skipped.items())),
            "rows_added": dict(self.rows_added), "notes": dict(self.notes),
            "problems": [str(p) for p in self.problems] + self._not_listed_lines(),
        }

    def _not_listed_lines(self) -> list[str]:
        return [f"{f}: {n:,} more problem(s) not listed" for f, n in sorted(self.not_listed.items())]

    def merge_counts(self, other: IngestSummary) -> None:
        """Add the counts, notes and problems of a part read elsewhere (a worker), in file order."""
        self.transactions_read += other.transactions_read
        self.transactions_skipped += other.transactions_skipped
        self.claims += other.claims
        self.remits += other.remits
        self.acks += other.acks
        self.notes.update(other.notes)
        self.read.update(other.read)
        self.skipped.update(other.skipped)
        for p in other.problems:
            self._list(p)
        self.not_listed.update(other.not_listed)

    def text(self) -> str:
        lines = [
            f"files: {self.files_read} read, {self.files_skipped} skipped, "
            f"{self.files_already_ingested} already ingested",
            f"transactions: {self.transactions_read} read, {self.transactions_skipped} skipped",
            f"claims (837): {self.claims:,}; remits (835): {self.remits:,}; acknowledgements (277CA/999): "
            f"{self.acks:,}; remits with no 837 claim (claim built from CLP): {self.unmatched_remits:,}",
        ]
        if self.read:
            lines.append("read: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.read.items())))
        if self.skipped:
            lines.append("skipped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped.items())))
        if self.rows_added:
            lines.append("rows added: " + ", ".join(f"{k} {v:,}" for k, v in self.rows_added.items()))
        lines += [f"note: {k} ({v:,})" for k, v in sorted(self.notes.items())]
        lines += [str(p) for p in self.problems] + self._not_listed_lines()
        return "\n".join(lines)
