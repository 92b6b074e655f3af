"""What 835s, 837s, 277CAs and 999s map to: the contract's extensions (frequencies, statuses, guarantor,
claim_acks), claims told apart by content, remittances matched within their account."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.contract import read_dataset
from features.sources.x12 import ingest
from features.sources.x12.acks import NOTE_999_UNKNOWN
from features.sources.x12.claim import NOTE_FREQUENCY
from tests.x12_generate import (
    Claim,
    Envelope,
    Line,
    Payer,
    Payment,
    Person,
    Status,
    file_277ca,
    file_835,
    file_837,
    file_999,
)
from tests.x12_writer import Style, write

ACME = Payer("ACME01", "ACME HEALTH PLAN", "CI")
MEDICARE = Payer("00431", "MEDICARE", "MB")
JANE = Person("M1", "DOE", "JANE", "19800615")
KID = Person("M1", "DOE", "KID", "20150301")


def _claim(pcn: str, n: int, payer: Payer = ACME, patient: Person = JANE, subscriber: Person = JANE,
           charge: str = "100.00", **kw) -> Claim:
    return Claim(pcn, payer, patient, subscriber, (Line("99213", charge),), "20240110", trace=f"T{n}", **kw)


def _payment(pcn: str, status: str = "1", billed: str = "100.00", paid: str = "80.00", icn: str = "ICN1") -> Payment:
    return Payment(pcn, status, billed, paid, "0", icn, (Line("99213", billed, paid=paid),), (("CO", "45", "20"),))


def _write(tmp_path: Path, name: str, interchanges: list, style: Style = Style(line_end="\n")) -> Path:
    p = tmp_path / name
    p.write_bytes(write(interchanges, style))
    return p


def test_claim_frequencies_and_their_raw_codes(tmp_path: Path) -> None:
    codes = ["1", "6", "7", "8", "2", "3", "4", "5", "0", "9", "Q"]
    claims = [_claim(f"A{i}", i, frequency=code, institutional=True) for i, code in enumerate(codes)]
    tables, summary = ingest([_write(tmp_path, "f.837", file_837(claims, Envelope(), per_transaction=20))])
    assert not summary.problems and summary.claims == len(codes)
    got = dict(zip(tables["claims"]["frequency_code"], tables["claims"]["frequency"], strict=True))
    assert got == {"1": "original", "6": "corrected", "7": "replacement", "8": "void", "2": "interim",
                   "3": "interim", "4": "interim", "5": "late_charge", "0": "no_pay", "9": "other", "Q": "other"}
    assert summary.notes[NOTE_FREQUENCY] == 2


def test_remittance_statuses_19_to_25_and_unknown_codes_kept(tmp_path: Path) -> None:
    codes = ["1", "2", "3", "4", "5", "13", "19", "20", "21", "22", "23", "25", "27"]
    pays = [_payment(f"P{i}", code, paid="-80.00" if code == "22" else "80.00", icn=f"I{i}")
            for i, code in enumerate(codes)]
    tables, summary = ingest([_write(tmp_path, "s.835", file_835(pays, ACME, "CHK1", Envelope()))])
    r = tables["remittances"].set_index("status_code")
    assert len(r) == len(codes) and not summary.problems  # nothing dropped
    assert r["claim_status"].to_dict() == {
        "1": "processed_primary", "2": "processed_secondary", "3": "processed_tertiary", "4": "denied",
        "5": "pended", "13": "pended", "19": "processed_primary", "20": "processed_secondary",
        "21": "processed_tertiary", "22": "reversal", "23": "not_our_claim", "25": "predetermination",
        "27": "pended"}
    assert set(r.index[r["forwarded"] == 1]) == {"19", "20", "21"}
    assert summary.notes["CLP02 claim status code the contract does not know: stored raw in status_code, "
                         "claim_status pended"] == 1
    assert set(r["payer_claim_number"]) == {f"I{i}" for i in range(len(codes))}
    # a secondary's remit builds the secondary claim (the id its 837 would have)
    claims = tables["claims"].set_index("claim_id")
    assert claims.loc["P1/P2", "payer_sequence"] == 2 and claims.loc["P0", "payer_sequence"] == 1


def test_guarantor_from_the_subscriber_loops(tmp_path: Path) -> None:
    ross = Person("M9", "ROSS", "ANN", "19700101")
    claims = [_claim("SELF", 1), _claim("CHILD", 2, patient=KID, subscriber=JANE),
              _claim("QD4010", 3, patient=KID, subscriber=JANE, responsible=ross)]
    p5 = _write(tmp_path, "g5.837", file_837(claims[:2], Envelope()))
    p4 = _write(tmp_path, "g4.837", file_837(claims[2:], Envelope(version="00401", isa13="000000002")))
    acc = ingest([p5, p4])[0]["accounts"].set_index("account_id")
    # the patient when the patient is the subscriber; the subscriber for a dependent (the same id the
    # subscriber has as a patient); the 4010 responsible party (NM1*QD) when the file names one
    assert acc.loc["SELF", "guarantor_id"] == acc.loc["SELF", "patient_id"]
    assert acc.loc["CHILD", "guarantor_id"] == acc.loc["SELF", "patient_id"] != acc.loc["CHILD", "patient_id"]
    assert acc.loc["QD4010", "guarantor_id"] not in {acc.loc["SELF", "patient_id"], acc.loc["CHILD", "patient_id"]}
    assert acc.loc["CHILD", "patient_age"] == 8 and acc.loc["SELF", "patient_age"] == 43


def test_4010_and_5010_layouts_give_the_same_claim(tmp_path: Path) -> None:
    c = _claim("A1", 1, patient=KID, subscriber=JANE)
    t5 = ingest([_write(tmp_path, "5.837", file_837([c], Envelope()))])[0]
    t4 = ingest([_write(tmp_path, "4.837", file_837([c], Envelope(version="00401")))])[0]
    for name in ("accounts", "claim_lines", "payers"):
        pd.testing.assert_frame_equal(t4[name], t5[name], obj=name)
    cols = ["claim_id", "account_id", "payer_id", "claim_type", "frequency", "billed_amount", "principal_dx"]
    pd.testing.assert_frame_equal(t4["claims"][cols], t5["claims"][cols])
    assert (t4["claims"]["dx_version"].iloc[0], t5["claims"]["dx_version"].iloc[0]) == (9, 10)  # BK vs ABK


def test_claims_repeating_a_patient_control_number_stay_apart(tmp_path: Path) -> None:
    """De-identified files (and resubmissions) repeat CLM01: different claims stay different claims, the
    same claim sent twice is one claim, and a remittance goes to the claim of its payer and amount."""
    claims = [_claim("9999", 1, charge="100.00"), _claim("9999", 2, charge="250.00"),
              _claim("9999", 3, charge="75.00", payer=MEDICARE), _claim("9999", 1, charge="100.00")]
    p = _write(tmp_path, "d.837", file_837(claims, Envelope()))
    tables, summary = ingest([p])
    c = tables["claims"]
    assert summary.claims == 4 and len(c) == 3  # the fourth is the first sent again
    assert sorted(c["billed_amount"]) == [75.0, 100.0, 250.0]
    assert c["claim_id"].iloc[0] == "9999" and c["claim_id"].is_unique
    lines = tables["claim_lines"].merge(c[["claim_id", "billed_amount"]], on="claim_id")
    assert (lines["line_charge"] == lines["billed_amount"]).all() and len(lines) == 3
    r = _write(tmp_path, "d.835", file_835([_payment("9999", billed="250.00", icn="X1")], ACME, "CHK1", Envelope()))
    m = _write(tmp_path, "m.835", file_835([_payment("9999", billed="75.00", icn="X2")], MEDICARE, "CHK2",
                                           Envelope(isa13="000000002")))
    out = tmp_path / "data"
    ingest([p], out=out)
    ingest([r, m], out=out)
    ds = read_dataset(out)
    paid = ds["remittances"].merge(ds["claims"], on="claim_id").set_index("payer_claim_number")
    assert paid.loc["X1", "billed_amount"] == 250.0 and paid.loc["X2", "payer_id"] == "00431"
    assert len(ds["claims"]) == 3  # no claim built from a CLP: both remits found their 837 claim


def test_corrected_claim_links_its_original_within_the_account(tmp_path: Path) -> None:
    out = tmp_path / "data"
    ingest([_write(tmp_path, "o.837", file_837([_claim("A1", 1), _claim("B1", 2)], Envelope()))], out=out)
    ingest([_write(tmp_path, "o.835", file_835([_payment("A1", icn="ICNA"), _payment("B1", icn="ICNB")], ACME,
                                                "CHK1", Envelope()))], out=out)
    fix = _claim("A1", 3, charge="120.00", frequency="7", original_icn="ICNA")
    wrong = _claim("B1", 4, charge="50.00", frequency="7", original_icn="ICNA")  # names another account's ICN
    ingest([_write(tmp_path, "c.837", file_837([fix, wrong], Envelope(isa13="000000005")))], out=out)
    c = read_dataset(out)["claims"].set_index("claim_id")
    fixed = c[c["frequency"] == "replacement"].set_index("account_id")["original_claim_id"]
    assert fixed.to_dict() == {"A1": "A1", "B1": "B1"}  # never across accounts


def test_277ca_statuses_into_claim_acks(tmp_path: Path) -> None:
    out = tmp_path / "data"
    ingest([_write(tmp_path, "c.837", file_837([_claim("A1", 1), _claim("A2", 2)], Envelope()))], out=out)
    statuses = [Status("A1", "A1", "19", "100.00", "20240111"), Status("A2", "A7", "21", "100.00", "20240112"),
                Status("A2", "P1", "20", "100.00", "20240113"), Status("N0", "A3", "116", "40.00", "20240112"),
                Status("A1", "ZZ", "1", "100.00", "20240114")]
    _, summary = ingest([_write(tmp_path, "a.277", file_277ca(statuses, ACME, Envelope(isa13="000000007")))],
                        out=out)
    ds = read_dataset(out)
    acks = ds["claim_acks"].sort_values("received_date")
    assert acks["status"].tolist() == ["accepted", "rejected", "rejected", "pended", "pended"]
    assert acks["category_code"].tolist() == ["A1", "A7", "A3", "P1", "ZZ"]
    assert acks["status_code"].tolist() == ["19", "21", "116", "20", "1"]
    assert set(acks["source"]) == {"277CA"} and acks["ack_id"].is_unique
    assert acks.set_index("category_code").loc["A7", "claim_id"] == "A2"
    # a status for a claim never seen: a claim is built for it (as for a remittance), and replaced
    # by its 837 when that arrives, the acknowledgement kept
    assert ds["claims"].set_index("claim_id").loc["N0", "billed_amount"] == 40.0
    assert summary.notes["277CA STC01-1 category code not an acknowledgement code: stored raw, status pended"] == 1
    ingest([_write(tmp_path, "n.837", file_837([_claim("N0", 9, charge="40.00")], Envelope(isa13="000000008")))],
           out=out)
    ds = read_dataset(out)
    assert ds["claims"].set_index("claim_id").loc["N0", "principal_dx"] == "E119"
    assert len(ds["claim_acks"]) == 5


def test_999_responses_name_the_claims_of_the_acknowledged_837(tmp_path: Path) -> None:
    env = Envelope(gs06="41", st02=["0001", "0002"])
    claims = [_claim("A1", 1), _claim("A2", 2), _claim("B1", 3)]
    out = tmp_path / "data"
    ingest([_write(tmp_path, "c.837", file_837(claims, env, per_transaction=2))], out=out)
    ack = _write(tmp_path, "a.999", file_999(env, [("0001", "A"), ("0002", "R")], Envelope(isa13="000000003")))
    unknown = _write(tmp_path, "u.999", file_999(Envelope(gs06="999"), [("0001", "R")], Envelope(isa13="000000004")))
    _, summary = ingest([ack, unknown], out=out)
    acks = read_dataset(out)["claim_acks"]
    assert dict(zip(acks["claim_id"], acks["status"], strict=True)) == {"A1": "accepted", "A2": "accepted",
                                                                        "B1": "rejected"}
    assert set(acks["source"]) == {"999"} and set(acks["status_code"]) == {"A", "R"}
    assert summary.notes[NOTE_999_UNKNOWN] == 1
