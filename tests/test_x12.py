"""X12 835/837 ingestion (features/sources/x12): samples, expected values, robustness, idempotency."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.contract import read_dataset
from features.sources.x12 import ingest, read_interchanges

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES = SHARED / "samples" / "x12"
EXPECTED = SAMPLES / "835_expected"

needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/samples/x12 is not here")


def _isa(sep: str = "*", comp: str = ":", term: str = "~", control: str = "000000101") -> str:
    isa = sep.join([
        "ISA", "00", " " * 10, "00", " " * 10, "ZZ", "SENDER".ljust(15), "ZZ", "RECEIVER".ljust(15),
        "240105", "1200", "^", "00501", control, "0", "P", comp,
    ])
    assert len(isa) == 105
    return isa + term


def _835_body(st02: str = "0001", pcn: str = "ACCT1", paid: str = "80", sep: str = "*", comp: str = ":",
              term: str = "~", nl: str = "", clp_status: str = "1") -> str:
    segs = [
        f"ST*835*{st02}", "BPR*I*80*C*ACH************20240105", "TRN*1*TRACE1*1999999999",
        "DTM*405*20240104", "N1*PR*ACME HEALTH PLAN*XV*ACME01", "N1*PE*GOOD CLINIC*XX*1234567890",
        "LX*1", f"CLP*{pcn}*{clp_status}*100*{paid}*20*12*ICN{st02}{pcn}", "CAS*PR*2*20",
        "NM1*QC*1*DOE*JANE****MI*M123",
        "DTM*232*20231220", "MOA***MA01", "SVC*HC:99213:25*100*80**1", "DTM*472*20231220",
        "CAS*CO*45*0*1*253*0", "LQ*HE*N130", "PLB*1234567890*20241231*WO:ABC*-5*L6*2.5",
        "SE*18*" + st02,
    ]
    body = term.join(s.replace("*", sep).replace(":", comp) for s in segs) + term
    return body.replace(term, term + nl) if nl else body


def _interchange(body: str, control: str = "000000101", sep: str = "*", comp: str = ":", term: str = "~",
                 nl: str = "") -> str:
    gs = sep.join(["GS", "HP", "SENDER", "RECEIVER", "20240105", "1200", "7", "X", "005010X221A1"])
    iea = sep.join(["GE", "1", "7"]) + term + nl + sep.join(["IEA", "1", control]) + term + nl
    return _isa(sep, comp, term, control) + nl + gs + term + nl + body + iea


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _one_remit(tables: dict[str, pd.DataFrame]) -> None:
    r = tables["remittances"]
    assert len(r) == 1
    assert r["paid_amount"].iloc[0] == 80.0
    assert r["patient_responsibility"].iloc[0] == 20.0
    assert r["claim_status"].iloc[0] == "processed_primary"
    adj = tables["adjustments"]
    assert sorted(zip(adj["group_code"], adj["reason_code"], strict=True)) == [
        ("CO", "253"), ("CO", "45"), ("PR", "2")]
    line = adj[adj["line_number"].notna()]
    assert set(line["remark_codes"]) == {"N130"}
    assert set(adj.loc[adj["line_number"].isna(), "remark_codes"]) == {"MA01"}
    rl = tables["remit_lines"]
    assert rl["procedure_code"].tolist() == ["99213"]
    plb = tables["provider_adjustments"]
    assert sorted(zip(plb["reason_code"], plb["amount"], strict=True)) == [("L6", 2.5), ("WO", -5.0)]


# ------------------------------------------------------------------ robustness cases


def test_bom_and_fixed_width_isa(tmp_path: Path) -> None:
    p = _write(tmp_path, "bom.835", b"\xef\xbb\xbf" + _interchange(_835_body()).encode())
    tables, summary = ingest([p])
    assert summary.files_read == 1 and summary.transactions_read == 1 and not summary.problems
    _one_remit(tables)


def test_non_fixed_width_isa(tmp_path: Path) -> None:
    text = _interchange(_835_body())
    # collapse the padded ISA fields: no longer 106 characters
    text = text.replace(" " * 10, "").replace("SENDER" + " " * 9, "SENDER").replace(
        "RECEIVER" + " " * 7, "RECEIVER")
    assert text.index("~") < 105
    tables, summary = ingest([_write(tmp_path, "short_isa.835", text)])
    assert summary.transactions_read == 1 and not summary.problems
    _one_remit(tables)


def test_other_separators_from_isa(tmp_path: Path) -> None:
    body = _835_body(sep="|", comp=">", term="\n")
    text = _interchange(body, sep="|", comp=">", term="\n")
    tables, summary = ingest([_write(tmp_path, "pipes.835", text)])
    assert summary.transactions_read == 1 and not summary.problems
    _one_remit(tables)


def test_no_envelope_is_read_and_noted(tmp_path: Path) -> None:
    tables, summary = ingest([_write(tmp_path, "bare.835", _835_body())])
    assert summary.transactions_read == 1
    assert any("no ISA envelope" in k for k in summary.notes)  # inferred, and said so
    _one_remit(tables)


@pytest.mark.parametrize("nl", ["", "\n", "\r\n"])
def test_terminators_with_or_without_newlines(tmp_path: Path, nl: str) -> None:
    text = _interchange(_835_body(nl=nl), nl=nl)
    tables, summary = ingest([_write(tmp_path, "nl.835", text)])
    assert summary.transactions_read == 1 and not summary.problems
    _one_remit(tables)


def test_several_interchanges_in_one_file(tmp_path: Path) -> None:
    text = (_interchange(_835_body("0001", "ACCT1"), control="000000201")
            + "\n" + _interchange(_835_body("0001", "ACCT2"), control="000000202"))
    ics = read_interchanges(text)
    assert [ic.control_number for ic in ics] == ["000000201", "000000202"]
    tables, summary = ingest([_write(tmp_path, "two.835", text)])
    assert summary.transactions_read == 2
    assert sorted(tables["remittances"]["claim_id"]) == ["ACCT1", "ACCT2"]
    assert tables["remittances"]["remit_id"].is_unique


def test_unreadable_segment_is_skipped_and_its_claim_kept(tmp_path: Path) -> None:
    bad = _835_body("0002", "ACCT2").replace("CAS*PR*2*20", "CAS*PR*2*TWENTY")
    text = _interchange(_835_body("0001", "ACCT1") + bad + _835_body("0003", "ACCT3"))
    p = _write(tmp_path, "mixed.835", text)
    tables, summary = ingest([p])
    assert summary.transactions_read == 3 and summary.transactions_skipped == 0
    (problem,) = summary.problems
    assert (problem.file, problem.kind) == (str(p), "segment")
    assert problem.segment == 2 + 18 + 9  # ISA, GS, the first ST..SE, then the bad one's 9th (CAS)
    assert "CAS adjustment amount" in problem.reason
    assert dict(summary.skipped) == {"CAS segment": 1}
    assert sorted(tables["remittances"]["claim_id"]) == ["ACCT1", "ACCT2", "ACCT3"]
    # only the unreadable CAS is missing: ACCT2 keeps its line-level adjustments and its line
    adj = tables["adjustments"].merge(tables["remittances"][["remit_id", "claim_id"]], on="remit_id")
    assert adj.groupby("claim_id").size().to_dict() == {"ACCT1": 3, "ACCT2": 2, "ACCT3": 3}
    assert len(tables["remit_lines"]) == 3


def test_broken_transaction_beside_good_ones(tmp_path: Path) -> None:
    # no payer at all (no N1*PR name or id, no REF*2U, no TRN03): the transaction cannot be read
    bad = (_835_body("0002", "ACCT2").replace("N1*PR*ACME HEALTH PLAN*XV*ACME01", "N1*PR")
           .replace("TRN*1*TRACE1*1999999999", "TRN*1*TRACE1"))
    text = _interchange(_835_body("0001", "ACCT1") + bad + _835_body("0003", "ACCT3"))
    p = _write(tmp_path, "mixed.835", text)
    tables, summary = ingest([p])
    assert summary.transactions_read == 2 and summary.transactions_skipped == 1
    (problem,) = summary.problems
    assert (problem.file, problem.kind, problem.segment) == (str(p), "transaction", 2 + 18 + 1)  # its ST
    assert "no payer" in problem.reason
    assert dict(summary.skipped) == {"835 transaction": 1}
    assert sorted(tables["remittances"]["claim_id"]) == ["ACCT1", "ACCT3"]
    # nothing of the broken transaction leaks into any table
    assert len(tables["adjustments"]) == 6 and len(tables["remit_lines"]) == 2
    assert len(tables["provider_adjustments"]) == 4


def test_unreadable_file_is_reported_and_others_read(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.835", _interchange(_835_body()))
    bad = _write(tmp_path, "bad.835", "this is not x12 at all")
    _, summary = ingest([bad, good])
    assert summary.files_read == 1 and summary.files_skipped == 1
    assert summary.problems[0].file == str(bad)


def test_reversal_and_denial_are_mapped(tmp_path: Path) -> None:
    text = _interchange(_835_body("0001", "ACCT1", paid="-80", clp_status="22")
                        + _835_body("0002", "ACCT2", paid="0", clp_status="4"))
    tables, _ = ingest([_write(tmp_path, "rev.835", text)])
    r = tables["remittances"].set_index("claim_id")
    assert r.loc["ACCT1", "claim_status"] == "reversal" and r.loc["ACCT1", "paid_amount"] == -80
    assert r.loc["ACCT2", "claim_status"] == "denied"
    t = tables["transactions"]
    rev = t[t["txn_type"] == "payment_reversal"]
    assert rev["amount"].tolist() == [80.0] and rev["account_id"].tolist() == ["ACCT1"]
    assert not (t["txn_type"] == "insurance_payment").any()


_837P = """ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*RECEIVER       *240101*1200*^*00501*\
000000301*0*P*:~
GS*HC*SUB*REC*20240102*1200*9*X*005010X222A1~ST*837*0001*005010X222A1~BHT*0019*00*B1*20240102*1200*CH~
NM1*41*2*BILLER*****46*S1~HL*1**20*1~NM1*85*2*GOOD CLINIC*****XX*1234567890~HL*2*1*22*0~
SBR*P*18*******CI~NM1*IL*1*DOE*JANE****MI*M123~N3*1 MAIN~N4*AUSTIN*TX*78701~DMG*D8*19800615*F~
NM1*PR*2*ACME HEALTH PLAN*****PI*ACME01~CLM*ACCT1*100***11:B:1*Y*A*Y*Y~HI*ABK:E119~
LX*1~SV1*HC:99213:25*100*UN*1***1~DTP*472*D8*20231220~SE*18*0001~GE*1*9~IEA*1*000000301~"""


def test_837_then_835_match(tmp_path: Path) -> None:
    out = tmp_path / "data"
    p837 = _write(tmp_path, "c.837", _837P.replace("\n", ""))
    p835 = _write(tmp_path, "r.835", _interchange(_835_body()))
    _, s1 = ingest([p837], out=out)
    assert s1.claims == 1 and not s1.problems
    _, s2 = ingest([p835], out=out)
    assert s2.remits == 1 and s2.unmatched_remits == 0
    ds = read_dataset(out)
    c = ds["claims"].iloc[0]
    assert (c["claim_id"], c["claim_type"], c["frequency"], c["principal_dx"], c["dx_version"]) == (
        "ACCT1", "professional", "original", "E119", 10)
    a = ds["accounts"].iloc[0]
    assert (a["encounter_type"], a["patient_age"], a["patient_state"]) == ("professional", 43, "TX")
    assert "M123" not in a["patient_id"]  # the member id is hashed
    line = ds["claim_lines"].iloc[0]
    assert (line["procedure_code"], line["modifiers"], line["units"]) == ("99213", "25", 1.0)
    assert ds["payers"].set_index("payer_id").loc["ACME01", "financial_class"] == "commercial"
    assert ds["remittances"]["claim_id"].tolist() == ["ACCT1"]


def test_835_before_837_builds_claim_then_837_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "data"
    _, s1 = ingest([_write(tmp_path, "r.835", _interchange(_835_body()))], out=out)
    assert s1.unmatched_remits == 1
    _, s2 = ingest([_write(tmp_path, "c.837", _837P.replace("\n", ""))], out=out)
    ds = read_dataset(out)
    assert len(ds["claims"]) == 1 and ds["claims"]["principal_dx"].iloc[0] == "E119"
    assert ds["accounts"]["patient_age"].iloc[0] == 43


# ------------------------------------------------------------------ idempotency


def test_ingest_twice_adds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "data"
    files = [_write(tmp_path, "a.835", _interchange(_835_body())),
             _write(tmp_path, "c.837", _837P.replace("\n", ""))]
    ingest(files, out=out)
    first = read_dataset(out).row_counts()
    _, summary = ingest(files, out=out)
    assert summary.files_already_ingested == 2 and summary.files_read == 0
    assert read_dataset(out).row_counts() == first
    # the same interchange re-sent with other line breaks (a new hash): keys dedupe it
    _, summary = ingest([_write(tmp_path, "a_again.835", _interchange(_835_body(nl="\n"), nl="\n"))], out=out)
    assert summary.files_read == 1
    assert read_dataset(out).row_counts() == first


# ------------------------------------------------------------------ the shared samples


@needs_samples
@pytest.mark.slow
def test_every_sample_is_read_or_reported(tmp_path: Path) -> None:
    files = sorted(p for p in (SAMPLES / "835").iterdir()) + sorted(p for p in (SAMPLES / "837").iterdir())
    assert files
    for f in files:
        _, summary = ingest([f])
        assert summary.transactions_read > 0, f.name  # every sample has something to read
        # every skip is reported with the file and (below the file) the segment number, and counted
        reported = [p for p in summary.problems if p.kind != "note"]
        assert len(reported) == sum(summary.skipped.values()), f.name
        assert summary.transactions_skipped == sum(v for k, v in summary.skipped.items() if k.endswith("transaction"))
        for p in reported:
            assert p.file == str(f) and p.reason
            if p.kind != "file":
                assert p.segment and p.segment > 0
    out = tmp_path / "all"
    _, summary = ingest([SAMPLES], out=out)
    assert summary.claims > 0 and summary.remits > 0
    ds = read_dataset(out)  # the contract's validation passes
    assert len(ds["claims"]) and len(ds["remittances"])


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else float(v)


@needs_samples
@pytest.mark.parametrize("name", ["keironstoddart__blue_cross_nc_sample", "keironstoddart__emedny_sample",
                                  "keironstoddart__united_healthcare_legacy_sample"])
def test_expected_values(name: str) -> None:
    tables, summary = ingest([SAMPLES / "835" / f"{name}.txt"])
    assert summary.transactions_skipped == 0
    exp = pd.read_csv(EXPECTED / f"{name}.csv", dtype=str, keep_default_na=False)
    remits = tables["remittances"].merge(tables["claims"][["claim_id", "account_id"]], on="claim_id")
    rl = tables["remit_lines"].merge(remits[["remit_id", "account_id"]], on="remit_id")
    assert len(rl) == len(exp)
    adj = tables["adjustments"]
    for (_, got), (_, want) in zip(rl.iterrows(), exp.iterrows(), strict=True):
        assert got["account_id"] == want["marker"]  # the patient control number (CLP01)
        assert got["procedure_code"] == want["code"]
        # an SVC without a charge/paid amount is recorded as 0 (and noted)
        assert got["line_charge"] == pytest.approx(_num(want["charge_amount"]) or 0.0)
        assert got["line_paid"] == pytest.approx(_num(want["paid_amount"]) or 0.0)
        mine = adj[(adj["remit_id"] == got["remit_id"]) & (adj["line_number"] == got["line_number"])]
        expected_adj = []
        for i in range(3):
            if f"adj_{i}_code" in want and want[f"adj_{i}_code"]:
                expected_adj.append((want[f"adj_{i}_group"], want[f"adj_{i}_code"],
                                     round(float(want[f"adj_{i}_amount"]), 2)))
        got_adj = list(zip(mine["group_code"], mine["reason_code"], mine["amount"].round(2), strict=True))
        extra = [a for a in got_adj if a not in expected_adj]
        assert [a for a in got_adj if a in expected_adj] == expected_adj
        # The expected CSV keeps only the first triplet of each CAS; we read all six. The one line
        # where it matters, `CAS*PR*2*5.13**1*110`, has a PR-1 deductible of 110 in its second
        # triplet (5.13 + 110 = CLP05 115.13 - ..., and allowed 144.18 - paid 29.05 = 115.13).
        assert extra == ([("PR", "1", 110.0)] if got["procedure_code"] == "B4154"
                         and got["line_paid"] == 29.05 else [])
        if "rem_0_code" in want and want["rem_0_code"]:
            assert set(mine["remark_codes"]) == {want["rem_0_code"]}


# ------------------------------------------------------------------ remark codes with no CAS to carry them


def test_remarks_without_cas_are_noted_not_dropped_silently(tmp_path: Path) -> None:
    # claim-level MOA remarks on a claim with no claim-level CAS, and a line LQ with no line CAS:
    # an adjustments row needs a group and reason code, so the contract cannot hold them; say so
    body = (_835_body().replace("CAS*PR*2*20~", "").replace("CAS*CO*45*0*1*253*0~", "")
            .replace("SE*18*", "SE*16*"))
    tables, summary = ingest([_write(tmp_path, "no_cas.835", _interchange(body))])
    assert summary.transactions_read == 1 and not summary.problems
    assert len(tables["adjustments"]) == 0 and len(tables["remittances"]) == 1
    (note,) = [k for k in summary.notes if k.startswith("remark codes")]
    assert summary.notes[note] == 2  # MA01 (MOA) and N130 (LQ)
    assert "no CAS adjustment" in note and "not stored" in note
    assert f"note: {note} (2)" in summary.text()
    # with CAS segments present the remarks ride on the adjustment rows and nothing is noted
    tables, summary = ingest([_write(tmp_path, "with_cas.835", _interchange(_835_body()))])
    assert not any(k.startswith("remark codes") for k in summary.notes)
    _one_remit(tables)


# ------------------------------------------------------------------ the same rows on one or several cores


def test_parallel_mapping_gives_the_same_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import features.sources.x12.ingestion as x12

    bad = _835_body("0005", "ACCT5").replace("CAS*PR*2*20", "CAS*PR*2*TWENTY")
    body = "".join(_835_body(f"{i:04d}", f"ACCT{i}") for i in range(1, 5)) + bad + "".join(
        _835_body(f"{i:04d}", f"ACCT{i}") for i in range(6, 12))
    p = _write(tmp_path, "many.835", _interchange(body))
    serial, s1 = ingest([p], workers=1)
    monkeypatch.setattr(x12, "PARALLEL_MIN_BYTES", 0)
    parallel, s2 = ingest([p], workers=2)
    assert s1.as_dict() == s2.as_dict()
    assert s2.transactions_read == 11 and dict(s2.skipped) == {"CAS segment": 1}
    assert s2.problems[0].segment == 2 + 4 * 18 + 9  # numbered in the file, not in the worker's part
    for name, df in serial.items():
        pd.testing.assert_frame_equal(df, parallel[name], obj=name)


# ------------------------------------------------------------------ the CLI: --strict, features on ingested data

ROOT = Path(__file__).resolve().parents[1]

# pyx12's own 835 test file (valid 005010X221A1): passes pyx12's loop-aware validation
_VALID_835 = """ISA*00*          *00*          *ZZ*D00000         *ZZ*00AA           *141028*1609*^*\
00501*000238388*1*P*:~
GS*HP*D00111*00GR*20141028*1609*383880001*X*005010X221A1~ST*835*0001~BPR*H*0*C*NON************20041028~
TRN*1*000000000*1386000134~REF*EV*00GR~DTM*405*20130901~N1*PR*PAYER~N3*P.O. BOX 30479~N4*LANSING*MI*48909~
PER*BL*JOHN WAYNE*TE*9995551212~N1*PE*UNKNOWN*FI*444313000~LX*1~TS3*653423424*12*20041231*1*915.39~
CLP*2005555A*4*915.39*0**MC*4276512332~NM1*QC*1*BACH*JOHANN*S***MR*00001612~NM1*82*2*PAYEE*****MC*44452736~
SVC*HC:T1005*500.04*0**68~DTM*150*20031129~DTM*151*20031129~CAS*CO*16*500.04~LQ*HE*N14~
SVC*HC:T1005*127.8*0**16~DTM*150*20031030~DTM*151*20031030~CAS*OA*A7*127.8~LQ*HE*N14~
SVC*HC:T1005*287.55*0**36~DTM*150*20031031~DTM*151*20031031~CAS*OA*A7*287.55~LQ*HE*N14~SE*31*0001~
GE*1*383880001~IEA*1*000238388~""".replace("\n", "")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recoup_cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_strict_validation_on_good_and_broken_files(tmp_path: Path) -> None:
    pytest.importorskip("pyx12")
    good = _write(tmp_path, "good.835", _VALID_835)
    # the same file without its mandatory payer contact (PER) segment: still readable, not valid
    broken = _write(tmp_path, "broken.835", _VALID_835.replace("PER*BL*JOHN WAYNE*TE*9995551212~", "")
                    .replace("SE*31*", "SE*30*"))
    res = _cli("ingest-x12", str(good), "--strict", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["transactions_read"] == 1 and out["problems"] == []
    res = _cli("ingest-x12", str(broken), "--strict", "--json")
    assert res.returncode == 0, res.stderr  # reported, and still read
    out = json.loads(res.stdout)
    assert out["transactions_read"] == 1 and out["remits"] == 1
    strict = [p for p in out["problems"] if "pyx12 strict validation" in p]
    assert strict and all(p.startswith(f"note: {broken}") for p in strict)
    assert any("segment PER" in p and "segment 11" in p for p in strict)  # 11th segment: where PER belongs
    for value in ("2005555A", "915.39", "500.04", "JOHANN", "9995551212"):  # no ids, amounts or names
        assert value not in res.stdout
    # without --strict the broken file reads clean (pyx12 is not consulted)
    res = _cli("ingest-x12", str(broken), "--json")
    assert json.loads(res.stdout)["problems"] == []


@pytest.mark.slow
def test_features_run_on_ingested_output(tmp_path: Path) -> None:
    data = tmp_path / "data"
    files = [_write(tmp_path, "c.837", _837P.replace("\n", "")),
             _write(tmp_path, "r.835", _interchange(_835_body())),
             _write(tmp_path, "d.835", _interchange(_835_body("0002", "ACCT2", paid="0", clp_status="4"),
                                                    control="000000102"))]
    res = _cli("ingest-x12", *map(str, files), "--out", str(data))
    assert res.returncode == 0, res.stderr
    res = _cli("validate", str(data))
    assert res.returncode == 0, res.stdout + res.stderr
    out, den = tmp_path / "features.parquet", tmp_path / "denials.parquet"
    res = _cli("features", str(data), "--as-of", "2024-01-04", "--out", str(out), "--denials-out", str(den))
    assert res.returncode == 0, res.stdout + res.stderr
    f = pd.read_parquet(out)
    # ACCT1: charged 100 on 2023-12-20, paid 80 on 2024-01-04 -> open with 20; ACCT2: denied, all open
    assert set(f["account_id"]) == {"ACCT1", "ACCT2"}
    assert f["account_id"].is_unique and len(f.columns) > 5
    assert set(pd.read_parquet(den)["claim_id"]) == {"ACCT2"}
