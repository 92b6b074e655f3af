"""The optional strict pass (`recoup ingest-x12 --strict`): pyx12's loop-aware validation of a file.

pyx12 parses about 850 claims/s here, far from the bulk path's goal, so it only reports; the fast
reader (segments.py) still reads the file. Reports carry segment ids, element positions and X12 error
codes only: pyx12's own texts may quote values (ids, amounts)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path


def pyx12_errors(doc: dict) -> Iterator[tuple[int | None, str]]:
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
    errors = list(pyx12_errors(doc))
    if ok and not errors:
        return []
    if not errors:
        return [(None, "pyx12 strict validation: the file is not valid (no details)")]
    out = [(seg, f"pyx12 strict validation: {what}") for seg, what in errors[:limit]]
    if len(errors) > limit:
        out.append((None, f"pyx12 strict validation: {len(errors) - limit} more error(s)"))
    return out
