"""Valid X12 content of our own making, laid out as the implementation guides lay it out (4010 and 5010,
professional and institutional): 837 claims, 835 remittances, 277CA and 999 acknowledgements. The
builders return interchanges as segments (tests/x12_writer.write serializes them in any style)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.x12_writer import COMP, Segment


@dataclass(frozen=True)
class Person:
    member: str
    last: str
    first: str
    birth: str  # CCYYMMDD
    state: str = "TX"


@dataclass(frozen=True)
class Payer:
    payer_id: str
    name: str
    filing: str = "CI"  # SBR09 / CLP06


@dataclass(frozen=True)
class Line:
    code: str
    charge: str
    units: str = "1"
    revenue: str = "0450"  # institutional lines only
    paid: str = "0"  # 835 SVC03


@dataclass(frozen=True)
class Claim:
    pcn: str
    payer: Payer
    patient: Person
    subscriber: Person  # the patient when the patient is the subscriber
    lines: tuple[Line, ...]
    service_date: str
    trace: str  # REF*D9: unique per claim, so that two generated claims never say the same
    sequence: str = "P"
    frequency: str = "1"
    institutional: bool = False
    dx: str = "E119"
    responsible: Person | None = None  # 4010 2010BC responsible party (NM1*QD)
    original_icn: str | None = None  # REF*F8 of a corrected, replacement or void claim

    @property
    def billed(self) -> str:
        return f"{sum(float(ln.charge) for ln in self.lines):.2f}"


@dataclass(frozen=True)
class Payment:
    pcn: str
    status: str
    billed: str
    paid: str
    responsibility: str
    icn: str
    lines: tuple[Line, ...]
    adjustments: tuple[tuple[str, str, str], ...] = ()  # claim level (group, reason, amount)
    line_adjustments: tuple[tuple[str, str, str], ...] = ()  # on each line
    patient_member: str = "M1"
    service_date: str = "20240110"
    remark: str | None = None  # MOA remark on the claim


@dataclass(frozen=True)
class Status:
    """One 277CA claim-level status."""

    pcn: str
    category: str  # STC01-1
    code: str  # STC01-2
    billed: str
    date: str


@dataclass
class Envelope:
    isa13: str = "000000001"
    sender: str = "SENDER"
    receiver: str = "RECEIVER"
    date: str = "20240115"
    version: str = "00501"
    gs06: str = "1"
    st02: list[str] = field(default_factory=list)


def _isa(env: Envelope) -> Segment:
    return ["ISA", "00", " " * 10, "00", " " * 10, "ZZ", env.sender.ljust(15), "ZZ", env.receiver.ljust(15),
            env.date[2:], "1200", "^" if env.version >= "00501" else "U", env.version, env.isa13, "0", "P", ":"]


def _envelope(env: Envelope, functional_id: str, gs08: str, transactions: list[list[Segment]]) -> list[Segment]:
    out = [_isa(env), ["GS", functional_id, env.sender, env.receiver, env.date, "1200", env.gs06, "X", gs08]]
    for i, body in enumerate(transactions):
        st02 = env.st02[i] if i < len(env.st02) else f"{i + 1:04d}"
        st = ["ST", body[0][1], st02] + (body[0][2:] if len(body[0]) > 2 else [])
        segs = [st] + body[1:]
        out += segs + [["SE", str(len(segs) + 1), st02]]
    return out + [["GE", str(len(transactions)), env.gs06], ["IEA", "1", env.isa13]]


def _name(p: Person, qualifier: str, with_id: bool = True) -> Segment:
    return ["NM1", qualifier, "1", p.last, p.first, "", "", ""] + (["MI", p.member] if with_id else [])


def claim_segments(c: Claim, version: str) -> list[Segment]:
    """The 2000B/2000C/2300/2400 loops of one claim (its own subscriber HL)."""
    dependent = c.patient != c.subscriber
    segs: list[Segment] = [
        ["HL", "{hl}", "1", "22", "1" if dependent else "0"],
        ["SBR", c.sequence, "" if dependent else "18", "", "", "", "", "", "", c.payer.filing],
        _name(c.subscriber, "IL"), ["N4", "AUSTIN", c.subscriber.state, "78701"],
        ["DMG", "D8", c.subscriber.birth, "F"],
    ]
    if c.responsible is not None and version < "00501":
        segs.append(_name(c.responsible, "QD", with_id=False))
    segs.append(["NM1", "PR", "2", c.payer.name, "", "", "", "", "PI", c.payer.payer_id])
    if dependent:
        segs += [["HL", "{hl}", "{parent}", "23", "0"], ["PAT", "19"], _name(c.patient, "QC", with_id=False),
                 ["N4", "AUSTIN", c.patient.state, "78701"], ["DMG", "D8", c.patient.birth, "M"]]
    facility = ("13" if c.institutional else "11") + COMP + ("A" if c.institutional else "B") + COMP + c.frequency
    segs.append(["CLM", c.pcn, c.billed, "", "", facility, "Y", "A", "Y", "Y"])
    if c.institutional:
        segs.append(["DTP", "434", "RD8", f"{c.service_date}-{c.service_date}"])
    else:
        segs.append(["DTP", "472", "D8", c.service_date])
    segs.append(["REF", "D9", c.trace])
    if c.original_icn:
        segs.append(["REF", "F8", c.original_icn])
    segs.append(["HI", ("ABK" if version >= "00501" else "BK") + COMP + c.dx])
    for i, ln in enumerate(c.lines, 1):
        segs.append(["LX", str(i)])
        if c.institutional:
            segs.append(["SV2", ln.revenue, "HC" + COMP + ln.code, ln.charge, "UN", ln.units])
        else:
            segs.append(["SV1", "HC" + COMP + ln.code, ln.charge, "UN", ln.units, "", "", "1"])
        segs.append(["DTP", "472", "D8", c.service_date])
    return segs


def file_837(claims: list[Claim], env: Envelope, per_transaction: int = 3) -> list[list[Segment]]:
    """One interchange of 837 transactions (professional or institutional by the first claim)."""
    institutional = bool(claims) and claims[0].institutional
    if env.version >= "00501":
        gs08 = "005010X223A2" if institutional else "005010X222A1"
    else:
        gs08 = "004010X096A1" if institutional else "004010X098A1"
    transactions = []
    for start in range(0, len(claims), per_transaction):
        body: list[Segment] = [["ST", "837"] + ([gs08] if env.version >= "00501" else []),
                               ["BHT", "0019", "00", f"B{start}", env.date, "1200", "CH"],
                               ["NM1", "41", "2", "BILLING SERVICE", "", "", "", "", "46", "S1"],
                               ["HL", "1", "", "20", "1"],
                               ["NM1", "85", "2", "GOOD CLINIC", "", "", "", "", "XX", "1234567890"]]
        hl = 1
        for c in claims[start:start + per_transaction]:
            parent = None
            for seg in claim_segments(c, env.version):
                if seg[0] == "HL":
                    hl += 1
                    seg = ["HL", str(hl), str(parent if seg[2] == "{parent}" else 1)] + seg[3:]
                    parent = hl
                body.append(seg)
        transactions.append(body)
    return [_envelope(env, "HC", gs08, transactions)]


def payment_segments(p: Payment) -> list[Segment]:
    segs: list[Segment] = [["CLP", p.pcn, p.status, p.billed, p.paid, p.responsibility, "12", p.icn, "11", "1"]]
    segs += [["CAS", g, r, a] for g, r, a in p.adjustments]
    segs += [["NM1", "QC", "1", "DOE", "JANE", "", "", "", "MI", p.patient_member],
             ["DTM", "232", p.service_date]]
    if p.remark:
        segs.append(["MOA", "", "", p.remark])
    for ln in p.lines:
        segs += [["SVC", "HC" + COMP + ln.code, ln.charge, ln.paid, "", ln.units], ["DTM", "472", p.service_date]]
        segs += [["CAS", g, r, a] for g, r, a in p.line_adjustments]
    return segs


def file_835(payments: list[Payment], payer: Payer, check: str, env: Envelope,
             plb: tuple[tuple[str, str], ...] = ()) -> list[list[Segment]]:
    total = f"{sum(float(p.paid) for p in payments):.2f}"
    body: list[Segment] = [
        ["ST", "835"] + (["005010X221A1"] if env.version >= "00501" else []),
        ["BPR", "I", total, "C", "ACH", "CCP", "01", "999999999", "DA", "123456", "1512345678", "", "01",
         "999999999", "DA", "654321", env.date],
        ["TRN", "1", check, "1512345678"], ["DTM", "405", env.date],
        ["N1", "PR", payer.name, "XV", payer.payer_id], ["N1", "PE", "GOOD CLINIC", "XX", "1234567890"],
        ["LX", "1"],
    ]
    for p in payments:
        body += payment_segments(p)
    if plb:
        seg = ["PLB", "1234567890", env.date[:4] + "1231"]
        for reason, amount in plb:
            seg += [reason + COMP + "REF1", amount]
        body.append(seg)
    gs08 = "005010X221A1" if env.version >= "00501" else "004010X091A1"
    return [_envelope(env, "HP", gs08, [body])]


def file_277ca(statuses: list[Status], payer: Payer, env: Envelope) -> list[list[Segment]]:
    body: list[Segment] = [
        ["ST", "277", "005010X214"], ["BHT", "0085", "08", "ACK1", env.date, "1200", "TH"],
        ["HL", "1", "", "20", "1"], ["NM1", "PR", "2", payer.name, "", "", "", "", "PI", payer.payer_id],
        ["TRN", "1", "ACK1"], ["DTP", "050", "D8", env.date],
        ["HL", "2", "1", "21", "1"], ["NM1", "41", "2", "BILLING SERVICE", "", "", "", "", "46", "S1"],
        ["TRN", "2", "BATCH1"], ["STC", "A1" + COMP + "19" + COMP + "PR", env.date, "WQ", "0"],
        ["HL", "3", "2", "19", "1"], ["NM1", "85", "2", "GOOD CLINIC", "", "", "", "", "XX", "1234567890"],
    ]
    for i, s in enumerate(statuses):
        body += [["HL", str(4 + i), "3", "PT"], ["NM1", "QC", "1", "DOE", "JANE", "", "", "", "MI", "M1"],
                 ["TRN", "2", s.pcn], ["STC", s.category + COMP + s.code, s.date, "WQ", s.billed],
                 ["DTP", "472", "D8", "20240110"]]
    return [_envelope(env, "HN", "005010X214", [body])]


def file_999(acknowledged: Envelope, st02_codes: list[tuple[str, str]], env: Envelope) -> list[list[Segment]]:
    """A 999 from the 837's receiver back to its sender: one AK2/IK5 per (ST02, IK501)."""
    body: list[Segment] = [["ST", "999", "005010X231A1"], ["AK1", "HC", acknowledged.gs06, "005010X222A1"]]
    for st02, code in st02_codes:
        body += [["AK2", "837", st02, "005010X222A1"], ["IK5", code]]
    accepted = sum(code in ("A", "E") for _, code in st02_codes)
    body.append(["AK9", "A" if accepted == len(st02_codes) else "P", str(len(st02_codes)), str(len(st02_codes)),
                 str(accepted)])
    back = Envelope(env.isa13, acknowledged.receiver, acknowledged.sender, env.date, "00501", env.gs06)
    return [_envelope(back, "FA", "005010X231A1", [body])]
