"""The fast X12 segment reader: a file's bytes -> interchanges in one canonical form -> transactions.

Robust by construction, not by special cases:
  * the ISA gives the separators: the element separator is ISA's fourth character, ISA16 (found by
    counting element separators, so a non-fixed-width ISA reads too) the component separator, the
    next character that is not a space the segment terminator (a line break: the file is one segment
    a line, LF, CR LF or CR), ISA11 the repetition separator when it is not a letter or digit (5010);
  * each interchange is rewritten once, in C (`bytes.translate`), into canonical separators (control
    characters X12 data cannot hold: values.ELEMENT, COMPONENT, REPETITION, and "\\n" between
    segments). Line breaks that are not the terminator are dropped (they are not data: pretty-printed
    files, lines wrapped at 80 columns); spaces and tabs around separators are dropped (indentation;
    trailing spaces inside elements, which the guides say to suppress); blank segments are dropped;
  * a file may hold several interchanges, each with its own separators, several GS groups and several
    ST..SE transactions of any kind; a byte order mark (UTF-8 or UTF-16) is read;
  * a file with no ISA envelope: separators are inferred from its first segment, and noted;
  * segments are numbered 1-based in the file; anything not read (a segment outside ST..SE, data
    before the first ISA, an interchange whose ISA cannot be read) is reported with file, segment
    number and why, and counted per kind.

The mappings (remit.py, claim.py, acks.py) therefore see one form only, whatever the sender wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from features.sources.x12.report import IngestSummary, X12Error
from features.sources.x12.values import COMPONENT, ELEMENT, SEGMENT, d8, element, yymmdd

Report = Callable[[int | None, str, str], None]  # (segment, reason, what was not read)

_WHITE = frozenset(b" \t\r\n\x0b\x0c")
_LF, _CR = 10, 13
# white space the reader drops: indentation and blank lines (after a segment break), spaces before any
# separator (trailing spaces in elements) and after an element or component separator. Looked for first
# (one pass each, literal first), replaced only where found.
_LINE_WHITE = re.compile(rb"\n[\n ]")
_SPACE_NEAR = re.compile(rb" (?=[\x1d\x1e\x1f\n])| (?<=[\x1d\x1e\x1f] )")
_INDENTATION = re.compile(rb"\n +")
_SPACES_BEFORE = re.compile(rb" +(?=[\x1d\x1e\x1f\n])")
_SPACES_AFTER = re.compile(rb"([\x1d\x1e\x1f]) +")
_BLANK_SEGMENTS = re.compile(rb"\n\n+")


@dataclass
class Interchange:
    """One interchange (or an envelope-less file) in canonical form."""

    text: str  # its segments after the ISA, each preceded by "\n" (elements split by ELEMENT)
    first_segment: int  # 1-based number in the file of its ISA (or of its first segment without ISA)
    control_number: str | None  # ISA13
    sender: str | None  # ISA06
    receiver: str | None  # ISA08
    date: str | None  # ISA09 as an ISO date
    isa: list[str] | None = None  # its elements, trimmed

    @property
    def segments(self) -> list[list[str]]:
        """All segments, split into elements (for small interchanges and tests; ingestion streams)."""
        body = [s.split(ELEMENT) for s in self.text.split(SEGMENT)[1:]]
        return ([self.isa] if self.isa else []) + body

    @property
    def segment_count(self) -> int:
        return (1 if self.isa else 0) + self.text.count(SEGMENT)

    @property
    def key(self) -> str:
        """sender:ISA13, as the ingestion ledger records it ("" without an envelope)."""
        return f"{self.sender}:{self.control_number}" if self.control_number else ""


@dataclass
class Group:
    """A functional group's GS header (what a transaction's mapping may need of it)."""

    functional_id: str  # GS01: HP 835, HC 837, HN 277, FA 999
    sender: str  # GS02
    receiver: str  # GS03
    date: str | None  # GS04 as an ISO date
    control: str  # GS06
    version: str  # GS08


@dataclass
class Transaction:
    """One ST..SE transaction cut out of an interchange (picklable: no file text)."""

    text: str  # its segments joined by "\n": ST first, SE last when complete
    first: int  # 1-based number in the file of its ST
    nseg: int
    complete: bool  # ends with its SE (else cut short by ST, GE, IEA or the end of the file)
    file: str
    group: Group | None
    interchange_date: str | None

    @property
    def segments(self) -> list[str]:
        return self.text.split(SEGMENT)

    @property
    def st(self) -> list[str]:
        """The ST segment's elements."""
        end = self.text.find(SEGMENT)
        return self.text[:end if end >= 0 else len(self.text)].split(ELEMENT)

    @property
    def kind(self) -> str:
        return element(self.st, 1)  # ST01

    @property
    def control(self) -> str:
        return element(self.st, 2)  # ST02

    @property
    def version(self) -> str:
        return element(self.st, 3) or (self.group.version if self.group else "")  # ST03, else GS08

    @property
    def date(self) -> str | None:
        """The group's date, else the interchange's: the last resort for a transaction's own dates."""
        return (self.group.date if self.group else None) or self.interchange_date


