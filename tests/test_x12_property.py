"""Property: whatever valid 835/837/277CA/999 content ingestion accepts, its output passes the contract's
validation (`read_dataset` validates), nothing is merged that differs, and ingesting again adds nothing.

The content is random (hypothesis): 4010 and 5010, professional and institutional, every claim
frequency and claim status code (some the contract does not know), patient control numbers and member
ids drawn from a handful (as in de-identified files), 835s for claims never seen, interchange control
numbers that repeat across files, each file in a random sender style, ingested in one or two batches."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import read_dataset
from features.sources.x12 import ingest
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
from tests.x12_writer import VARIATIONS, write

PCNS = ["9999999999-999", "A1", "A2", "B7/3", "X"]  # few: repeats on purpose
PAYERS = [Payer("ACME01", "ACME HEALTH PLAN", "CI"), Payer("00431", "MEDICARE PART B", "MB"),
          Payer("77027", "STATE MEDICAID", "MC")]
PEOPLE = [Person("M1", "DOE", "JANE", "19800615"), Person("M1", "DOE", "KID", "20150301"),
          Person("99999", "XXXX", "XXXX", "20000101"), Person("M2", "ROE", "RICHARD", "19550101", "NM")]
FREQUENCIES = ["1", "1", "1", "6", "7", "8", "2", "3", "4", "5", "0", "9", "Q"]
STATUSES = ["1", "1", "2", "3", "4", "5", "13", "19", "20", "21", "22", "23", "25", "10", "27"]
GROUPS = ["CO", "PR", "OA", "PI", "CR"]
STYLES = list(VARIATIONS.values())

cents = st.integers(0, 250_000).map(lambda c: f"{c / 100:.2f}")
dates = st.sampled_from(["20231220", "20240105", "20240110", "20240131"])


@st.composite
def claims(draw, n: int) -> Claim:
    patient = draw(st.sampled_from(PEOPLE))
    subscriber = draw(st.sampled_from([patient, PEOPLE[0]]))
    lines = tuple(Line(draw(st.sampled_from(["99213", "99214", "81003", "J1100"])), draw(cents),
                       draw(st.sampled_from(["1", "2", "0.5"])), draw(st.sampled_from(["0450", "0300", "0120"])))
                  for _ in range(draw(st.integers(1, 3))))
    return Claim(draw(st.sampled_from(PCNS)), draw(st.sampled_from(PAYERS)), patient, subscriber, lines,
                 draw(dates), trace=f"TRACE{n}", sequence=draw(st.sampled_from("PPPST")),
                 frequency=draw(st.sampled_from(FREQUENCIES)), institutional=draw(st.booleans()),
                 responsible=draw(st.sampled_from([None, PEOPLE[3]])),
                 original_icn=draw(st.sampled_from([None, "ICN1", "ICN2"])))


@st.composite
def payments(draw) -> Payment:
    lines = tuple(Line(draw(st.sampled_from(["99213", "81003"])), draw(cents), paid=draw(cents))
                  for _ in range(draw(st.integers(0, 2))))
    adj = tuple((draw(st.sampled_from(GROUPS)), draw(st.sampled_from(["45", "2", "1", "16", "253"])), draw(cents))
                for _ in range(draw(st.integers(0, 2))))
    paid = draw(cents)
    status = draw(st.sampled_from(STATUSES))
    return Payment(draw(st.sampled_from(PCNS)), status, draw(cents), ("-" + paid) if status == "22" else paid,
                   draw(cents), draw(st.sampled_from(["ICN1", "ICN2", "ICN3"])), lines, adj,
                   line_adjustments=adj[:1], patient_member=draw(st.sampled_from(["M1", "99999"])),
                   service_date=draw(dates), remark=draw(st.sampled_from([None, "MA01"])))


@st.composite
def scenarios(draw) -> dict:
    n_claims = draw(st.integers(1, 7))
    all_claims = [draw(claims(i)) for i in range(n_claims)]
    split = draw(st.integers(1, n_claims))
    isa13 = st.sampled_from(["000000001", "000000002"])  # control numbers that repeat across files
    files: list[tuple[str, list, int]] = []  # (name, interchanges, batch)
    envs = []
    for k, group in enumerate((all_claims[:split], all_claims[split:])):
        if not group:
            continue
        env = Envelope(isa13=draw(isa13), version=draw(st.sampled_from(["00501", "00401"])), gs06=str(10 + k),
                       st02=[f"{k}{i:03d}" for i in range(len(group))])
        per = draw(st.integers(1, 3))
        envs.append((env, group, per))
        files.append((f"claims{k}.837", file_837(group, env, per), draw(st.integers(1, 2))))
    pays = draw(st.lists(payments(), min_size=1, max_size=6))
    cut = draw(st.integers(0, len(pays)))
    for k, group in enumerate((pays[:cut], pays[cut:])):
        if group:
            env = Envelope(isa13=draw(isa13), date=draw(st.sampled_from(["20240201", "20240215"])))
            plb = draw(st.sampled_from([(), (("WO", "-5.00"),), (("L6", "2.50"), ("FB", "10"))]))
            files.append((f"remits{k}.835", file_835(group, draw(st.sampled_from(PAYERS)), f"CHECK{k}", env, plb),
                          draw(st.integers(1, 2))))
    statuses = [Status(c.pcn, draw(st.sampled_from(["A1", "A2", "A3", "A7", "P1", "R3", "Z9"])), "21", c.billed,
                       "20240116") for c in all_claims if draw(st.booleans())]
    if statuses:
        files.append(("acks.277", file_277ca(statuses, PAYERS[0], Envelope(isa13=draw(isa13), date="20240116")),
                      draw(st.integers(1, 2))))
    env, group, per = envs[0]
    codes = [(env.st02[t], draw(st.sampled_from("AER"))) for t in range(-(-len(group) // per))]
    files.append(("ack.999", file_999(env, codes, Envelope(isa13="000000003", date="20240117", gs06="99")), 2))
    styles = [draw(st.sampled_from(STYLES)) for _ in files]
    return {"files": files, "styles": styles, "claims": all_claims, "payments": pays, "statuses": statuses,
            "envs": envs, "codes": codes}


def _ingest_all(scenario: dict, folder: Path, out: Path, styles: list) -> list:
    summaries = []
    for batch in (1, 2):
        paths = []
        for (name, interchanges, b), style in zip(scenario["files"], styles, strict=True):
            if b == batch:
                p = folder / f"b{batch}" / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(write(interchanges, style))
                paths.append(p)
        if paths:
            summaries.append(ingest(paths, out=out, workers=1)[1])
    return summaries


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_ingested_output_always_validates_and_merges_nothing(scenario: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="recoup-x12-prop-") as tmp:
        out = Path(tmp) / "data"
        summaries = _ingest_all(scenario, Path(tmp) / "first", out, scenario["styles"])
        for s in summaries:
            assert not [p for p in s.problems if p.kind != "note"], s.text()
        ds = read_dataset(out)  # raises ContractError on any broken rule of the contract
        claims, remits = ds["claims"], ds["remittances"]

        # every claim, claim payment and status read, none merged with another
        generated = scenario["claims"]
        from_837 = claims[claims["frequency_code"].notna()]
        assert len(from_837) == len(generated)
        assert sorted(from_837["billed_amount"].round(2)) == sorted(round(float(c.billed), 2) for c in generated)
        assert Counter(from_837["frequency_code"]) == Counter(c.frequency for c in generated)
        assert len(ds["claim_lines"]) == sum(len(c.lines) for c in generated)
        assert len(remits) == len(scenario["payments"])
        assert sorted(remits["paid_amount"].round(2)) == sorted(round(float(p.paid), 2) for p in scenario["payments"])
        assert Counter(remits["status_code"]) == Counter(p.status for p in scenario["payments"])
        # a remittance belongs to a claim of its own account (CLP01), never to another's
        acct = remits.merge(claims[["claim_id", "account_id"]], on="claim_id")["account_id"]
        assert Counter(acct) == Counter(p.pcn for p in scenario["payments"])
        acks = ds["claim_acks"]
        assert (acks["source"] == "277CA").sum() == len(scenario["statuses"])
        env, group, per = scenario["envs"][0]
        assert (acks["source"] == "999").sum() == len(group)  # every claim of the acknowledged 837
        # the ledger: one charge per account, a payment or reversal per remit paying non-zero
        txn = ds["transactions"]
        assert (txn["txn_type"] == "charge").sum() == len(ds["accounts"])
        paying = sum(float(p.paid) != 0 for p in scenario["payments"])
        assert txn["txn_type"].isin(["insurance_payment", "payment_reversal"]).sum() == paying
        assert set(ds["accounts"]["account_id"]) == {c.pcn for c in generated} | {p.pcn for p in scenario["payments"]} \
            | {s.pcn for s in scenario["statuses"]}

        # ingesting the same content again, in other sender styles, adds nothing
        before = ds.row_counts()
        again = _ingest_all(scenario, Path(tmp) / "again", out, list(reversed(scenario["styles"])))
        # (a file restyled into the very same bytes is known by its hash; the others are read)
        assert sum(s.files_read + s.files_already_ingested for s in again) == len(scenario["files"])
        for name, n in before.items():
            stored = out / f"{name}.parquet"
            assert len(pd.read_parquet(stored)) == n, name
        pd.testing.assert_frame_equal(pd.read_parquet(out / "remittances.parquet")[list(remits.columns)]
                                      .astype({"received_date": "datetime64[ns]"}), remits, check_dtype=False)
