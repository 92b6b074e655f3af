"""Claim acknowledgements -> `claim_acks` rows: 277CA (5010 X214, claim acknowledgement) and 999
(5010 X231, implementation acknowledgement).

277CA: the loops are 2000A information source (HL 20: NM1*PR payer or NM1*AY clearinghouse), 2000B
receiver (HL 21), 2000C billing provider (HL 19: NM1*85), 2000D patient (HL PT, 4050's 22/23 too:
NM1*QC, then the claim: TRN*2 = the patient control number, STC, REF*1K payer claim number, DTP*472
service dates), and 2220D service lines (SVC with their own STC, not stored: noted). One row per
claim-level STC segment; its STC01 composite gives category_code (STC01-1) and status_code (STC01-2):
  accepted  A0 forwarded, A1 received, A2 accepted into adjudication, A5 split, F0-F4 finalized;
  rejected  A3 returned as unprocessable, A4 not found, A6 missing, A7 invalid, A8 relational error;
  pended    P0-P5 pending, R0-R16 more information asked, E0-E4 response not possible;
any other category is kept raw with status pended, and noted. received_date = STC02, else BHT04,
else GS04 / ISA09. A 277 that is not an acknowledgement (a 276/277 claim status response) is not read.

999: each AK2 (transaction set response) acknowledges one 837 transaction; IK5 A or E = accepted,
R, M, W, X = rejected (IK501 kept raw in status_code); without an IK5, the group's AK9. An AK1 with no
AK2 acknowledges every transaction of the group. The claims it covers are found by the acknowledged
837's envelope (its sender, receiver, GS06 and ST02, which the 999 echoes); a 999 for an 837 that was
not ingested cannot name its claims and is noted, not stored. ack_id: content hashes, as remit_id.

For the point-in-time features that should read this table (not built yet: the snapshot engine is being
restructured): a claim is rejected at the front door at T when its latest claim_acks row received on or
before T has status `rejected`; it is resubmitted when its account has a later claim (submitted after
that ack, on or before T, same payer sequence): a corrected or replacement claim, or the original sent
again with other content (id `CLM01-<hash>`); days since rejection = T minus that ack's received_date.
A 999 row rejects every claim of its 837 transaction; a 277CA row one claim.
"""

from __future__ import annotations

from features.sources.x12.report import IngestSummary, X12Error
from features.sources.x12.rows import Rows
from features.sources.x12.segments import Transaction
from features.sources.x12.values import COMPONENT, ELEMENT, SEGMENT, d8, element, money, text_hash

_ACCEPTED = frozenset({"A0", "A1", "A2", "A5", "F0", "F1", "F2", "F3", "F3F", "F3N", "F4"})
_REJECTED = frozenset({"A3", "A4", "A6", "A7", "A8"})
_PENDED_PREFIX = ("P", "R", "E")
_IK5 = {"A": "accepted", "E": "accepted", "R": "rejected", "M": "rejected", "W": "rejected", "X": "rejected"}
NOTE_CATEGORY = "277CA STC01-1 category code not an acknowledgement code: stored raw, status pended"
NOTE_999_UNKNOWN = "999 acknowledges an 837 transaction that was not ingested: not stored (no claim to name)"


def ack_status(category: str, notes) -> str:
    if category in _ACCEPTED:
        return "accepted"
    if category in _REJECTED:
        return "rejected"
    if not category.startswith(_PENDED_PREFIX):
        notes[NOTE_CATEGORY] += 1
    return "pended"


def is_claim_acknowledgement(tx: Transaction) -> bool:
    """A 277CA (X214, or 4050's X167), or a 277 whose BHT06 says receipt acknowledgement (TH)."""
    if "X214" in tx.version or "X167" in tx.version:
        return True
    for seg in tx.segments[1:3]:
        s = seg.split(ELEMENT)
        if s[0] == "BHT":
            return element(s, 6) == "TH"
    return False


