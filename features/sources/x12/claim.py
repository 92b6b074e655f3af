"""837 claims (professional 4010 X098 / 5010 X222, institutional X096 / X223, dental X097 / X224 read as
professional) -> claims, claim lines and the facts of their accounts.

The loops are the implementation guides' (the same HL codes in 4010 and 5010): HL 20 billing
provider (2010AA NM1*85), HL 22 subscriber (SBR, 2010BA NM1*IL with N4 and DMG, 2010BB NM1*PR payer;
4010 also 2010BC NM1*QD responsible party), HL 23 patient (PAT, 2010CA NM1*QC with N4 and DMG), then
each 2300 claim (CLM) with its dates, diagnoses, references and 2400 service lines (SV1, SV2, SV3).
Segments inside a claim that repeat the subscriber's shape (2320 other subscriber SBR, 2330 NM1*IL
or NM1*PR of another payer) belong to the claim and never change its subscriber or payer.

Mapping choices:
  * account_id = the patient control number (CLM01 = the 835's CLP01 = the 277CA's TRN02).
  * claim_id = CLM01 for a primary claim with frequency code 1, because CLM01 is the only id the payer
    echoes back (CLP01); a secondary or tertiary claim gets `CLM01/P2` (`/P3`); any other frequency
    `CLM01/F<code>-<content hash>`. A different claim that repeats CLM01 (resubmissions after a
    rejection, de-identified files) is told apart by its content hash when tables are built;
    the same claim sent twice is one claim.
  * frequency: CLM05-3 through the contract's map (1 original, 6 corrected, 7 replacement, 8 void,
    2-4 interim, 5 late charge, 0 no-pay); any other code is `other`; the raw code is kept in
    frequency_code. original_claim_id: see tables.link_originals.
  * patient_id = a hash of the subscriber member id (NM1*IL NM109), plus the patient's name and birth
    date when the patient is a dependent (HL 23); the raw member id is PHI and is not stored.
  * guarantor_id = the 4010 responsible party (NM1*QD) when given; for a dependent patient the
    subscriber (the id the subscriber has as a patient); else the patient.
  * encounter_type: institutional claims are inpatient when the type of bill (CLM05-1 + CLM05-3)
    starts with 11, emergency when a revenue code 045x is billed, else outpatient; professional
    claims are professional.
  * submitted_date = BHT04, else GS04 / ISA09; service date = claim DTP 472, else 434 (statement),
    else 435 (admission), else the first line date, else the submitted date (noted).
  * patient_age = whole years from the DMG birth date to the service date; 0 when unknown (noted).
What cannot be read is skipped at the smallest unit and reported: a service line with an unreadable
or negative amount, a claim with no CLM01 or an unreadable or negative total charge.
"""

from __future__ import annotations

from features.contract import FREQUENCY_FROM_X12
from features.sources.x12.report import IngestSummary, X12Error
from features.sources.x12.rows import Rows
from features.sources.x12.segments import Transaction
from features.sources.x12.values import (
    COMPONENT,
    ELEMENT,
    FINANCIAL_CLASS_FROM_FILING,
    SEGMENT,
    SEQUENCE_FROM_SBR,
    age,
    d8,
    element,
    money,
    short_hash,
    text_hash,
)

NOTE_FREQUENCY = "CLM05-3 frequency code outside the contract's map: frequency other (raw in frequency_code)"
# 837 version (ST03 / GS08) -> claim type; dental claims are read as professional
_TYPE_OF_VERSION = (("X222", "professional"), ("X098", "professional"), ("X223", "institutional"),
                    ("X096", "institutional"), ("X224", "dental"), ("X097", "dental"))


def _claim_type(version: str) -> str | None:
    for tag, kind in _TYPE_OF_VERSION:
        if tag in version:
            return kind
    return None


def _frequency(code: str, notes) -> tuple[str, str]:
    """(contract frequency, raw code) of CLM05-3."""
    if not code:
        notes["CLM05-3 frequency code missing: read as 1 (original)"] += 1
        return "original", "1"
    freq = FREQUENCY_FROM_X12.get(code)
    if freq is None and "." in code and code.replace(".", "", 1).isdigit() and float(code).is_integer():
        code = str(int(float(code)))  # "1.00" from a sloppy sender: the number is clear
        freq = FREQUENCY_FROM_X12.get(code)
        notes["CLM05-3 frequency written as a decimal: read as its integer"] += 1
    if freq is None:
        notes[NOTE_FREQUENCY] += 1
        return "other", code
    return freq, code


