"""X12 835/837 ingestion into the data contract (DESIGN.md; issue 6).

The bulk path is a tolerant segment reader of our own: pyx12's loop-aware reader parses about 850
claims/s here, far from the 20,000 claims/s goal. pyx12 serves only the optional `strict` pass.

Reading
  * separators come from the ISA: element separator ISA[3]; component separator ISA16 and the
    segment terminator right after it, taken at fixed offsets (104/105) when the ISA is fixed width,
    else found by splitting the ISA on the element separator;
  * a UTF-8 byte order mark, leading white space, several interchanges in one file, terminators
    followed by new lines (LF or CRLF) or not are all read;
  * a file with no ISA/GS envelope: separators are inferred from its first segment (element
    separator = the character after the tag, terminator = the first character that cannot be part
    of an element, default '~'; component separator from the first SVC/SV1/SV2 composite, default
    ':'), and the inference is reported as a note, never silently.
  * a transaction (ST..SE) that cannot be mapped is skipped and reported with the file name, the
    segment number (1-based in the file) and the reason; the others are still read.

Mapping choices (documented because the 837/835 leave room):
  * account_id = the patient control number (837 CLM01 = 835 CLP01).
  * claim_id = CLM01 for a primary, original claim, because CLM01 is the only id the payer echoes
    back (CLP01), so remits link to it without a lookup table. A secondary/tertiary claim for the
    same encounter gets `CLM01/P2` (`/P3`); a corrected, replacement or void claim gets
    `CLM01/F7-<hash>` (hash of its interchange, transaction and ordinal), with original_claim_id =
    the claim its REF*F8 (payer claim number) points at, else CLM01's original when it is known.
  * patient_id = a hash of the subscriber member id (NM1*IL NM109), plus the patient's name and
    birth date when the patient is a dependent (HL 23 loop); the raw member id is PHI and is not
    stored. An 835-only claim uses the NM1*QC member id the same way.
  * encounter_type: institutional claims are inpatient when the type of bill (CLM05-1 + CLM05-3)
    starts with 11, emergency when a revenue code 045x is billed, else outpatient; professional
    claims are professional. 835-only claims: institutional when CLP08 (facility type) is given
    and the claim has no HC procedure lines, with the same type-of-bill rule, else professional.
  * patient_age = whole years from the DMG birth date to the service date; 0 when there is no DMG
    (counted in the notes).
  * received_date = DTM*405 (production date), else BPR16 (payment date), else GS04 (noted).
  * remit_id = a hash of (interchange id, GS06, ST02, CLP ordinal): unique and stable on re-reads.
  * Ledger: each remittance posts an insurance_payment (CLP04 > 0) or payment_reversal (CLP04 < 0)
    of |CLP04|; each account posts one `charge` of its total charges at its service date, so that
    balances are meaningful. Adjustments stay in `adjustments` (the denial logic reads them there).
  * PLB: one provider_adjustments row per (reason, amount) pair; reason_code is the composite's
    code (PLB03-1); the reference (PLB03-2, often a claim number) is not stored; dated at the
    remittance's received date (PLB02 is a fiscal period end, often in the future).

Nothing here logs ids or amounts: summaries carry counts only.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import multiprocessing
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from hashlib import blake2b as _blake2b
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import CLAIM_STATUS_FROM_X12, FREQUENCY_FROM_X12, GROUP_CODES, TABLES, columns_of

log = logging.getLogger(__name__)

LEDGER = "_ingested"
X12_SUFFIXES = {".835", ".837", ".837i", ".837p", ".txt", ".x12", ".edi", ".dat", ".era"}

# SBR09 / CLP06 claim filing indicator -> financial class.
FINANCIAL_CLASS_FROM_FILING = {
    "MA": "medicare", "MB": "medicare", "16": "medicare",
    "MC": "medicaid",
    "CI": "commercial", "BL": "commercial", "15": "commercial", "FI": "commercial",
    "HM": "managed_care", "12": "managed_care", "13": "managed_care", "14": "managed_care",
    "WC": "workers_comp",
    "09": "self_pay",
}
SEQUENCE_FROM_SBR = {"P": 1, "S": 2, "T": 3}
SEQUENCE_FROM_STATUS = {"1": 1, "2": 2, "3": 3, "19": 1, "20": 2, "21": 3}
_GROUPS = frozenset(GROUP_CODES)
# 835 segments that carry nothing the contract needs (skipped before any other test: speed)
_IGNORED_835 = frozenset({"REF", "AMT", "QTY", "N3", "N4", "PER", "LX", "TS3", "TS2", "RDM", "CUR"})
_SOURCE_PRIORITY = {"837": 0, "835": 1}  # when the same key arrives twice, an 837 row wins


def _priority(source: pd.Series, missing: float = np.nan) -> np.ndarray:
    """`source.map(_SOURCE_PRIORITY)` without a per-row Python call (`missing` for other values)."""
    out = np.full(len(source), missing, dtype="float64")
    for value, prio in _SOURCE_PRIORITY.items():
        out[(source == value).to_numpy(dtype=bool, na_value=False)] = prio
    return out


class X12Error(ValueError):
    """A transaction or file that cannot be read; `segment` is 1-based within the file."""

    def __init__(self, segment: int | None, reason: str):
        self.segment = segment
        self.reason = reason
        super().__init__(f"segment {segment}: {reason}" if segment else reason)


@dataclass
class Problem:
    file: str
    segment: int | None
    reason: str
    kind: str = "transaction"  # file | transaction | note

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
    unmatched_remits: int = 0
    rows_added: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "files_read": self.files_read, "files_skipped": self.files_skipped,
            "files_already_ingested": self.files_already_ingested,
            "transactions_read": self.transactions_read, "transactions_skipped": self.transactions_skipped,
            "claims": self.claims, "remits": self.remits, "unmatched_remits": self.unmatched_remits,
            "rows_added": dict(self.rows_added), "notes": dict(self.notes),
            "problems": [str(p) for p in self.problems],
        }

    def merge_counts(self, other: IngestSummary) -> None:
        """Add the transaction counts, notes and problems of a part read elsewhere (a worker)."""
        self.transactions_read += other.transactions_read
        self.transactions_skipped += other.transactions_skipped
        self.claims += other.claims
        self.remits += other.remits
        self.problems.extend(other.problems)
        self.notes.update(other.notes)

    def text(self) -> str:
        lines = [
            f"files: {self.files_read} read, {self.files_skipped} skipped, "
            f"{self.files_already_ingested} already ingested",
            f"transactions: {self.transactions_read} read, {self.transactions_skipped} skipped",
            f"claims (837): {self.claims:,}; remits (835): {self.remits:,}; "
            f"remits with no 837 claim (claim built from CLP): {self.unmatched_remits:,}",
        ]
        if self.rows_added:
            lines.append("rows added: " + ", ".join(f"{k} {v:,}" for k, v in self.rows_added.items()))
        lines += [f"note: {k} ({v:,})" for k, v in sorted(self.notes.items())]
        lines += [str(p) for p in self.problems]
        return "\n".join(lines)


# ================================================================ segment reader


@dataclass
class Interchange:
    """One interchange (or an envelope-less file), kept as text: its transactions are cut out and
    split into segments one at a time (streaming; the whole file is never split at once)."""

    body: str  # the segments after the ISA (through IEA), each preceded by the terminator; new lines removed
    first_segment: int  # 1-based number in the file of the ISA (or of the first segment without ISA)
    element_sep: str
    component_sep: str
    control_number: str | None  # ISA13
    sender: str | None  # ISA06
    date: str | None  # ISA09 (YYMMDD)
    terminator: str = "~"
    isa: list[str] | None = None

    @property
    def segments(self) -> list[list[str]]:
        """All segments, split into elements (small interchanges, tests; the bulk path streams)."""
        segs = [s.split(self.element_sep) for s in _segments(self.body, self.terminator)]
        return ([self.isa] if self.isa else []) + segs

    @property
    def segment_count(self) -> int:
        return (1 if self.isa else 0) + _count_segments(self.body, self.terminator)


def decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # X12 is ASCII; a stray byte must not lose the file


def _isa_separators(text: str, pos: int) -> tuple[str, str, str, int]:
    """(element, component, terminator, end of ISA) for the ISA starting at `pos`."""
    sep = text[pos + 3]
    if len(text) >= pos + 106 and text[pos + 103] == sep and text.count(sep, pos, pos + 104) == 16:
        return sep, text[pos + 104], text[pos + 105], pos + 106
    # not fixed width: ISA16 is the character after the 16th element separator
    p = pos + 3
    for _ in range(15):
        p = text.find(sep, p + 1)
        if p < 0:
            raise X12Error(1, "ISA segment is truncated (fewer than 16 elements)")
    if p + 2 >= len(text) + 1:
        raise X12Error(1, "ISA segment is truncated (no ISA16)")
    comp = text[p + 1]
    term = text[p + 2] if p + 2 < len(text) else "~"
    return sep, comp, term, p + 3


def _clean(body: str, term: str) -> str:
    """New lines after (or instead of) the terminator are not data: drop them in one C-level pass."""
    if term not in "\r\n":
        if "\n" in body or "\r" in body:
            body = body.replace("\r", "").replace("\n", "")
    elif "\r" in body:
        body = body.replace("\r", "")
    return body


def _segments(text: str, term: str) -> list[str]:
    """Non-empty segments of `text` (unsplit): empty and blank ones are not counted or read."""
    parts = text.split(term)
    if _has_blank(text, term):
        return [s for s in parts if s and not s.isspace()]
    if parts and not parts[-1]:
        parts.pop()
    if parts and not parts[0]:
        del parts[0]
    return parts


def _has_blank(text: str, term: str) -> bool:
    """Could `text` hold an empty or blank segment inside (besides a leading or trailing terminator)?"""
    return (term + term in text or term + " " in text or term + "\t" in text
            or (text[:1].isspace() and text[:1] != term)
            or "\x0b" in text or "\x0c" in text)


def _count_segments(text: str, term: str) -> int:
    if not text:
        return 0
    if _has_blank(text, term):
        return len(_segments(text, term))
    n = text.count(term) + 1 - text.startswith(term) - text.endswith(term)
    return max(n, 0)


def _infer_separators(text: str) -> tuple[str, str, str]:
    i = 0
    while i < len(text) and i < 3 and text[i].isalnum():
        i += 1
    if i < 2 or i >= len(text):
        raise X12Error(1, "no ISA envelope and the first segment has no recognisable tag")
    sep = text[i]
    if sep.isalnum() or sep.isspace():
        raise X12Error(1, "no ISA envelope and no element separator after the first tag")
    term = "~"
    for ch in text[i + 1: i + 200]:
        if ch == sep or ch.isalnum() or ch in " .-":
            continue
        term = "\n" if ch in "\r\n" else ch
        break
    comp = ":"
    for tag in ("SVC", "SV1", "SV2"):
        j = text.find(term + tag + sep)
        if j < 0:
            j = text.find("\n" + tag + sep)
        if j >= 0:
            k = j + 1 + len(tag) + 1
            seg = text[k: k + 60]
            if tag == "SV2":  # SV201 revenue code, SV202 the composite
                seg = seg.split(sep, 1)[1] if sep in seg else ""
            if len(seg) > 2 and not seg[2].isalnum() and seg[2] != sep:
                comp = seg[2]
            break
    return sep, comp, term


def read_interchanges(text: str, notes: Counter | None = None) -> list[Interchange]:
    """Cut a file's text into interchanges (raises X12Error if unreadable). Their segments are split
    later, one transaction at a time."""
    text = text.lstrip("\ufeff \t\r\n")
    if not text:
        raise X12Error(None, "the file is empty")
    out: list[Interchange] = []
    seg_no = 1
    if not text.startswith("ISA"):
        sep, comp, term = _infer_separators(text)
        if notes is not None:
            notes["no ISA envelope: separators inferred from the first segment"] += 1
        return [Interchange(term + _clean(text, term), 1, sep, comp, None, None, None, term, None)]
    pos = 0
    while pos < len(text):
        if not text.startswith("ISA", pos):
            raise X12Error(seg_no, "data after IEA that is not a new ISA interchange")
        sep, comp, term, isa_end = _isa_separators(text, pos)
        isa = text[pos:isa_end].rstrip(term).strip().split(sep)
        # the interchange ends after its IEA segment (or at the end of the file)
        iea = text.find(term + "IEA" + sep, isa_end - 1)
        if iea < 0:
            nl = text.find("\nIEA" + sep, isa_end - 1)
            iea = nl
        if iea < 0:
            end = len(text)
            if notes is not None:
                notes["interchange without IEA trailer (read to end of file)"] += 1
        else:
            end = text.find(term, iea + 1)
            end = len(text) if end < 0 else end + 1
        # the body starts with the ISA's own terminator, so that every segment follows one
        ic = Interchange(
            _clean(text[isa_end - 1:end], term), seg_no, sep, comp,
            isa[13].strip() if len(isa) > 13 else None,
            isa[6].strip() if len(isa) > 6 else None,
            isa[9].strip() if len(isa) > 9 else None,
            term, isa,
        )
        out.append(ic)
        seg_no += ic.segment_count
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
    return out


# ================================================================ value helpers


def _money(v: str, seg: int, what: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise X12Error(seg, f"{what} is not a number") from None


@lru_cache(maxsize=65536)
def _d8(v: str) -> str | None:
    """CCYYMMDD (or the start of an RD8 range) -> ISO date; None when not a valid date."""
    v = v.strip()[:8]
    if len(v) != 8 or not v.isdigit():
        return None
    try:
        return date(int(v[:4]), int(v[4:6]), int(v[6:])).isoformat()
    except ValueError:
        return None


def _date(v: str, seg: int, what: str) -> str:
    d = _d8(v)
    if d is None:
        raise X12Error(seg, f"{what} is not a CCYYMMDD date")
    return d


def _el(s: list[str], i: int) -> str:
    return s[i] if len(s) > i else ""


def short_hash(*parts: object, n: int = 16) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()[:n]


def _age(birth: str | None, at: str | None) -> int | None:
    if not birth or not at:
        return None
    b, a = date.fromisoformat(birth), date.fromisoformat(at)
    years = a.year - b.year - ((a.month, a.day) < (b.month, b.day))
    return years if years >= 0 else None


# ================================================================ collected rows


@dataclass
class _Rows:
    """Rows of each output, as tuples; truncated back when a transaction fails."""

    claims: list = field(default_factory=list)  # see _CLAIM_COLS
    lines: list = field(default_factory=list)
    remits: list = field(default_factory=list)  # see _REMIT_COLS
    adjustments: list = field(default_factory=list)
    remit_lines: list = field(default_factory=list)
    plb: list = field(default_factory=list)
    payers: list = field(default_factory=list)  # (payer_id, name, financial_class, source)

    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.__dict__.values())

    def truncate(self, sizes: tuple[int, ...]) -> None:
        for lst, n in zip(self.__dict__.values(), sizes, strict=True):
            del lst[n:]

    def extend(self, other: _Rows) -> None:
        for mine, theirs in zip(self.__dict__.values(), other.__dict__.values(), strict=True):
            mine.extend(theirs)


# claim + its account facts, one tuple per 837 claim (accounts are derived at the end)
_CLAIM_COLS = [
    "claim_id", "account_id", "payer_id", "payer_sequence", "claim_type", "frequency", "submitted_date",
    "billed_amount", "principal_dx", "dx_version", "x12_original_ref", "patient_id", "facility_id",
    "encounter_type", "service_date", "patient_age", "patient_state",
]
_LINE_COLS = [
    "claim_id", "line_number", "procedure_code", "modifiers", "units", "line_charge", "revenue_code",
]
# remit + what a claim built from it needs
_REMIT_COLS = [
    "remit_id", "account_id", "received_date", "claim_status", "paid_amount", "patient_responsibility",
    "payer_claim_number", "payer_id", "billed", "claim_date", "patient_id", "facility_id", "encounter_type",
    "payer_sequence",
]
_ADJ_COLS = ["remit_id", "line_number", "group_code", "reason_code", "amount", "remark_codes"]
_RLINE_COLS = ["remit_id", "line_number", "procedure_code", "line_charge", "line_paid"]
_PLB_COLS = ["payer_id", "received_date", "reason_code", "amount", "x12_txn"]


@dataclass
class _Ctx:
    file: str
    sep: str
    comp: str
    ic_key: str  # "sender:ISA13", "" without an envelope
    gs_date: str | None
    gs_version: str
    gs06: str
    notes: Counter


_NOTE_REMARKS = ("remark codes (MOA/MIA/LQ) with no CAS adjustment on their claim or line: not stored "
                 "(an adjustments row needs a group and reason code)")


# ================================================================ 835


def _hash16(text: str) -> str:
    return _blake2b(text.encode(), digest_size=16).hexdigest()[:16]


@lru_cache(maxsize=16)
def _ignored_835(sep: str) -> frozenset[str]:
    """The first three characters of the 835 segments the mapping passes over."""
    return frozenset(t if len(t) == 3 else t + sep for t in _IGNORED_835)


def _map_835(segs: list[str], first: int, ctx: _Ctx, out: _Rows) -> tuple[int, int]:
    """One 835 transaction (ST..SE, unsplit segments) -> rows; returns (remits, 0). Raises X12Error.

    Segments are split into elements only when a branch needs them; the hot loop compares the first
    three characters of each segment."""
    sep, comp = ctx.sep, ctx.comp
    st02 = _el(segs[0].split(sep), 2)
    ic_key = ctx.ic_key
    hash_prefix = f"{ic_key}|{ctx.gs06}|{st02}|"
    prod_date = pay_date = None
    payer_name = payer_n104 = payer_2u = payer_trn = ""
    payee_id = ""
    # open remit rows, laid out as _REMIT_COLS (received date and payer known only at the end)
    remits: list[list] = []
    filing = ""
    cur: list | None = None
    claim_adj: list[list] = []
    line_adj: list[list] = []  # rows of the current line (already in out.adjustments), for LQ remarks
    remarks: list[str] = []
    line_no = clp_no = 0
    has_mia = institutional = er = False
    plb_pairs: list[tuple[str, float]] = []
    adjustments = out.adjustments
    rlines = out.remit_lines
    notes = ctx.notes
    lq, se, nm1qc = "LQ" + sep, "SE" + sep, "NM1" + sep + "QC" + sep
    ignored = _ignored_835(sep)

    def close_claim() -> None:
        nonlocal claim_adj, remarks, cur
        if cur is None:
            return
        if remarks:
            if claim_adj:
                rem = " ".join(remarks)
                for a in claim_adj:
                    a[5] = rem
            else:
                notes[_NOTE_REMARKS] += len(remarks)
        if claim_adj:
            adjustments.extend(claim_adj)
        # encounter type of a claim known only from its remit (no 837): MIA = inpatient;
        # revenue-coded lines (NU or SVC04) = institutional; else professional
        if has_mia:
            cur[12] = "inpatient"
        elif institutional:
            cur[12] = "emergency" if er else "outpatient"
        else:
            cur[12] = "professional"
        cur[10] = "p" + _hash16("835|" + (cur[10] or cur[1]))
        claim_adj, remarks, cur = [], [], None

    def plb(s: list[str], n: int) -> None:
        for j in range(3, min(len(s), 15), 2):
            if not s[j].strip():
                continue
            reason = s[j].split(comp)[0].strip()
            plb_pairs.append((reason, _money(_el(s, j + 1), n, "PLB adjustment amount")))

    # ---- header (1000A/B loops): up to the first CLP
    k = 0
    nseg = len(segs)
    while k < nseg:
        seg = segs[k]
        t3 = seg[:3]
        if t3 == "CLP":
            break
        if t3 == "PLB":  # provider level: alone in a transaction
            plb(seg.split(sep), first + k)
        elif t3 == "DTM":
            s = seg.split(sep)
            if _el(s, 1) == "405":
                prod_date = _d8(_el(s, 2))
        elif t3 == "BPR":
            pay_date = _d8(_el(seg.split(sep), 16))
        elif t3 == "TRN":
            payer_trn = _el(seg.split(sep), 3).strip()
        elif t3 == "N1" + sep:
            s = seg.split(sep)
            if s[1] == "PR":
                payer_name = _el(s, 2).strip()
                payer_n104 = _el(s, 4).strip()
            elif s[1] == "PE":
                payee_id = _el(s, 4).strip()
        elif t3 == "REF":
            s = seg.split(sep)
            if _el(s, 1) == "2U":
                payer_2u = _el(s, 2).strip()
        k += 1

    # ---- claims (2100/2110 loops) and PLB
    while k < nseg:
        seg = segs[k]
        t3 = seg[:3]
        if t3 in ignored:
            k += 1
            continue
        if t3 == "CAS":
            if cur is None:
                raise X12Error(first + k, "CAS outside a claim")
            s = seg.split(sep)
            grp = s[1].strip()
            if grp not in _GROUPS:
                raise X12Error(first + k, "CAS01 group code is not CO, PR, OA, PI or CR")
            rid = cur[0]
            ns = len(s)
            for j in range(2, min(ns, 20), 3):
                reason = s[j].strip()
                if not reason:
                    continue
                try:
                    amt = float(s[j + 1] if j + 1 < ns else "")
                except ValueError:
                    raise X12Error(first + k, "CAS adjustment amount is not a number") from None
                if line_no:
                    a = [rid, line_no, grp, reason, amt, None]
                    adjustments.append(a)
                    line_adj.append(a)
                else:
                    claim_adj.append([rid, None, grp, reason, amt, None])
        elif t3 == "SVC":
            if cur is None:
                raise X12Error(first + k, "SVC outside a claim")
            s = seg.split(sep)
            ns = len(s)
            line_adj = []
            line_no += 1
            proc = s[1].split(comp)
            code = proc[1].strip() if len(proc) > 1 else proc[0].strip()
            rev = (s[4].strip() if ns > 4 else "") if proc[0] != "NU" else code
            if proc[0] == "NU" or rev:
                institutional = True
                if rev.lstrip("0")[:2] == "45":
                    er = True
            charge = s[2] if ns > 2 else ""
            paid = s[3] if ns > 3 else ""
            if charge and paid:
                try:
                    rlines.append((cur[0], line_no, code, float(charge), float(paid)))
                    k += 1
                    continue
                except ValueError:
                    pass  # (reported just below, naming the element)
            else:
                notes["SVC without charge or paid amount: recorded as 0"] += 1
            rlines.append((cur[0], line_no, code,
                           _money(charge, first + k, "SVC02 line charge") if charge else 0.0,
                           _money(paid, first + k, "SVC03 line paid") if paid else 0.0))
        elif t3 == "DTM":
            if cur is not None and cur[9] is None:
                s = seg.split(sep)
                if len(s) > 1 and s[1] in ("232", "472", "150"):
                    cur[9] = _d8(s[2] if len(s) > 2 else "")
        elif t3 == "CLP":
            close_claim()
            s = seg.split(sep)
            clp_no += 1
            line_no = 0
            line_adj = []
            has_mia = institutional = er = False
            n = first + k
            if len(s) < 5 or not s[1].strip():
                raise X12Error(n, "CLP without patient control number or amounts")
            code = s[2]
            status = CLAIM_STATUS_FROM_X12.get(code)
            if status is None:
                raise X12Error(n, f"CLP02 claim status code {code!r} is not one the contract knows")
            ns = len(s)
            try:
                paid = float(s[4])
                resp = float(s[5]) if ns > 5 and s[5] else 0.0
                billed = float(s[3])
            except ValueError:  # name the element, in the order they are read
                _money(s[4], n, "CLP04 paid amount")
                if ns > 5 and s[5]:
                    _money(s[5], n, "CLP05 patient responsibility")
                raise X12Error(n, "CLP03 billed amount is not a number") from None
            cur = [
                # content-based: a re-sent interchange gives the same ids (deduplicated by key)
                _blake2b((hash_prefix + str(clp_no) + "|" + "|".join(s[1:8])).encode(),
                         digest_size=16).hexdigest()[:16],
                s[1].strip(), None, status, paid, resp,
                (s[7].strip() or None) if ns > 7 else None, None, billed, None,
                "", "", "", SEQUENCE_FROM_STATUS.get(code, 1),
            ]
            if not filing and ns > 6:
                filing = s[6]
            remits.append(cur)
        elif t3 == "NM1":
            if cur is not None and (seg.startswith(nm1qc) or seg == nm1qc[:-1]):
                s = seg.split(sep)
                cur[10] = (s[9].strip() if len(s) > 9 else "") or "|".join(x.strip().upper() for x in s[3:5])
        elif t3 == lq:
            s = seg.split(sep)
            if _el(s, 1) == "HE":
                code = _el(s, 2).strip()
                if line_adj:
                    for a in line_adj:
                        a[5] = code if a[5] is None else a[5] + " " + code
                elif code:
                    notes[_NOTE_REMARKS] += 1
        elif t3 == "MOA":
            remarks.extend(c.strip() for c in seg.split(sep)[3:8] if c.strip())
        elif t3 == "MIA":
            s = seg.split(sep)
            has_mia = True
            remarks.extend(c.strip() for c in (s[5:6] + s[20:24]) if c.strip())
        elif t3 == "PLB":  # provider level: after the claims
            close_claim()
            plb(seg.split(sep), first + k)
        elif t3 == se:
            break
        k += 1
    close_claim()

    received = prod_date or pay_date
    if received is None:
        received = ctx.gs_date
        if received is None:
            raise X12Error(first, "no received date: no DTM*405, no BPR16 and no GS04")
        notes["835 without DTM*405 or BPR16: GS04 used as received date"] += 1
    payer_id = payer_n104 or payer_2u or payer_trn
    if not payer_id:
        if not payer_name:
            raise X12Error(first, "no payer: neither N1*PR id/name, REF*2U nor TRN03")
        payer_id = "name:" + payer_name.upper()
        notes["payer without id: its name used as payer_id"] += 1
    facility = payee_id or "unknown"
    for r in remits:
        r[2] = received
        r[7] = payer_id
        if r[9] is None or r[9] > received:
            r[9] = received
        r[11] = facility
        out.remits.append(tuple(r))
    txn_key = short_hash(ic_key, ctx.gs06, st02, received, payer_id, *plb_pairs)
    for reason, amt in plb_pairs:
        out.plb.append((payer_id, received, reason, amt, txn_key))
    out.payers.append((payer_id, payer_name or payer_id, FINANCIAL_CLASS_FROM_FILING.get(filing, "other"),
                       "835"))
    return len(remits), 0


# ================================================================ 837


def _claim_type(ctx: _Ctx, st: list[str]) -> str | None:
    ver = _el(st, 3) or ctx.gs_version
    if "X222" in ver or "X098" in ver:
        return "professional"
    if "X223" in ver or "X096" in ver:
        return "institutional"
    return None


def _map_837(segs: list[str], first: int, ctx: _Ctx, out: _Rows) -> tuple[int, int]:
    sep, comp = ctx.sep, ctx.comp
    tx = [s.split(sep) for s in segs]  # (837 files are small next to 835 batches: split all)
    st02 = _el(tx[0], 2)
    ic_key = ctx.ic_key
    ctype = _claim_type(ctx, tx[0])
    submitted = ctx.gs_date
    facility = "unknown"
    # subscriber / patient state, reset at every HL
    hl_level = ""
    sub_seq = 1
    filing = ""
    sub_member = ""
    sub_birth = None
    sub_state = None
    pat_key = ""
    pat_birth = None
    pat_state = None
    payer_id = payer_name = ""
    last_nm1 = ""
    claim: dict | None = None
    clm_no = 0
    n_claims = 0

    def close_claim() -> None:
        nonlocal claim, n_claims
        if claim is None:
            return
        c = claim
        claim = None
        kind = c["type"] or ("institutional" if c["has_sv2"] or c["pos_qual"] == "A" else "professional")
        if c["type"] is None:
            ctx.notes["837 version unknown: claim type from its lines"] += 1
        svc = c["svc"] or c["stmt"] or c["admit"] or (min(c["line_dates"]) if c["line_dates"] else None)
        if svc is None:
            svc = submitted
            ctx.notes["837 claim without service date: submitted date used"] += 1
        if kind == "institutional":
            tob = c["tob"]
            if tob.startswith("11"):
                enc = "inpatient"
            elif c["er"]:
                enc = "emergency"
            else:
                enc = "outpatient"
        else:
            enc = "professional"
        birth = pat_birth if hl_level == "23" else sub_birth
        age = _age(birth, svc)
        if age is None:
            ctx.notes["no patient birth date (DMG): patient_age 0"] += 1
            age = 0
        state = pat_state if hl_level == "23" and pat_state else sub_state
        patient = "p" + short_hash("837", sub_member, pat_key)
        if not payer_id:
            raise X12Error(c["seg"], "claim without payer (2010BB NM1*PR)")
        seq = sub_seq
        cid = c["clm01"]
        if seq > 1:
            cid += f"/P{seq}"
        if c["freq_code"] != "1":
            cid += f"/F{c['freq_code']}-" + short_hash(ic_key, ctx.gs06, st02, c["no"], c["billed"], n=8)
        out.claims.append((
            cid, c["clm01"], payer_id, seq, kind, c["freq"], submitted, c["billed"], c["dx"],
            c["dx_version"], c["f8"], patient, facility, enc, svc, age, state,
        ))
        for ln in c["lines"]:
            out.lines.append((cid,) + ln)
        out.payers.append((payer_id, payer_name or payer_id,
                           FINANCIAL_CLASS_FROM_FILING.get(filing, "other"), "837"))
        n_claims += 1

    for k, s in enumerate(tx):
        n = first + k
        tag = s[0]
        if tag == "BHT":
            d = _d8(_el(s, 4))
            if d:
                submitted = d
        elif tag == "HL":
            close_claim()
            hl_level = _el(s, 3)
            if hl_level == "22":
                sub_seq, filing, sub_member, sub_birth, sub_state = 1, "", "", None, None
                payer_id = payer_name = ""
            if hl_level in ("22", "23"):
                pat_key, pat_birth, pat_state = "", None, None
        elif claim is None:  # 2000/2010 loops (before CLM): provider, subscriber, patient, payer
            if tag == "NM1":
                last_nm1 = _el(s, 1)
                if last_nm1 == "85":
                    facility = _el(s, 9).strip() or facility
                elif last_nm1 == "IL":
                    sub_member = _el(s, 9).strip() or " ".join(x.strip() for x in s[3:5])
                elif last_nm1 == "QC":
                    pat_key = "|".join(x.strip().upper() for x in s[3:5]) + "|" + _el(s, 9).strip()
                elif last_nm1 == "PR":
                    payer_id = _el(s, 9).strip()
                    payer_name = _el(s, 3).strip()
                    if not payer_id:
                        payer_id = "name:" + payer_name.upper()
                        ctx.notes["payer without id: its name used as payer_id"] += 1
            elif tag == "SBR":
                seq = SEQUENCE_FROM_SBR.get(_el(s, 1))
                if seq is None:
                    seq = 3
                    ctx.notes["SBR01 payer beyond tertiary: payer_sequence 3"] += 1
                sub_seq = seq
                filing = _el(s, 9)
            elif tag == "DMG":
                b = _d8(_el(s, 2)) if _el(s, 1) == "D8" else None
                if hl_level == "23" or last_nm1 == "QC":
                    pat_birth = b
                    pat_key += "|" + (b or "")
                elif last_nm1 == "IL":
                    sub_birth = b
            elif tag == "N4":
                if last_nm1 == "IL":
                    sub_state = _el(s, 2).strip() or None
                elif last_nm1 == "QC":
                    pat_state = _el(s, 2).strip() or None
            elif tag == "CLM":
                pass  # handled below
        if tag == "CLM":
            close_claim()
            clm_no += 1
            if len(s) < 6 or not s[1].strip():
                raise X12Error(n, "CLM without patient control number or facility code")
            c05 = s[5].split(comp)
            fcode = _el(c05, 2) or "1"
            freq = FREQUENCY_FROM_X12.get(fcode)
            if freq is None and fcode.replace(".", "", 1).isdigit() and float(fcode).is_integer():
                fcode = str(int(float(fcode)))  # "1.00" from a sloppy sender: the number is clear
                freq = FREQUENCY_FROM_X12.get(fcode)
                ctx.notes["CLM05-3 frequency written as a decimal: read as its integer"] += 1
            if freq is None:
                raise X12Error(n, f"CLM05-3 frequency code {fcode!r} is not 1, 6, 7 or 8")
            claim = {
                "seg": n, "no": clm_no, "clm01": s[1].strip(), "billed": _money(s[2], n, "CLM02 billed"),
                "freq": freq, "freq_code": fcode, "tob": c05[0] + fcode, "pos_qual": _el(c05, 1),
                "dx": None, "dx_version": 10, "svc": None, "stmt": None, "admit": None, "line_dates": [],
                "lines": [], "has_sv2": False, "er": False, "f8": None, "type": ctype,
            }
        elif claim is None:
            continue
        elif tag == "DTP":
            q = _el(s, 1)
            if q == "472":
                if claim["lines"]:
                    d = _d8(_el(s, 3))
                    if d:
                        claim["line_dates"].append(d)
                else:
                    claim["svc"] = _d8(_el(s, 3))
            elif q == "434" and not claim["lines"]:
                claim["stmt"] = _d8(_el(s, 3))
            elif q == "435" and not claim["lines"]:
                claim["admit"] = _d8(_el(s, 3))
        elif tag == "HI":
            if claim["dx"] is None:
                for e in s[1:]:
                    p = e.split(comp)
                    if p[0] in ("ABK", "BK") and len(p) > 1:
                        claim["dx"] = p[1].strip()
                        claim["dx_version"] = 10 if p[0] == "ABK" else 9
                        break
        elif tag == "REF":
            if _el(s, 1) == "F8" and not claim["lines"]:
                claim["f8"] = _el(s, 2).strip() or None
        elif tag in ("SV1", "SV2"):
            if tag == "SV1":
                proc = s[1].split(comp)
                charge, units, rev = _el(s, 2), _el(s, 4), None
            else:
                rev = s[1].strip() or None
                proc = _el(s, 2).split(comp) if _el(s, 2) else [""]
                charge, units = _el(s, 3), _el(s, 5)
                claim["has_sv2"] = True
                if rev and rev.lstrip("0")[:2] == "45":
                    claim["er"] = True
            mods = " ".join(m.strip() for m in proc[2:6] if m.strip()) or None
            claim["lines"].append((
                len(claim["lines"]) + 1, _el(proc, 1).strip() or proc[0].strip(), mods,
                _money(units, n, f"{tag} units") if units else 1.0,
                _money(charge, n, f"{tag} line charge"), rev,
            ))
            if not units:
                ctx.notes["837 line without units: 1 used"] += 1
        elif tag == "SE":
            break
    close_claim()
    return 0, n_claims


# ================================================================ files


@dataclass
class _Job:
    """One transaction (ST..SE) cut out of an interchange, ready to map (picklable: no file text)."""

    text: str  # its segments, terminator-separated (the leading terminator cut off)
    first: int  # 1-based number in the file of its ST
    nseg: int  # its (non-empty) segment count
    complete: bool  # ends with its SE (else truncated by ST/GE/IEA or the end of the file)
    ctx: _Ctx
    term: str


def _iter_jobs(ic: Interchange, file: str, notes: Counter) -> Iterator[_Job]:
    """Transactions of an interchange in file order, one at a time. Segments outside ST..SE are
    envelope (GS sets the group's date, version and control number; others are passed over)."""
    b, t, sep = ic.body, ic.terminator, ic.element_sep
    n = len(b)
    ic_key = f"{ic.sender}:{ic.control_number}" if ic.control_number else ""
    toks = {tag: t + tag + sep for tag in ("ST", "SE", "GE", "IEA")}
    found: dict[str, int] = {}

    def nxt(tag: str, pos: int) -> int:
        """First position >= pos of the segment `tag` (n when none); each search resumes the last."""
        c = found.get(tag)
        if c is None or c < pos:
            c = b.find(toks[tag], pos)
            c = n if c < 0 else c
            found[tag] = c
        return c

    seg_no = ic.first_segment + (1 if ic.isa else 0)  # number of the body's first segment
    gs_date: str | None = None
    gs_version = gs06 = ""
    pos = 0  # b[pos] is a terminator (or pos == n)
    while pos < n:
        q = nxt("ST", pos)
        for s in _segments(b[pos:q], t):  # envelope between transactions: GS, GE, IEA, stray ones
            seg_no += 1
            if s.startswith("GS" + sep):
                g = s.split(sep)
                gs_date, gs_version, gs06 = _d8(_el(g, 4)), _el(g, 8), _el(g, 6)
        if q >= n:
            break
        ends = [nxt(tag, q + 1) for tag in ("SE", "ST", "GE", "IEA")]
        stop = min(ends)
        if stop < n and stop == ends[0]:
            e = b.find(t, stop + 1)
            e = n if e < 0 else e
            complete = True
        else:
            e = stop
            complete = False
        text = b[q + 1:e]
        nseg = _count_segments(text, t)
        ctx = _Ctx(file, sep, ic.component_sep, ic_key, gs_date, gs_version, gs06, notes)
        yield _Job(text, seg_no, nseg, complete, ctx, t)
        seg_no += nseg
        pos = e


def _map_job(job: _Job, out: _Rows, summary: IngestSummary) -> None:
    """Map one transaction into `out`; a failure rolls its rows back and is reported."""
    segs = _segments(job.text, job.term)
    first = job.first
    kind = _el(segs[0].split(job.ctx.sep), 1)
    sizes = out.sizes()
    try:
        if not job.complete:
            raise X12Error(first + len(segs) - 1, "transaction has no SE trailer (truncated)")
        if kind == "835":
            r, _ = _map_835(segs, first, job.ctx, out)
            summary.remits += r
        elif kind == "837":
            _, c = _map_837(segs, first, job.ctx, out)
            summary.claims += c
        else:
            raise X12Error(first, f"transaction set {kind!r} is not an 835 or 837")
        summary.transactions_read += 1
    except X12Error as err:
        out.truncate(sizes)
        summary.transactions_skipped += 1
        summary.problems.append(Problem(job.ctx.file, err.segment, err.reason))
    except (IndexError, ValueError) as err:  # a malformed segment we did not foresee
        out.truncate(sizes)
        summary.transactions_skipped += 1
        summary.problems.append(Problem(job.ctx.file, first, f"unreadable transaction ({type(err).__name__})"))


def _map_jobs(jobs: list[_Job]) -> tuple[_Rows, IngestSummary]:
    """Worker side of the parallel path: map a contiguous run of transactions."""
    with _gc_paused():
        out, summary = _Rows(), IngestSummary()
        notes = summary.notes
        for job in jobs:
            job.ctx.notes = notes
            _map_job(job, out, summary)
        return out, summary


def _workers(requested: int | None) -> int:
    if requested is not None:
        return max(1, requested)
    env = os.environ.get("RECOUP_X12_WORKERS")
    if env and env.strip().isdigit():
        return max(1, int(env))
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # not Linux
        return max(1, min(os.cpu_count() or 1, 8))


PARALLEL_MIN_BYTES = 8_000_000  # below this, starting a worker costs more than it saves


def _map_parallel(jobs: list[_Job], workers: int, out: _Rows, summary: IngestSummary) -> None:
    """Map transactions on `workers` processes: contiguous runs of about equal size, this process
    taking the first; results are appended in file order, so the output does not depend on it."""
    total = sum(len(j.text) for j in jobs)
    runs: list[list[_Job]] = [[]]
    size = 0
    for j in jobs:
        if size >= total * len(runs) / workers and len(runs) < workers:
            runs.append([])
        runs[-1].append(j)
        size += len(j.text)
    for run in runs[1:]:  # each worker counts its own notes (merged below)
        for j in run:
            j.ctx.notes = None
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=len(runs) - 1, mp_context=ctx) as pool:
        futures = [pool.submit(_map_jobs, run) for run in runs[1:]]
        for job in runs[0]:
            _map_job(job, out, summary)
        for fut in futures:
            rows, part = fut.result()
            out.extend(rows)
            summary.merge_counts(part)