def map_277ca(tx: Transaction, out: Rows, summary: IngestSummary) -> int:
    """One 277CA transaction -> ack rows; returns the number of rows."""
    segs = tx.segments
    first, notes = tx.first, summary.notes
    created = tx.date
    payer_id = facility = patient = ""
    level = ""
    header: list[str] = []  # the segments above the patient loops (source, receiver, provider)
    header_key = ""
    claim: dict | None = None
    in_line = False
    seen: dict[str, int] = {}
    rows: list[list] = []
    n_lines = 0

    def close(end: int) -> None:
        nonlocal claim
        if claim is None:
            return
        c, claim = claim, None
        loop = SEGMENT.join(segs[c["at"]:end])
        for j, stc in enumerate(c["stc"]):
            key = f"{c['header']}\n{c['patient']}\n{loop}\n{j}"
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            comp = element(stc, 1).split(COMPONENT)
            category, code = element(comp, 0), element(comp, 1) or None
            received = d8(element(stc, 2)) or created
            billed = element(stc, 4)
            try:
                amount = money(billed, first + c["at"], "STC04 total claim charge") if billed else None
            except X12Error:
                amount = None
                notes["277CA STC04 total claim charge is not a number: not used to match the claim"] += 1
            rows.append([
                text_hash(f"{key}\n{occurrence}"), c["pcn"], received, "277CA", ack_status(category, notes),
                category or None, code, payer_id or "unknown", amount, c["date"] or received,
                "p" + text_hash("277|" + (c["patient"] or c["pcn"])), facility or "unknown", None,
            ])

    end = len(segs)  # (the SE is no part of the last claim's loop)
    for k, seg in enumerate(segs):
        s = seg.split(ELEMENT)
        tag = s[0]
        if tag == "HL":
            close(k)
            level, in_line, patient = element(s, 3), False, ""
        elif tag == "SE":
            end = k
            break
        elif tag == "BHT":
            created = d8(element(s, 4)) or created
        elif level == "20" and tag == "NM1":
            payer_id = element(s, 9) or ("name:" + element(s, 3).upper() if element(s, 3) else "")
        elif level == "19" and tag == "NM1" and element(s, 1) == "85":
            facility = element(s, 9)
        elif level in ("PT", "22", "23"):
            if tag == "NM1" and element(s, 1) == "QC":
                patient = element(s, 9) or "|".join(x.upper() for x in s[3:5])
            elif tag == "TRN":
                close(k)
                if not element(s, 2):
                    summary.problem(tx.file, first + k, "277CA claim without TRN02 patient control number: "
                                                        "not read", "claim", "277CA claim status")
                    continue
                if header:
                    header_key = text_hash(SEGMENT.join(header))
                    header = []
                claim = {"at": k, "pcn": element(s, 2), "stc": [], "date": None, "patient": patient,
                         "header": header_key}
            elif claim is None:
                pass
            elif tag == "SVC":
                in_line = True
                n_lines += 1
            elif tag == "STC" and not in_line:
                claim["stc"].append(s)
            elif tag == "DTP" and element(s, 1) == "472" and not in_line and claim["date"] is None:
                claim["date"] = d8(element(s, 3))
            continue
        if claim is None and k:
            header.append(header_key + SEGMENT + seg if not header and header_key else seg)
    close(end)
    if any(r[2] is None for r in rows):
        raise X12Error(first, "277CA without dates: no STC02, no BHT04, no GS04 and no ISA09")
    if n_lines:
        notes["277CA service-line statuses (2220D): not stored (claim_acks holds claim-level status)"] += n_lines
    out.acks.extend(tuple(r) for r in rows)
    return len(rows)


def map_999(tx: Transaction, out: Rows, summary: IngestSummary) -> int:
    """One 999 transaction -> ack rows, one per acknowledged 837 transaction (or group); returns them."""
    g = tx.group
    if g is None:
        raise X12Error(tx.first, "999 outside a functional group (GS): the acknowledged 837 cannot be named")
    received = tx.date
    if received is None:
        raise X12Error(tx.first, "999 without a date: no GS04 and no ISA09")
    segs = tx.segments
    # the acknowledged 837 was sent by this 999's receiver to its sender
    prefix = f"{g.receiver}|{g.sender}"
    content = text_hash(SEGMENT.join(segs[1:-1]))
    sets: list[list] = []  # [key, IK501 or None, segment index]
    group_key = None
    group_status = None
    for k, seg in enumerate(segs):
        s = seg.split(ELEMENT)
        tag = s[0]
        if tag == "AK1":
            group_key = f"{prefix}|{element(s, 2)}|"
            if element(s, 1) not in ("HC", ""):
                group_key = None
                summary.notes["999 acknowledging a group that is not 837 claims (AK101 not HC): not stored"] += 1
        elif tag == "AK2" and group_key is not None:
            if element(s, 1) not in ("837", ""):
                continue
            sets.append([group_key + element(s, 2), None, k])
        elif tag in ("IK5", "AK5") and sets:
            sets[-1][1] = element(s, 1)
        elif tag == "AK9":
            group_status = element(s, 1)
    if group_key is not None and not sets:
        sets.append([group_key, None, 0])  # the whole group
    rows = []
    for key, code, k in sets:
        code = code or group_status or ""
        status = _IK5.get(code, "pended")
        if code not in _IK5:
            summary.notes["999 response code neither accepted nor rejected (IK501/AK901): status pended"] += 1
        ack_id = text_hash(f"{content}\n{key}\n{k}")
        rows.append((ack_id, None, received, "999", status, None, code or None, None, None, None, None, None, key))
    out.acks.extend(rows)
    return len(rows)