def map_claims(tx: Transaction, out: Rows, summary: IngestSummary) -> int:
    """One 837 transaction -> rows; returns the number of claims read."""
    segs = tx.segments
    split = [s.split(ELEMENT) for s in segs]  # (837s are small next to 835 batches: split all)
    first, file, notes = tx.first, tx.file, summary.notes
    version = tx.version
    ctype = _claim_type(version)
    if ctype == "dental":
        notes["837 dental claim: read as professional"] += 1
        ctype = "professional"
    g = tx.group
    txn_key = f"{g.sender}|{g.receiver}|{g.control}|{tx.control}" if g is not None else None
    submitted = tx.date
    facility = "unknown"
    hl_level = ""
    sub_seq, filing, sub_member, sub_birth, sub_state = 1, "", "", None, None
    pat_key, pat_birth, pat_state, qd_key = "", None, None, ""
    payer_id = payer_name = ""
    last_nm1 = ""
    claim: dict | None = None
    n_claims = 0

    def close_claim(end: int) -> None:
        nonlocal claim, n_claims
        if claim is None:
            return
        c, claim = claim, None
        kind = c["type"] or ("institutional" if c["has_sv2"] or c["pos_qual"] == "A" else "professional")
        if c["type"] is None:
            notes["837 version unknown: claim type from its lines"] += 1
        svc = c["svc"] or c["stmt"] or c["admit"] or (min(c["line_dates"]) if c["line_dates"] else None)
        if svc is None:
            svc = submitted
            notes["837 claim without service date: submitted date used"] += 1
        if kind == "institutional":
            enc = "inpatient" if c["tob"].startswith("11") else "emergency" if c["er"] else "outpatient"
        else:
            enc = "professional"
        dependent = hl_level == "23"
        years = age(pat_birth if dependent else sub_birth, svc)
        if years is None:
            notes["no patient birth date (DMG): patient_age 0"] += 1
            years = 0
        state = pat_state if dependent and pat_state else sub_state
        patient = "p" + short_hash("837", sub_member, pat_key if dependent else "")
        if qd_key:
            guarantor = "p" + short_hash("837-responsible-party", qd_key)
        elif dependent and sub_member:
            guarantor = "p" + short_hash("837", sub_member, "")  # the subscriber, as a patient
        else:
            guarantor = patient
        pid, pname = payer_id, payer_name
        if not pid:
            pid, pname = "unknown", "unknown payer (no 2010BB NM1*PR)"
            notes["837 claim without payer (2010BB NM1*PR): payer_id unknown"] += 1
        if c["dx"] is None:
            notes["837 claim without principal diagnosis (HI ABK/BK): principal_dx null"] += 1
        content = text_hash(SEGMENT.join([patient, guarantor, pid, str(sub_seq), facility, *segs[c["at"]:end]]))
        base = c["clm01"] + (f"/P{sub_seq}" if sub_seq > 1 else "")
        if c["freq_code"] != "1":
            base += f"/F{c['freq_code']}-{content[:8]}"
        out.claims.append((
            base, c["clm01"], pid, sub_seq, kind, c["freq"], c["freq_code"], submitted or svc, c["billed"],
            c["dx"], c["dx_version"], c["f8"], patient, facility, enc, svc, years, state, guarantor,
            content, txn_key,
        ))
        for ln in c["lines"]:
            out.lines.append((content,) + ln)
        out.payers.append((pid, pname or pid, FINANCIAL_CLASS_FROM_FILING.get(filing, "other"), "837"))
        n_claims += 1

    def skip_claim(k: int, reason: str) -> None:
        nonlocal claim
        summary.problem(file, first + k, f"{reason}: this claim (CLM loop) not read", "claim", "CLM claim")
        claim = None

    skipping = False  # inside a claim whose CLM could not be read
    end = len(segs)  # (the SE is no part of the last claim's loop)
    for k, s in enumerate(split):
        tag = s[0]
        if tag == "HL":
            close_claim(k)
            skipping = False
            hl_level = element(s, 3)
            if hl_level == "22":
                sub_seq, filing, sub_member, sub_birth, sub_state = 1, "", "", None, None
                payer_id = payer_name = qd_key = ""
            if hl_level in ("22", "23"):
                pat_key, pat_birth, pat_state = "", None, None
            last_nm1 = ""
        elif tag == "CLM":
            close_claim(k)
            skipping = False
            try:
                if len(s) < 2 or not s[1]:
                    raise X12Error(first + k, "CLM without patient control number (CLM01)")
                billed = money(element(s, 2), first + k, "CLM02 total claim charge")
                if billed < 0:
                    raise X12Error(first + k, "CLM02 total claim charge is negative")
            except X12Error as err:
                skip_claim(k, err.reason)
                skipping = True
                continue
            c05 = element(s, 5).split(COMPONENT)
            freq, fcode = _frequency(element(c05, 2), notes)
            claim = {
                "at": k, "clm01": s[1], "billed": billed, "freq": freq, "freq_code": fcode,
                "tob": c05[0] + fcode, "pos_qual": element(c05, 1), "dx": None, "dx_version": 10,
                "svc": None, "stmt": None, "admit": None, "line_dates": [], "lines": [], "has_sv2": False,
                "er": False, "f8": None, "type": ctype,
            }
        elif tag == "SE":
            end = k
            break
        elif skipping:
            continue
        elif claim is None:  # 1000/2000/2010 loops before a claim: provider, subscriber, patient, payer
            if tag == "BHT":
                submitted = d8(element(s, 4)) or submitted
            elif tag == "NM1":
                last_nm1 = element(s, 1)
                if last_nm1 == "85":
                    facility = element(s, 9) or facility
                elif last_nm1 == "IL":
                    sub_member = element(s, 9) or " ".join(s[3:5])
                elif last_nm1 == "QC":
                    pat_key = "|".join(x.upper() for x in s[3:5]) + "|" + element(s, 9)
                elif last_nm1 == "QD":
                    qd_key = "|".join(x.upper() for x in s[3:5])
                elif last_nm1 == "PR":
                    payer_id, payer_name = element(s, 9), element(s, 3)
                    if not payer_id:
                        payer_id = "name:" + payer_name.upper()
                        notes["payer without id: its name used as payer_id"] += 1
            elif tag == "SBR":
                seq = SEQUENCE_FROM_SBR.get(element(s, 1))
                if seq is None:
                    seq = 3
                    notes["SBR01 payer beyond tertiary: payer_sequence 3"] += 1
                sub_seq, filing = seq, element(s, 9)
            elif tag == "DMG":
                b = d8(element(s, 2)) if element(s, 1) == "D8" else None
                if hl_level == "23" or last_nm1 == "QC":
                    pat_birth = b
                    pat_key += "|" + (b or "")
                elif last_nm1 == "IL":
                    sub_birth = b
            elif tag == "N4":
                if last_nm1 == "IL":
                    sub_state = element(s, 2) or None
                elif last_nm1 == "QC":
                    pat_state = element(s, 2) or None
        elif tag == "DTP":
            _claim_date(claim, s)
        elif tag == "HI":
            if claim["dx"] is None:
                for e in s[1:]:
                    p = e.split(COMPONENT)
                    if p[0] in ("ABK", "BK") and len(p) > 1 and p[1]:
                        claim["dx"], claim["dx_version"] = p[1], (10 if p[0] == "ABK" else 9)
                        break
        elif tag == "REF":
            if element(s, 1) == "F8" and not claim["lines"]:
                claim["f8"] = element(s, 2) or None
        elif tag in ("SV1", "SV2", "SV3"):
            try:
                claim["lines"].append(_line(tag, s, first + k, claim, notes))
            except X12Error as err:
                summary.problem(file, first + k, f"{err.reason}: this service line not read", "line",
                                f"{tag} service line")
    close_claim(end)
    return n_claims