def _transactions(ic: Interchange, file: str, out: _Rows, summary: IngestSummary, workers: int = 1) -> None:
    jobs = _iter_jobs(ic, file, summary.notes)
    if workers > 1 and len(ic.body) >= PARALLEL_MIN_BYTES:
        jobs = list(jobs)
        if len(jobs) > 1:
            _map_parallel(jobs, min(workers, len(jobs)), out, summary)
            return
    for job in jobs:
        _map_job(job, out, summary)


def iter_x12_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files given, and the X12 files (by suffix) inside folders given, in a stable order."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in X12_SUFFIXES:
                    yield f
        else:
            yield p


@dataclass
class ParsedFile:
    name: str
    sha256: str
    interchanges: list[str]  # "sender:ISA13"


def parse_files(
    paths: Iterable[str | os.PathLike],
    skip: set[str] | None = None,
    skip_interchanges: set[str] | None = None,
    summary: IngestSummary | None = None,
    workers: int | None = 1,
) -> tuple[_Rows, list[ParsedFile], IngestSummary]:
    """Read X12 files into row lists (pure: no writes). Files whose sha256 is in `skip` are counted
    as already ingested. Large interchanges are mapped on `workers` processes (None: one per core)."""
    summary = summary or IngestSummary()
    workers = _workers(workers)
    out = _Rows()
    parsed: list[ParsedFile] = []
    skip = skip or set()
    skip_interchanges = skip_interchanges or set()
    for path in iter_x12_files(paths):
        name = str(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            summary.files_skipped += 1
            summary.problems.append(Problem(name, None, f"cannot read the file ({err.strerror})", "file"))
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in skip:
            summary.files_already_ingested += 1
            continue
        try:
            text = decode(data)
            del data
            ics = read_interchanges(text, summary.notes)
            del text
        except X12Error as err:
            summary.files_skipped += 1
            summary.problems.append(Problem(name, err.segment, err.reason, "file"))
            continue
        ids = [f"{ic.sender}:{ic.control_number}" for ic in ics if ic.control_number]
        if any(i in skip_interchanges for i in ids):
            # control numbers repeat across senders' files and roll over: read the file, and let the
            # content-based keys drop what was already ingested
            summary.notes["interchange control number seen before (rows deduplicated by key)"] += 1
        before = summary.transactions_read
        while ics:
            _transactions(ics.pop(0), name, out, summary, workers)  # (each interchange freed when done)
        if summary.transactions_read == before:
            summary.files_skipped += 1
            if not any(p.file == name for p in summary.problems):
                summary.problems.append(Problem(name, None, "no 835 or 837 transaction in the file", "file"))
            continue
        summary.files_read += 1
        skip.add(sha)
        skip_interchanges.update(ids)
        parsed.append(ParsedFile(name, sha, ids))
    return out, parsed, summary


# ================================================================ tables


def _str_array(col) -> pd.api.extensions.ExtensionArray:
    """Python strings (or None) -> pandas' Arrow-backed `str` array, built by Arrow in one C pass."""
    return pd.array(pa.array(col, type=pa.string()), dtype="str")


def _frame(rows: list, cols: list[str]) -> pd.DataFrame:
    """Tuples -> frame, column by column (Arrow builds the string columns; no per-row pandas work):
    floats as float64, ints as Int64, strings as `str`, anything else as Python objects."""
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    data = {}
    for name, col in zip(cols, zip(*rows, strict=True), strict=True):
        first = next((v for v in col if v is not None), None)
        try:
            if isinstance(first, float):
                data[name] = np.array(col, dtype="float64")  # (None -> NaN)
            elif isinstance(first, str):
                data[name] = _str_array(col)
            elif isinstance(first, int) and not isinstance(first, bool):
                data[name] = pa.array(col, type=pa.int64()).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
            else:
                data[name] = pd.Series(np.array(col, dtype=object), dtype=object, copy=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):  # mixed types: leave as objects
            data[name] = pd.Series(np.array(col, dtype=object), dtype=object, copy=False)
    return pd.DataFrame(data, copy=False)


def _empty(table: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[s.type]) for c, s in TABLES[table].columns.items()})