# ---------------------------------------------------------------- bytes -> canonical text


def file_bytes(data: bytes | str) -> bytes:
    """A file's bytes without a byte order mark (UTF-16 files re-encoded as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:]
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16").encode("utf-8")
    return data


@lru_cache(maxsize=64)
def _table(sep: int, comp: int, rep: int | None, term: int) -> tuple[bytes, bytes]:
    """(translation table, bytes to delete) that rewrite a sender's separators into the canonical ones."""
    t = bytearray(range(256))
    for c in (0x1D, 0x1E, 0x1F, 0x09, 0x0B, 0x0C):  # stray canonical characters and tabs: spaces
        t[c] = 0x20
    if term in (_LF, _CR):
        t[_CR] = t[_LF] = _LF  # one segment a line: CR LF, LF or CR all end a segment
        delete = b""
    else:
        delete = b"\r\n"  # line breaks between (or inside) segments are not data
    t[sep], t[comp], t[term] = 0x1D, 0x1F, _LF
    if rep is not None:
        t[rep] = 0x1E
    return bytes(t), delete


def canonical(body: bytes, sep: int, comp: int, rep: int | None, term: int) -> str:
    """Segments of `body` (which starts with a terminator) in canonical form, each preceded by "\\n"."""
    table, delete = _table(sep, comp, rep, term)
    out = body.translate(table, delete)
    if _LINE_WHITE.search(out):
        out = _BLANK_SEGMENTS.sub(b"\n", _INDENTATION.sub(b"\n", out))
    if _SPACE_NEAR.search(out):
        out = _SPACES_AFTER.sub(rb"\1", _SPACES_BEFORE.sub(b"", out))
    if out.endswith(b"\n"):
        out = out.rstrip(b"\n")
    if out and not out.startswith(b"\n"):
        out = b"\n" + out.lstrip(b" ")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return out.decode("latin-1")  # X12 is ASCII; a stray byte must not lose the file


def _isa_at(data: bytes, i: int) -> bool:
    """Does `data[i:]` start an ISA segment (ISA followed by a separator, not by more letters)?"""
    nxt = data[i + 3:i + 4]
    return bool(nxt) and not nxt.isalnum() and nxt[0] not in _WHITE


def _first_isa(data: bytes) -> int:
    """Position of the first ISA that starts a line (or the file); -1 when there is none."""
    i = data.find(b"ISA")
    while i >= 0:
        if _isa_at(data, i) and (i == 0 or data[i - 1] in (_LF, _CR) or not data[:i].strip()):
            return i
        i = data.find(b"ISA", i + 1)
    return -1


# an ISA tag, perhaps cut by line breaks (files wrapped at a fixed width), and the separator after it
_ISA_WRAPPED = re.compile(rb"I[\r\n]*S[\r\n]*A[\r\n]*[^A-Za-z0-9\s]")


def _next_isa(data: bytes, start: int, term: int) -> int:
    """Position of the next ISA segment at or after `start` (the end of the data when none): an ISA tag
    right after this interchange's terminator (white space between them is not data)."""
    for i in _isa_tags(data, start, term):
        j, newline = i - 1, False
        while j >= start and data[j] in _WHITE:
            newline = newline or data[j] in (_LF, _CR)
            j -= 1
        if j < start or data[j] == term or (term == _LF and newline):
            return i
    return len(data)


def _isa_tags(data: bytes, start: int, term: int) -> Iterator[int]:
    if term == _LF:  # (one segment a line: no segment is cut by a line break)
        i = data.find(b"ISA", start)
        while i >= 0:
            if _isa_at(data, i):
                yield i
            i = data.find(b"ISA", i + 1)
    else:
        for m in _ISA_WRAPPED.finditer(data, start):
            yield m.start()


