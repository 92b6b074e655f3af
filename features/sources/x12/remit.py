"""835 remittance advice (4010 X091, 5010 X221) -> remittances, adjustments, remit lines, PLB rows.

Mapping choices (the 835 leaves room):
  * remit_id = a hash of what the claim payment says: the transaction's header (BPR, TRN, dates,
    payer and payee loops), the claim loop (CLP and everything up to the next CLP), and how many
    identical loops came before it in the transaction. Content, never control numbers: a file re-sent
    in another envelope gives the same ids, two files that reuse ISA13/ST02 never merge.
  * claim_status from CLP02 (contract map); a code the contract does not know (4010's 10, 15, 16, 17,
    27, ...) is kept raw in status_code with claim_status `pended`, and noted; never dropped.
    forwarded = 1 for 19, 20, 21 (processed and crossed over to another payer).
  * received_date = DTM*405 (production date), else BPR16 (payment date), else GS04 / ISA09 (noted).
  * payer_id = N1*PR N104, else REF*2U, else TRN03; a payer with none of them: its name (noted).
  * encounter type of a claim known only from its remit: MIA = inpatient; revenue-coded lines (NU or
    SVC04) = institutional (emergency with a 045x revenue code, else outpatient); else professional.
  * remark codes: MOA/MIA on the claim-level adjustments, LQ*HE on the adjustments of its line; a
    remark with no CAS to carry it cannot be stored (an adjustment needs group and reason) and is noted.
  * PLB: one provider_adjustments row per (reason, amount) pair; reason_code = PLB03-1; dated at the
    remittance's received date (PLB02 is a fiscal period end, often in the future).
What cannot be read is skipped at the smallest unit that holds it, and reported: a CAS or SVC segment
(its claim stays), a claim payment whose CLP is unreadable (its loop), a transaction with no payer or date.
"""

from __future__ import annotations

from hashlib import blake2b

from features.contract import CLAIM_STATUS_FROM_X12, FORWARDED_X12_STATUSES, GROUP_CODES
from features.sources.x12.report import IngestSummary, X12Error
from features.sources.x12.rows import Rows
from features.sources.x12.segments import Transaction
from features.sources.x12.values import (
    COMPONENT,
    ELEMENT,
    FINANCIAL_CLASS_FROM_FILING,
    SEQUENCE_FROM_STATUS,
    d8,
    element,
    money,
    text_hash,
)

GROUPS = frozenset(GROUP_CODES)
# 835 segments that carry nothing the contract needs (passed over before any other test: speed)
_IGNORED = frozenset(t if len(t) == 3 else t + ELEMENT for t in
                     ("REF", "AMT", "QTY", "N3", "N4", "PER", "LX", "TS3", "TS2", "RDM", "CUR"))
NOTE_REMARKS = ("remark codes (MOA/MIA/LQ) with no CAS adjustment on their claim or line: not stored "
                "(an adjustments row needs a group and reason code)")
NOTE_STATUS = ("CLP02 claim status code the contract does not know: stored raw in status_code, "
               "claim_status pended")
# positions in a remit row (rows.REMIT_COLUMNS)
_ID, _ACCOUNT, _RECEIVED, _PAYER, _CLAIM_DATE, _PATIENT, _FACILITY, _ENCOUNTER = 0, 1, 2, 9, 11, 12, 13, 14
_LQ, _SE, _NM1_QC, _NM1 = "LQ" + ELEMENT, "SE" + ELEMENT, "NM1" + ELEMENT + "QC" + ELEMENT, "NM1"