_DTYPES = {"str": "str", "date": "datetime64[ns]", "money": "float64", "signed_money": "float64",
           "int": "Int64", "float": "float64"}


def _dates(s: pd.Series) -> pd.Series:
    """ISO date strings -> datetime64[ns]; each distinct value parsed once (a batch has few dates)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    parsed = pd.to_datetime(pd.Series(uniques, dtype=object), format="%Y-%m-%d", errors="coerce")
    vals = parsed.to_numpy(dtype="datetime64[ns]")
    out = np.full(len(codes), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = codes >= 0
    out[ok] = vals[codes[ok]]
    return pd.Series(out, index=s.index)


def build_tables(rows: _Rows, existing: dict[str, pd.DataFrame] | None = None,
                 summary: IngestSummary | None = None) -> dict[str, pd.DataFrame]:
    """Row lists (+ tables already in the data folder) -> contract tables, keys unique, references held.

    Claims and accounts carry an `x12_source` column (837 or 835): an 837 row replaces a claim that an
    earlier 835 had to build from its CLP segment."""
    existing = existing or {}
    summary = summary or IngestSummary()
    c = _frame(rows.claims, _CLAIM_COLS)
    c["x12_source"] = "837"
    r = _frame(rows.remits, _REMIT_COLS)

    # ---- claims known so far (existing + new 837), then match each new remit to one
    old_claims = existing.get("claims")
    claim_cols = columns_of("claims") + ["x12_source", "x12_original_ref"]
    all_claims = pd.concat(
        [df for df in (c, old_claims) if df is not None and len(df)], ignore_index=True
    ) if (len(c) or (old_claims is not None and len(old_claims))) else pd.DataFrame(columns=claim_cols)
    for col in ("x12_source", "x12_original_ref"):
        if col not in all_claims:
            all_claims[col] = None
    all_claims["x12_source"] = all_claims["x12_source"].fillna("837")
    all_claims["_prio"] = _priority(all_claims["x12_source"], 0)
    all_claims = all_claims.sort_values("_prio", kind="stable").drop_duplicates("claim_id", keep="first")

    by_account: dict[str, list[tuple]] = {}
    for t in all_claims[["claim_id", "account_id", "payer_id", "payer_sequence", "x12_source"]].itertuples(
            index=False, name=None):
        by_account.setdefault(t[1], []).append(t)
    old_remits = existing.get("remittances")
    icn_claim: dict[str, str] = {}
    if old_remits is not None and "payer_claim_number" in old_remits:
        for pcn, cid in zip(old_remits["payer_claim_number"], old_remits["claim_id"], strict=True):
            if isinstance(pcn, str) and pcn:
                icn_claim[pcn] = cid

    claim_ids: list[str] = []
    stub_rows: list[int] = []  # indexes of the remits whose claim is built from their CLP
    unmatched = 0
    stubs: dict[str, str] = {}
    for i, (_rid, acct, _recv, _st, _paid, _pr, pcn, payer, _billed, _cdate, _patient, _fac, _enc, seq) in \
            enumerate(rows.remits):
        cid = icn_claim.get(pcn) if pcn else None
        cands = by_account.get(acct)
        if cid is None and cands:
            best = [t for t in cands if t[2] == payer] or cands
            best = [t for t in best if t[3] == seq] or best
            cid = best[0][0]
            if best[0][4] == "835":
                unmatched += 1
        elif cid is None:
            cid = stubs.get(acct)
            if cid is None:
                cid = acct  # claim built from the CLP segment: claim_id = CLP01
                stubs[acct] = cid
                stub_rows.append(i)
                by_account[acct] = [(cid, acct, payer, seq, "835")]
            unmatched += 1
        elif cands and any(t[0] == cid and t[4] == "835" for t in cands):
            unmatched += 1
        if pcn:
            icn_claim[pcn] = cid
        claim_ids.append(cid)
    r["claim_id"] = _str_array(claim_ids)
    summary.unmatched_remits += unmatched
    if stub_rows:
        summary.notes["age unknown for claims built from 835 CLP: patient_age 0"] += len(stub_rows)
        c = pd.concat([df for df in (c, _stub_claims(r, stub_rows)) if len(df)], ignore_index=True)

    c["original_claim_id"] = None
    for col in ("billed_amount",):
        c[col] = pd.to_numeric(c[col]).astype("float64")  # (an empty frame's object dtype slows groupby)
    c["payer_sequence"] = pd.to_numeric(c["payer_sequence"]).astype("int64")
    # ---- accounts from new claim rows (primary claim's facts; total = largest billed)
    acc = _accounts_from(c)

    # ---- new remittances, adjustments, lines, PLB, payers
    remits = r[["remit_id", "claim_id", "received_date", "claim_status", "paid_amount",
                "patient_responsibility", "payer_claim_number"]].copy()
    adj = _frame(rows.adjustments, _ADJ_COLS)
    rl = _frame(rows.remit_lines, _RLINE_COLS)
    plb = _frame(rows.plb, _PLB_COLS)
    pay = _frame(rows.payers, ["payer_id", "payer_name", "financial_class", "x12_source"])
    pay["timely_filing_days"] = pd.NA
    pay["appeal_window_days"] = pd.NA
    # an 837's financial class (from SBR09) beats an 835's (CLP06 of its first claim)
    pay["_prio"] = _priority(pay["x12_source"])
    pay = pay.sort_values("_prio", kind="stable").drop(columns=["_prio"])

    pay_txn = pd.DataFrame({
        "txn_id": "pay-" + r["remit_id"],
        "account_id": r["account_id"],
        "posted_date": r["received_date"],
        "txn_type": _str_array(np.where(r["paid_amount"].to_numpy() > 0, "insurance_payment", "payment_reversal")),
        "amount": r["paid_amount"].abs(),
        "payer_id": r["payer_id"],
    })
    pay_txn = pay_txn[r["paid_amount"].to_numpy() != 0]

    new = {
        "payers": pay, "accounts": acc,
        "claims": c[columns_of("claims") + ["x12_source", "x12_original_ref"]],
        "claim_lines": _frame(rows.lines, _LINE_COLS), "remittances": remits, "adjustments": adj,
        "remit_lines": rl, "provider_adjustments": plb, "transactions": pay_txn,
    }
    # tables without a unique key: drop new rows of a remit / PLB transaction already ingested
    old_rem = existing.get("remittances")
    if old_rem is not None and len(old_rem) and len(adj):
        new["adjustments"] = adj[~adj["remit_id"].isin(set(old_rem["remit_id"]))]
    old_plb = existing.get("provider_adjustments")
    if old_plb is not None and "x12_txn" in old_plb and len(plb):
        new["provider_adjustments"] = plb[~plb["x12_txn"].isin(set(old_plb["x12_txn"]))]
    merged: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        parts = [df for df in (new.get(name), existing.get(name)) if df is not None and len(df)]
        if not parts:
            merged[name] = _empty(name)
            continue
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].copy()
        merged[name] = _typed(name, df)
    _link_originals(merged["claims"], merged["remittances"])
    merged["transactions"] = _with_charges(merged["transactions"], merged["accounts"])
    for name in TABLES:
        merged[name] = _dedupe(name, merged[name])
    return merged


def _stub_claims(r: pd.DataFrame, idx: list[int]) -> pd.DataFrame:
    """Claims built from the CLP segments of the remits at `idx` (columns taken, not rebuilt row by row)."""
    t = r.iloc[np.asarray(idx, dtype=np.int64)].reset_index(drop=True)
    n = len(t)
    when = t["claim_date"].fillna(t["received_date"])
    enc = t["encounter_type"]
    return pd.DataFrame({
        "claim_id": t["account_id"], "account_id": t["account_id"], "payer_id": t["payer_id"],
        "payer_sequence": t["payer_sequence"],
        "claim_type": _str_array(np.where(enc.to_numpy() == "professional", "professional", "institutional")),
        "frequency": _str_array(["original"] * n), "submitted_date": when,
        "billed_amount": t["billed"].clip(lower=0), "principal_dx": _str_array([None] * n),
        "dx_version": np.full(n, 10, dtype=np.int64), "x12_original_ref": _str_array([None] * n),
        "patient_id": t["patient_id"], "facility_id": t["facility_id"], "encounter_type": enc,
        "service_date": when, "patient_age": np.zeros(n, dtype=np.int64),
        "patient_state": _str_array([None] * n), "x12_source": _str_array(["835"] * n),
    })


def _accounts_from(c: pd.DataFrame) -> pd.DataFrame:
    if not len(c):
        return _empty("accounts").assign(x12_source=pd.Series(dtype=object))
    # per account: the facts of its first claim by (source priority, payer sequence), in that order
    # (= a stable sort then drop_duplicates), and the largest billed amount as total charges
    codes, uniques = pd.factorize(c["account_id"])
    billed = c["billed_amount"].to_numpy(dtype="float64")
    total = np.full(len(uniques), -np.inf)
    np.maximum.at(total, codes, billed)
    order = np.lexsort((c["payer_sequence"].to_numpy(dtype="int64"), _priority(c["x12_source"])))
    _, first_pos = np.unique(codes[order], return_index=True)
    rows = order[np.sort(first_pos)]
    first = c.iloc[rows]
    total_charges = total[codes[rows]]
    return pd.DataFrame({
        "account_id": first["account_id"],
        "patient_id": first["patient_id"],
        "facility_id": first["facility_id"],
        "encounter_type": first["encounter_type"],
        "service_date": first["service_date"],
        "discharge_date": None,
        "primary_payer_id": first["payer_id"],  # (the primary's payer, else the first claim's)
        "patient_age": first["patient_age"],
        "patient_state": first["patient_state"],
        "total_charges": total_charges,
        "x12_source": first["x12_source"],
    })


def _typed(name: str, df: pd.DataFrame) -> pd.DataFrame:
    for col, spec in TABLES[name].columns.items():
        if col not in df:
            df[col] = spec.default if not spec.nullable else None
        if spec.type == "date":
            if not pd.api.types.is_datetime64_any_dtype(df[col]):
                df[col] = _dates(df[col])
            df[col] = df[col].astype("datetime64[ns]")
        elif spec.type in ("money", "signed_money"):
            df[col] = pd.to_numeric(df[col]).astype("float64").round(2)
        elif spec.type == "float":
            df[col] = pd.to_numeric(df[col]).astype("float64")
        elif spec.type == "int":
            df[col] = pd.to_numeric(df[col]).astype("Int64")
        elif df[col].dtype != "str":
            df[col] = df[col].astype("str")  # Arrow-backed: cheap to hash, dedupe and write
    return df


def _link_originals(claims: pd.DataFrame, remits: pd.DataFrame) -> None:
    """original_claim_id of a corrected/replacement/void claim: the claim whose remit carried the
    payer claim number in its REF*F8, else the account's primary original claim when present."""
    if "x12_original_ref" not in claims:
        claims["x12_original_ref"] = None
    out = claims["original_claim_id"].copy() if "original_claim_id" in claims else pd.Series(
        [None] * len(claims), index=claims.index, dtype=object)
    todo = (claims["frequency"] != "original") & out.isna()
    if not todo.any():
        claims["original_claim_id"] = out.astype(object).where(out.notna(), None)
        return
    icn = dict(zip(remits["payer_claim_number"], remits["claim_id"], strict=True))
    known = set(claims["claim_id"])
    for i in claims.index[todo]:
        ref = claims.at[i, "x12_original_ref"]
        cand = icn.get(ref) if isinstance(ref, str) else None
        if cand is None and claims.at[i, "account_id"] in known:
            cand = claims.at[i, "account_id"]
        if cand is not None and cand != claims.at[i, "claim_id"]:
            out.at[i] = cand
    claims["original_claim_id"] = out.astype(object).where(out.notna(), None)