def _claim_date(claim: dict, s: list[str]) -> None:
    q = element(s, 1)
    if q == "472":
        if claim["lines"]:
            d = d8(element(s, 3))
            if d:
                claim["line_dates"].append(d)
        else:
            claim["svc"] = d8(element(s, 3))
    elif q == "434" and not claim["lines"]:
        claim["stmt"] = d8(element(s, 3))
    elif q == "435" and not claim["lines"]:
        claim["admit"] = d8(element(s, 3))


def _line(tag: str, s: list[str], n: int, claim: dict, notes) -> tuple:
    """(line_number, procedure_code, modifiers, units, line_charge, revenue_code) of SV1/SV2/SV3."""
    if tag == "SV2":
        rev = element(s, 1) or None
        proc = element(s, 2).split(COMPONENT)
        charge, units = element(s, 3), element(s, 5)
        claim["has_sv2"] = True
        if rev and rev.lstrip("0")[:2] == "45":
            claim["er"] = True
    else:  # SV1: 01 procedure, 02 charge, 04 units; SV3 (dental): 01 procedure, 02 charge, 06 units
        rev = None
        proc = element(s, 1).split(COMPONENT)
        charge, units = element(s, 2), element(s, 4 if tag == "SV1" else 6)
    amount = money(charge, n, f"{tag} line charge")
    count = money(units, n, f"{tag} units") if units else 1.0
    if amount < 0 or count < 0:
        raise X12Error(n, f"{tag} line charge or units are negative")
    if not units:
        notes["837 line without units: 1 used"] += 1
    mods = " ".join(m for m in proc[2:6] if m) or None
    return (len(claim["lines"]) + 1, element(proc, 1) or proc[0], mods, count, amount, rev)