def map_remittance(tx: Transaction, out: Rows, summary: IngestSummary) -> int:
    """One 835 transaction -> rows; returns the number of claim payments read. Raises X12Error when
    the transaction as a whole cannot be read (no payer, no date).

    The hot loop compares the first three characters of each segment and splits a segment into
    elements only in the branches that need it."""
    segs = tx.segments
    first, file, notes = tx.first, tx.file, summary.notes
    statuses, forwarded_codes = CLAIM_STATUS_FROM_X12, FORWARDED_X12_STATUSES
    prod_date = pay_date = None
    payer_name = payer_n104 = payer_2u = payer_trn = payee_id = filing = ""
    remits: list[list] = []  # laid out as REMIT_COLUMNS (received date and payer known only at the end)
    cur: list | None = None
    skipping = False  # inside the loop of a claim payment whose CLP could not be read
    skip_line = False  # inside a service line whose SVC could not be read
    claim_adj: list[list] = []
    line_adj: list[list] = []  # adjustments of the current line (already in out.adjustments), for LQ
    remarks: list[str] = []
    line_no = clp_at = 0
    adj_at = rline_at = 0  # where the current claim's rows start in out.adjustments / out.remit_lines
    has_mia = institutional = er = False
    plb_pairs: list[tuple[str, float]] = []
    plb_text: list[str] = []
    header: list[str] = []
    seen_loops: dict[str, int] = {}
    adjustments, rlines = out.adjustments, out.remit_lines
    header_key = ""

    def skip(k: int, reason: str, what: str, kind: str = "segment") -> None:
        summary.problem(file, first + k, reason, kind, what)

    def close_claim(end: int) -> None:
        nonlocal claim_adj, remarks, cur
        if cur is None:
            return
        if remarks:
            if claim_adj:
                rem = " ".join(remarks)
                for a in claim_adj:
                    a[5] = rem
            else:
                notes[NOTE_REMARKS] += len(remarks)
        # the id: what the claim loop says, in this header, and its rank among identical loops
        loop = "\n".join(segs[clp_at:end])
        occurrence = seen_loops.get(loop, 0)
        seen_loops[loop] = occurrence + 1
        rid = blake2b(f"{header_key}\n{loop}\n{occurrence}".encode(), digest_size=8).hexdigest()
        cur[_ID] = rid
        for a in claim_adj:
            a[0] = rid
        for i in range(adj_at, len(adjustments)):
            adjustments[i][0] = rid
        for i in range(rline_at, len(rlines)):
            rlines[i][0] = rid
        adjustments.extend(claim_adj)
        if has_mia:
            cur[_ENCOUNTER] = "inpatient"
        elif institutional:
            cur[_ENCOUNTER] = "emergency" if er else "outpatient"
        else:
            cur[_ENCOUNTER] = "professional"
        cur[_PATIENT] = "p" + text_hash("835|" + (cur[_PATIENT] or cur[_ACCOUNT]))
        claim_adj, remarks, cur = [], [], None

    def plb(s: list[str], k: int) -> None:
        pairs = []
        for j in range(3, min(len(s), 15), 2):
            if not s[j]:
                continue
            try:
                pairs.append((s[j].split(COMPONENT)[0], money(element(s, j + 1), first + k, "")))
            except X12Error:
                skip(k, f"PLB{j + 1:02d} adjustment amount is not a number: this PLB segment not read",
                     "PLB segment")
                return
        plb_pairs.extend(pairs)
        plb_text.append(ELEMENT.join(s))

    # ---- header (1000A/B loops): up to the first CLP
    k, nseg = 1, len(segs)
    while k < nseg:
        seg = segs[k]
        t3 = seg[:3]
        if t3 == "CLP" or t3 == _SE:
            break
        if t3 == "PLB":  # provider level: alone in a transaction, or after the claims
            plb(seg.split(ELEMENT), k)
            k += 1
            continue
        header.append(seg)
        if t3 == "DTM":
            s = seg.split(ELEMENT)
            if element(s, 1) == "405":
                prod_date = d8(element(s, 2))
        elif t3 == "BPR":
            pay_date = d8(element(seg.split(ELEMENT), 16))
        elif t3 == "TRN":
            payer_trn = element(seg.split(ELEMENT), 3)
        elif t3 == "N1" + ELEMENT:
            s = seg.split(ELEMENT)
            if s[1] == "PR":
                payer_name, payer_n104 = element(s, 2), element(s, 4)
            elif s[1] == "PE":
                payee_id = element(s, 4)
        elif t3 == "REF":
            s = seg.split(ELEMENT)
            if element(s, 1) == "2U":
                payer_2u = element(s, 2)
        k += 1
    header_key = text_hash("\n".join(header))

    # ---- claims (2100/2110 loops) and PLB
    while k < nseg:
        seg = segs[k]
        t3 = seg[:3]
        if t3 in _IGNORED:
            k += 1
            continue
        if t3 == "CLP":
            close_claim(k)
            s = seg.split(ELEMENT)
            line_no, line_adj, skip_line = 0, [], False
            has_mia = institutional = er = False
            clp_at, adj_at, rline_at = k, len(adjustments), len(rlines)
            ns = len(s)
            try:
                if ns < 5 or not s[1]:
                    raise X12Error(first + k, "CLP without patient control number or amounts")
                try:
                    paid, billed = float(s[4]), float(s[3])
                    resp = float(s[5]) if ns > 5 and s[5] else 0.0
                except ValueError:  # name the element
                    for i, what in ((4, "CLP04 paid amount"), (3, "CLP03 billed amount"),
                                    (5, "CLP05 patient responsibility")):
                        if i < ns and s[i]:
                            money(s[i], first + k, what)
                    raise X12Error(first + k, "CLP04 paid amount is missing") from None
            except X12Error as err:
                skip(k, f"{err.reason}: this claim payment (CLP loop) not read", "CLP claim payment", "claim")
                skipping = True
                k += 1
                continue
            skipping = False
            code = s[2]
            status = statuses.get(code)
            if status is None:
                status = "pended"
                notes[NOTE_STATUS] += 1
            cur = [
                None, s[1], None, status, code, 1 if code in forwarded_codes else 0, paid, resp,
                (s[7] or None) if ns > 7 else None, None, billed, None, "", "", "",
                SEQUENCE_FROM_STATUS.get(code, 1),
            ]
            if not filing and ns > 6:
                filing = s[6]
            remits.append(cur)
        elif t3 == "PLB":
            close_claim(k)
            skipping = False
            plb(seg.split(ELEMENT), k)
        elif t3 == _SE:
            break
        elif skipping:
            pass  # (the rest of a claim payment already reported)
        elif t3 == "CAS":
            if cur is None:
                skip(k, "CAS outside a claim payment (before any CLP): not read", "CAS segment")
                k += 1
                continue
            if skip_line:
                k += 1
                continue
            s = seg.split(ELEMENT)
            grp = s[1] if len(s) > 1 else ""
            if grp not in GROUPS:
                skip(k, "CAS01 group code is not CO, PR, OA, PI or CR: this CAS segment not read", "CAS segment")
                k += 1
                continue
            rows = []
            ns = len(s)
            try:
                for j in range(2, min(ns, 20), 3):
                    if s[j]:
                        rows.append([None, line_no or None, grp, s[j], float(s[j + 1] if j + 1 < ns else ""), None])
            except ValueError:
                skip(k, "CAS adjustment amount is not a number: this CAS segment not read", "CAS segment")
                k += 1
                continue
            if line_no:
                adjustments.extend(rows)
                line_adj.extend(rows)
            else:
                claim_adj.extend(rows)
        elif t3 == "SVC":
            if cur is None:
                skip(k, "SVC outside a claim payment (before any CLP): not read", "SVC segment")
                k += 1
                continue
            s = seg.split(ELEMENT)
            ns = len(s)
            line_adj = []
            proc = s[1].split(COMPONENT) if ns > 1 else [""]
            code = proc[1] if len(proc) > 1 else proc[0]
            rev = (s[4] if ns > 4 else "") if proc[0] != "NU" else code
            charge = s[2] if ns > 2 else ""
            paid = s[3] if ns > 3 else ""
            try:
                row = [None, line_no + 1, code, float(charge) if charge else 0.0, float(paid) if paid else 0.0]
            except ValueError:
                skip(k, "SVC02 line charge or SVC03 line paid is not a number: this service line not read",
                     "SVC service line", "line")
                skip_line = True
                k += 1
                continue
            if not charge or not paid:
                notes["SVC without charge or paid amount: recorded as 0"] += 1
            skip_line = False
            line_no += 1
            if proc[0] == "NU" or rev:
                institutional = True
                if rev.lstrip("0")[:2] == "45":
                    er = True
            rlines.append(row)
        elif skip_line:
            pass  # (DTM, LQ of a service line not read)
        elif t3 == "DTM":
            if cur is not None and cur[_CLAIM_DATE] is None:
                s = seg.split(ELEMENT)
                if len(s) > 2 and s[1] in ("232", "472", "150"):
                    cur[_CLAIM_DATE] = d8(s[2])
        elif t3 == _NM1:
            if cur is not None and (seg.startswith(_NM1_QC) or seg == _NM1_QC[:-1]):
                s = seg.split(ELEMENT)
                cur[_PATIENT] = (s[9] if len(s) > 9 else "") or "|".join(x.upper() for x in s[3:5])
        elif t3 == _LQ:
            s = seg.split(ELEMENT)
            if element(s, 1) == "HE":
                code = element(s, 2)
                if line_adj:
                    for a in line_adj:
                        a[5] = code if a[5] is None else a[5] + " " + code
                elif code:
                    notes[NOTE_REMARKS] += 1
        elif t3 == "MOA":
            remarks.extend(c for c in seg.split(ELEMENT)[3:8] if c)
        elif t3 == "MIA":
            s = seg.split(ELEMENT)
            has_mia = True
            remarks.extend(c for c in (s[5:6] + s[20:24]) if c)
        k += 1
    close_claim(k)

    received = prod_date or pay_date
    if received is None:
        received = tx.date
        if received is None:
            raise X12Error(first, "no received date: no DTM*405, no BPR16, no GS04 and no ISA09")
        notes["835 without DTM*405 or BPR16: GS04 (or ISA09) used as received date"] += 1
    payer_id = payer_n104 or payer_2u or payer_trn
    if not payer_id:
        if not payer_name:
            raise X12Error(first, "no payer: neither N1*PR id/name, REF*2U nor TRN03")
        payer_id = "name:" + payer_name.upper()
        notes["payer without id: its name used as payer_id"] += 1
    facility = payee_id or "unknown"
    for r in remits:
        r[_RECEIVED] = received
        r[_PAYER] = payer_id
        if r[_CLAIM_DATE] is None or r[_CLAIM_DATE] > received:
            r[_CLAIM_DATE] = received
        r[_FACILITY] = facility
        out.remits.append(tuple(r))
    if plb_pairs:
        txn_key = text_hash(header_key + "\n" + "\n".join(plb_text))
        for reason, amt in plb_pairs:
            out.plb.append((payer_id, received, reason, amt, txn_key))
    out.payers.append((payer_id, payer_name or payer_id, FINANCIAL_CLASS_FROM_FILING.get(filing, "other"), "835"))
    return len(remits)