def _isa(data: bytes, p: int, seg_no: int) -> tuple[int, int, int | None, int, list[str], int]:
    """(element, component, repetition, terminator, ISA elements, where its body starts) of the ISA at
    `p`. Line breaks inside the ISA (a file wrapped at a fixed width) are not data."""
    window = data[p:p + 512]
    keep = [i for i, c in enumerate(window) if c not in (_LF, _CR)]
    clean = bytes(window[i] for i in keep)
    sep = clean[3]
    q = 3
    for _ in range(15):  # the 16th element separator comes before ISA16
        q = clean.find(bytes((sep,)), q + 1)
        if q < 0:
            raise X12Error(seg_no, "ISA segment is truncated (fewer than 16 elements)")
    if q + 1 >= len(clean):
        raise X12Error(seg_no, "ISA segment is truncated (no ISA16)")
    comp = clean[q + 1]
    # the terminator: the first character after ISA16 that is not white space; a line break there
    # followed by the next segment's tag means one segment a line
    after = p + keep[q + 1] + 1
    t, newline = after, False
    while t < len(data) and data[t] in _WHITE:
        newline = newline or data[t] in (_LF, _CR)
        t += 1
    if t < len(data) and not chr(data[t]).isalnum():
        term, start = data[t], t
    elif newline or t >= len(data):
        term, start = _LF, after
    else:
        raise X12Error(seg_no, "no segment terminator after ISA16")
    isa = [e.strip() for e in clean[:q + 2].decode("latin-1").split(chr(sep))]
    seps = {sep, comp, term}
    if len(seps) < 3:
        raise X12Error(seg_no, "ISA separators are not distinct (element, ISA16 component, terminator)")
    for what, c in (("element separator", sep), ("ISA16 component separator", comp), ("segment terminator", term)):
        if chr(c).isalnum() or c == 0x20:
            raise X12Error(seg_no, f"ISA {what} is a letter, digit or space")
    r = isa[11][:1].encode("latin-1") if len(isa) > 11 else b""
    rep = r[0] if len(r) == 1 and not r.isalnum() and r[0] not in _WHITE and r[0] not in seps else None
    return sep, comp, rep, term, isa, start


def _infer_separators(data: bytes) -> tuple[int, int, int]:
    """(element, component, terminator) of an envelope-less file, from its first segment."""
    text = data[:20000].decode("latin-1")
    i = 0
    while i < len(text) and i < 3 and text[i].isalnum():
        i += 1
    if i < 2 or i >= len(text):
        raise X12Error(1, "no ISA envelope and the first segment has no recognisable tag")
    sep = text[i]
    if sep.isalnum() or sep in " \t\r\n":
        raise X12Error(1, "no ISA envelope and no element separator after the first tag")
    term = "~"
    for ch in text[i + 1: i + 200]:
        if ch == sep or ch.isalnum() or ch in " .-":
            continue
        term = "\n" if ch in "\r\n" else ch
        break
    # the component separator: the first non-alphanumeric character inside the first service line's
    # procedure composite (SVC01, SV101, SV202)
    comp = ":"
    flat = text if term == "\n" else text.replace("\r", "").replace("\n", "")
    for tag, idx in (("SVC", 1), ("SV1", 1), ("SV2", 2)):
        m = re.search(re.escape(term) + r"[ \t\r\n]*" + tag + re.escape(sep), flat)
        if m is None:
            continue
        parts = flat[m.end() - len(tag) - 1:m.end() + 200].split(term, 1)[0].split(sep)
        for ch in parts[idx] if len(parts) > idx else "":
            if not ch.isalnum() and ch not in " .-":
                comp = ch
                break
        break
    return ord(sep), ord(comp), ord(term)


# composite elements that every claim or service line has: (tag, element position)
_COMPOSITES = (("SVC", 1), ("SV1", 1), ("SV2", 2), ("CLM", 5), ("HI", 1))


def _composite_separator(text: str) -> str | None:
    """The separator the first claim or service line composite uses, when it is not ISA16."""
    for tag, idx in _COMPOSITES:
        j = text.find(SEGMENT + tag + ELEMENT)
        if j < 0:
            continue
        end = text.find(SEGMENT, j + 1)
        value = element(text[j + 1:end if end >= 0 else len(text)].split(ELEMENT), idx)
        for ch in value:
            if not ch.isalnum() and ch not in " .-":
                return ch
    return None


