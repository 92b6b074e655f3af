"""Writing X12 the ways real senders do, for the reader's tests (our own code: no third-party files).

`parse` reads a well-formed file into segments (independently of the reader under test, and only
as far as a test needs: separators from the ISA, or '*', '~' and the first composite's separator
without one). `write` serializes segments in a `Style`. `VARIATIONS` is the one list of the styles
real senders produce: a new variation is one line there.
"""

from __future__ import annotations

from dataclasses import dataclass

COMP, REP = "\x01", "\x02"  # placeholders for the component and repetition separators inside elements

Segment = list[str]  # tag, then elements (composites hold COMP, repeats REP)


@dataclass(frozen=True)
class Style:
    sep: str = "*"
    comp: str = ":"
    rep: str = "^"  # 5010 ISA11 (kept as sent in 4010 files, whose ISA11 is a letter)
    term: str = "~"
    line_end: str = ""  # after each terminator
    indent: str = ""  # per loop level
    bom: bool = False
    trailing_spaces: int = 0  # appended to each element (not in the ISA)
    blank_lines: int = 0  # empty lines after each segment
    wrap: int = 0  # cut the text into lines of this width (a terminator that is not a line break)


VARIATIONS: dict[str, Style] = {
    "as one line": Style(),
    "one segment a line, LF": Style(line_end="\n"),
    "one segment a line, CR LF": Style(line_end="\r\n"),
    "indented lines (pretty-printed)": Style(line_end="\r\n", indent="  "),
    "tab-indented lines": Style(line_end="\n", indent="\t"),
    "a byte order mark": Style(bom=True, line_end="\r\n"),
    "extra blank lines": Style(line_end="\n", blank_lines=2),
    "trailing spaces in elements": Style(trailing_spaces=2, line_end="\n"),
    "line break as terminator": Style(sep="|", comp=">", rep="!", term="\n"),
    "CR LF as terminator, indented": Style(sep="|", comp="\\", rep="~", term="\r", line_end="\n", indent="    "),
    "other separators": Style(sep="^", comp="}", rep="{", term="'"),
    "control-character separators": Style(sep="\x1f", comp="\x1d", rep="\x1e", term="\x1c"),
    "wrapped at 80 columns": Style(wrap=80),
}


def _depth(tag: str, level: int) -> tuple[int, int]:
    """(indentation of this segment, level for the ones after it): envelope, then loops."""
    envelope = {"ISA": 0, "IEA": 0, "GS": 1, "GE": 1, "ST": 2, "SE": 2}
    if tag in envelope:
        return envelope[tag], 3
    if tag in ("HL", "CLP", "CLM", "LX", "TRN", "AK2"):
        return 3, 4
    if tag in ("SVC", "SV1", "SV2", "SV3"):
        return 4, 5
    return level, level


def write(interchanges: list[list[Segment]], style: Style) -> bytes:
    out: list[str] = []
    for segments in interchanges:
        level = 0
        for seg in segments:
            tag = seg[0]
            if tag == "ISA":
                isa = list(seg)
                if not isa[11].isalnum():
                    isa[11] = style.rep
                isa[16] = style.comp
                text = style.sep.join(isa)
            else:
                pad = " " * style.trailing_spaces
                text = style.sep.join([tag] + [
                    e.replace(COMP, style.comp).replace(REP, style.rep) + pad for e in seg[1:]])
            depth, level = _depth(tag, level)
            out.append(style.indent * depth + text + style.term + style.line_end + "\n" * style.blank_lines)
    text = "".join(out)
    if style.wrap:
        text = "\r\n".join(text[i:i + style.wrap] for i in range(0, len(text), style.wrap))
    data = text.encode("latin-1")
    return b"\xef\xbb\xbf" + data if style.bom else data


def _separators(text: str) -> tuple[str, str, str | None, str]:
    if text.startswith("ISA"):
        sep = text[3]
        q = 3
        for _ in range(15):
            q = text.index(sep, q + 1)
        comp = text[q + 1]
        term = text[q + 2:].lstrip(" ")[0]
        isa11 = text.split(sep)[11]
        return sep, comp, (isa11 if not isa11.isalnum() else None), ("\n" if term in "\r\n" else term)
    sep = text[2]
    term = "~"
    comp = ":"
    flat = "".join(text.split())
    j = flat.find(term + "SVC" + sep)
    if j >= 0:
        composite = flat[j + 5:].split(sep, 1)[0]
        comp = next((c for c in composite if not c.isalnum()), ":")
    return sep, comp, None, term


def parse(data: bytes | str) -> list[list[Segment]]:
    """A well-formed file's interchanges (one without an envelope) as segments."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    text = text.lstrip("\ufeff\xef\xbb\xbf \r\n")
    sep, comp, rep, term = _separators(text)
    if term != "\n":
        text = text.replace("\r", "").replace("\n", "")
    interchanges: list[list[Segment]] = []
    for raw in text.split(term):
        raw = raw.strip()
        if not raw:
            continue
        parts = raw.split(sep)
        if parts[0] == "ISA" or not interchanges:
            interchanges.append([])
        if parts[0] != "ISA":
            parts = [p.strip().replace(comp, COMP) for p in parts]
            if rep:
                parts = [p.replace(rep, REP) for p in parts]
        interchanges[-1].append(parts)
    return interchanges


def restyle(data: bytes, style: Style) -> bytes:
    return write(parse(data), style)


def with_control_numbers(interchanges: list[list[Segment]], isa13: str) -> list[list[Segment]]:
    """The same interchanges with another ISA13 (and IEA02): as another sender's counter would give."""
    out = []
    for segments in interchanges:
        segs = []
        for seg in segments:
            if seg[0] == "ISA":
                seg = seg[:13] + [isa13] + seg[14:]
            elif seg[0] == "IEA":
                seg = seg[:2] + [isa13]
            segs.append(seg)
        out.append(segs)
    return out