def _with_charges(txn: pd.DataFrame, acc: pd.DataFrame) -> pd.DataFrame:
    """One `charge` per account (its total charges at its service date), rebuilt on each ingest."""
    acc = _dedupe("accounts", acc)
    charges = pd.DataFrame({
        "txn_id": "chg-" + acc["account_id"].astype(str),
        "account_id": acc["account_id"],
        "posted_date": acc["service_date"],
        "txn_type": "charge",
        "amount": acc["total_charges"],
        "payer_id": None,
    })
    keep = txn[~txn["txn_id"].astype(str).str.startswith("chg-")]
    return pd.concat([charges, keep], ignore_index=True)


def _dedupe(name: str, df: pd.DataFrame) -> pd.DataFrame:
    spec = TABLES[name]
    if "x12_source" in df:
        p = _priority(df["x12_source"], 0)
        if len(p) and (p != p[0]).any():  # (a stable sort of equal keys would change nothing)
            df = df.assign(_p=p).sort_values("_p", kind="stable").drop(columns="_p")
    if not spec.unique_key:
        return df.reset_index(drop=True)  # (filtered against what was ingested before, above)
    return df.drop_duplicates(list(spec.key), keep="first").reset_index(drop=True)


# ================================================================ ingestion (with writing)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of small lists (split segments, row tuples) and no reference cycles: the cyclic
    collector would only rescan them over and over (about a third of the parse time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _read_existing(folder: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in list(TABLES) + [LEDGER]:
        p = folder / f"{name}.parquet"
        if p.exists():
            out[name] = pd.read_parquet(p)
    return out


def _write_atomic(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Write all tables or none: build the new folder beside the old one (carrying over any other
    files it holds), then swap with two renames."""
    folder = folder.resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new.", dir=folder.parent))
    old = None
    try:
        if folder.exists():
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
        for name, df in tables.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            old.rmdir()
            folder.rename(old)
        tmp.rename(folder)
    except BaseException:
        if old is not None and not folder.exists():
            old.rename(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ingest(
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike | None = None,
    strict: bool = False,
    workers: int | None = None,
) -> tuple[dict[str, pd.DataFrame], IngestSummary]:
    """Read X12 files; with `out`, append the contract tables there (idempotent, atomic).

    Returns the (merged) tables and the summary. Never raises for a bad file: it is reported."""
    summary = IngestSummary()
    folder = Path(out) if out is not None else None
    existing = _read_existing(folder) if folder is not None and folder.exists() else {}
    ledger = existing.pop(LEDGER, None)
    seen_sha: set[str] = set()
    seen_ic: set[str] = set()
    if ledger is not None and len(ledger):
        seen_sha = set(ledger["sha256"])
        for ids in ledger["interchanges"].dropna():
            seen_ic.update(i for i in str(ids).split(" ") if i)
    paths = list(paths)
    if strict:
        for p in iter_x12_files(paths):
            for seg, reason in strict_problems(p):
                summary.problems.append(Problem(str(p), seg, reason, "note"))
    with _gc_paused():
        rows, parsed, summary = parse_files(paths, seen_sha, seen_ic, summary, workers)
        before = {n: len(df) for n, df in existing.items()}
        tables = build_tables(rows, existing, summary)
        del rows
    summary.rows_added = {n: len(df) - before.get(n, 0) for n, df in tables.items()
                          if len(df) - before.get(n, 0)}
    if folder is not None and parsed:
        led = pd.DataFrame({
            "file_name": [Path(p.name).name for p in parsed],
            "sha256": [p.sha256 for p in parsed],
            "interchanges": [" ".join(p.interchanges) for p in parsed],
            "ingested_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
        })
        if ledger is not None:
            led = pd.concat([ledger, led], ignore_index=True)
        _write_atomic(folder, {**tables, LEDGER: led})
    elif folder is not None and not folder.exists():
        _write_atomic(folder, {**tables, LEDGER: pd.DataFrame(
            columns=["file_name", "sha256", "interchanges", "ingested_at"])})
    log.info("x12 ingestion: %d files read, %d skipped, %d transactions read, %d skipped",
             summary.files_read, summary.files_skipped, summary.transactions_read,
             summary.transactions_skipped)
    return tables, summary


def _pyx12_errors(doc: dict) -> Iterator[tuple[int | None, str]]:
    """(segment number in the file, short description) of each error in pyx12's JSON error report:
    segment ids, element positions and X12 error codes only (its texts may quote values)."""
    def errs(node: dict, what: str) -> Iterator[tuple[int | None, str]]:
        for e in node.get("errors") or []:
            yield node.get("cur_line"), f"{what}: X12 error code {e.get('err_cde', '?')}"

    for isa in doc.get("interchanges") or []:
        yield from errs(isa, "interchange envelope")
        for gs in isa.get("groups") or []:
            yield from errs(gs, "functional group")
            for st in gs.get("transactions") or []:
                yield from errs(st, f"transaction set {st.get('trn_set_id') or '?'}")
                for seg in st.get("segments") or []:
                    sid = seg.get("seg_id") or "?"
                    yield from errs(seg, f"segment {sid}")
                    for el in seg.get("elements") or []:
                        pos = f"{sid}{int(el['ele_pos']):02d}" if el.get("ele_pos") else sid
                        if el.get("subele_pos"):
                            pos += f"-{int(el['subele_pos']):02d}"
                        for e in el.get("errors") or []:
                            yield seg.get("cur_line"), f"element {pos}: X12 error code {e.get('err_cde', '?')}"


def strict_problems(path: Path, limit: int = 5) -> list[tuple[int | None, str]]:
    """pyx12's loop-aware validation of one file (slow; `--strict`): (segment number, reason) of the
    first `limit` errors and a count of the rest. No values: segment ids, positions and codes only."""
    import io
    import json

    import pyx12.params
    import pyx12.x12n_document

    pyx12_log = logging.getLogger("pyx12")
    level = pyx12_log.level
    pyx12_log.setLevel(logging.CRITICAL)  # its messages quote segments (ids, amounts)
    report = io.StringIO()
    try:
        ok = pyx12.x12n_document.x12n_document(
            pyx12.params.params(), str(path), io.StringIO(), None, None, report)
    except Exception as err:  # pyx12 raises its own (and plain) errors on files it cannot walk
        return [(None, f"pyx12 strict validation could not read the file ({type(err).__name__})")]
    finally:
        pyx12_log.setLevel(level)
    try:
        doc = json.loads(report.getvalue() or "{}")
    except ValueError:
        doc = {}
    errors = list(_pyx12_errors(doc))
    if ok and not errors:
        return []
    if not errors:
        return [(None, "pyx12 strict validation: the file is not valid (no details)")]
    out = [(seg, f"pyx12 strict validation: {what}") for seg, what in errors[:limit]]
    if len(errors) > limit:
        out.append((None, f"pyx12 strict validation: {len(errors) - limit} more error(s)"))
    return out