def read_interchanges(data: bytes | str, notes=None, report: Report | None = None) -> list[Interchange]:
    """Cut a file into interchanges in canonical form. Raises X12Error when nothing can be read; an
    unreadable later interchange is reported (`report`) and the ones before it are returned."""
    data = file_bytes(data)
    p = _first_isa(data)
    if p < 0:
        stripped = data.strip()
        if not stripped:
            raise X12Error(None, "the file is empty")
        sep, comp, term = _infer_separators(stripped)
        if notes is not None:
            notes["no ISA envelope: separators inferred from the first segment"] += 1
        text = canonical(bytes((term,)) + stripped, sep, comp, None, term)
        return [Interchange(text, 1, None, None, None, None, None)]
    if data[:p].strip() and report is not None:
        report(None, "data before the first ISA segment is not X12: not read", "data before ISA")
    out: list[Interchange] = []
    seg_no = 1
    while p < len(data):
        try:
            sep, comp, rep, term, isa, t = _isa(data, p, seg_no)
        except X12Error as err:
            if not out or report is None:
                raise
            report(err.segment, f"interchange not read: {err.reason}", "interchange")
            break
        end = _next_isa(data, t + 1, term)
        text = canonical(data[t:end], sep, comp, rep, term)
        if COMPONENT not in text:  # ISA16 never used: do the composites use another separator?
            used = _composite_separator(text)
            if used is not None and ord(used) not in (sep, term, rep):
                text = canonical(data[t:end], sep, ord(used), rep, term)
                if notes is not None:
                    notes["ISA16 component separator not used in the interchange; its composites' "
                          "separator read instead"] += 1
        ic = Interchange(text, seg_no, element(isa, 13) or None,
                         element(isa, 6) or None, element(isa, 8) or None, yymmdd(element(isa, 9)), isa)
        out.append(ic)
        seg_no += ic.segment_count
        p = end
    return out


# ---------------------------------------------------------------- interchange -> transactions

_ENDS = ("SE", "ST", "GE", "IEA")


def iter_transactions(ic: Interchange, file: str, summary: IngestSummary) -> Iterator[Transaction]:
    """The transactions of an interchange in file order, one at a time. Segments between them are the
    envelope (GS opens a group, GE closes it); anything else there is reported and not read."""
    b = ic.text
    n = len(b)
    toks = {tag: SEGMENT + tag + ELEMENT for tag in _ENDS}
    found: dict[str, int] = {}

    def nxt(tag: str, pos: int) -> int:
        """First position >= pos of the segment `tag` (n when none); each search resumes the last."""
        c = found.get(tag)
        if c is None or c < pos:
            c = b.find(toks[tag], pos)
            c = n if c < 0 else c
            found[tag] = c
        return c

    def report(seg: int | None, reason: str, what: str) -> None:
        summary.problem(file, seg, reason, "segment", what)

    seg_no = ic.first_segment + (1 if ic.isa else 0) - 1  # the number of the last segment passed
    group: Group | None = None
    after_iea = False
    pos = 0  # b[pos] is the "\n" before a segment (or pos == n)
    while pos < n:
        q = nxt("ST", pos)
        if q > pos:
            for s in b[pos + 1:q].split(SEGMENT):
                seg_no += 1
                tag = s.split(ELEMENT, 1)[0]
                if tag == "GS":
                    g = s.split(ELEMENT)
                    group = Group(element(g, 1), element(g, 2), element(g, 3), d8(element(g, 4)),
                                  element(g, 6), element(g, 8))
                elif tag == "GE":
                    group = None
                elif tag == "IEA":
                    after_iea = True
                    group = None
                elif tag == "TA1":
                    report(seg_no, "TA1 interchange acknowledgement: not read (it acknowledges an envelope, "
                                   "no claim)", "TA1 segment")
                else:
                    report(seg_no, f"{tag[:3] or 'empty'} segment outside a transaction (ST..SE): not read",
                           f"{tag[:3] or 'empty'} segment outside a transaction")
        if q >= n:
            break
        ends = [nxt(tag, q + 1) for tag in _ENDS]
        stop = min(ends)
        if stop < n and stop == ends[0]:
            e = b.find(SEGMENT, stop + 1)
            e = n if e < 0 else e
            complete = True
        else:
            e, complete = stop, False
        text = b[q + 1:e]
        nseg = text.count(SEGMENT) + 1
        if after_iea and ic.isa:
            summary.notes["transaction after its interchange's IEA trailer: read"] += 1
        yield Transaction(text, seg_no + 1, nseg, complete, file, group, ic.date)
        seg_no += nseg
        pos = e
    if ic.isa and not after_iea:
        summary.notes["interchange without IEA trailer (read to its end)"] += 1
