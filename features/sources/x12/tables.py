"""Collected rows (+ the tables already in the data folder) -> contract tables: keys unique,
references held, so that `recoup validate` passes on whatever the ingestion accepted.

  * claims: the 837 claims (ids: link.assign_claim_ids), claims built from 835 CLP segments and from
    277CA statuses whose claim was never seen (DESIGN.md: billed amount CLP03, the patient control
    number as account, statement-period or service date as submitted date, patient_age 0, noted);
    an 837 claim replaces one built earlier from a remittance or ack (same id: CLM01 = CLP01).
    Hidden columns (x12_*) keep what a later ingestion needs: the source, the content hash, the REF*F8
    reference and the 837's envelope (for 999s). Unknown columns are ignored by the contract.
  * accounts: one per patient control number, from its first claim by (837 before 835/277CA, payer
    sequence); total charges = its largest billed amount; guarantor_id from the 837.
  * ledger: each remittance posts an insurance_payment (CLP04 > 0) or payment_reversal (CLP04 < 0) of
    |CLP04|; each account one `charge` of its total charges at its service date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import TABLES, columns_of
from features.sources.x12.acks import NOTE_999_UNKNOWN
from features.sources.x12.link import ClaimIndex, assign_claim_ids, link_originals
from features.sources.x12.report import IngestSummary
from features.sources.x12.rows import (
    ADJUSTMENT_COLUMNS,
    CLAIM_COLUMNS,
    LINE_COLUMNS,
    PAYER_COLUMNS,
    PLB_COLUMNS,
    REMIT_COLUMNS,
    REMIT_LINE_COLUMNS,
    Rows,
)
from features.sources.x12.values import text_hash

SOURCE_PRIORITY = {"837": 0, "835": 1, "277": 2}  # when the same key arrives twice, an 837 row wins
CLAIM_EXTRA = ["x12_source", "x12_original_ref", "x12_content", "x12_transaction"]
_DTYPES = {"str": "str", "date": "datetime64[ns]", "money": "float64", "signed_money": "float64",
           "int": "Int64", "float": "float64"}


def priority(source: pd.Series, missing: float = np.nan) -> np.ndarray:
    """`source.map(SOURCE_PRIORITY)` without a per-row Python call (`missing` for other values)."""
    out = np.full(len(source), missing, dtype="float64")
    for value, prio in SOURCE_PRIORITY.items():
        out[(source == value).to_numpy(dtype=bool, na_value=False)] = prio
    return out


def str_array(col) -> pd.api.extensions.ExtensionArray:
    """Python strings (or None) -> pandas' Arrow-backed `str` array, built by Arrow in one C pass."""
    return pd.array(pa.array(col, type=pa.string()), dtype="str")


def frame(rows: list, cols: list[str]) -> pd.DataFrame:
    """Row tuples -> frame, column by column (Arrow builds the string columns; no per-row pandas work):
    floats as float64, ints as Int64, strings as `str`, anything else as Python objects."""
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    data = {}
    for name, col in zip(cols, zip(*rows, strict=True), strict=True):
        first = next((v for v in col if v is not None), None)
        try:
            if isinstance(first, float):
                data[name] = np.array(col, dtype="float64")  # (None -> NaN)
            elif isinstance(first, str):
                data[name] = str_array(col)
            elif isinstance(first, int) and not isinstance(first, bool):
                data[name] = pa.array(col, type=pa.int64()).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
            else:
                data[name] = pd.Series(np.array(col, dtype=object), dtype=object, copy=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):  # mixed types: leave as objects
            data[name] = pd.Series(np.array(col, dtype=object), dtype=object, copy=False)
    return pd.DataFrame(data, copy=False)


def empty(table: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[s.type]) for c, s in TABLES[table].columns.items()})


def dates(s: pd.Series) -> pd.Series:
    """ISO date strings -> datetime64[ns]; each distinct value parsed once (a batch has few dates)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    parsed = pd.to_datetime(pd.Series(uniques, dtype=object), format="%Y-%m-%d", errors="coerce")
    vals = parsed.to_numpy(dtype="datetime64[ns]")
    out = np.full(len(codes), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = codes >= 0
    out[ok] = vals[codes[ok]]
    return pd.Series(out, index=s.index)


def typed(name: str, df: pd.DataFrame) -> pd.DataFrame:
    for col, spec in TABLES[name].columns.items():
        if col not in df:
            df[col] = spec.default if not spec.nullable else None
        if spec.type == "date":
            if not pd.api.types.is_datetime64_any_dtype(df[col]):
                df[col] = dates(df[col])
            df[col] = df[col].astype("datetime64[ns]")
        elif spec.type in ("money", "signed_money"):
            df[col] = pd.to_numeric(df[col]).astype("float64").round(2)
        elif spec.type == "float":
            df[col] = pd.to_numeric(df[col]).astype("float64")
        elif spec.type == "int":
            df[col] = pd.to_numeric(df[col]).astype("Int64")
        elif df[col].dtype != "str":
            df[col] = df[col].astype("str")  # Arrow-backed: cheap to hash, dedupe and write
    return df


def stub_claims(t: pd.DataFrame, source: str) -> pd.DataFrame:
    """Claims built from remittances or acks: `t` has claim_id, account_id, payer_id, payer_sequence,
    encounter_type, claim_date, billed, patient_id, facility_id (taken as columns, not row by row)."""
    n = len(t)
    enc = t["encounter_type"]
    nothing = str_array([None] * n)
    return pd.DataFrame({
        "claim_id": t["claim_id"], "account_id": t["account_id"], "payer_id": t["payer_id"],
        "payer_sequence": t["payer_sequence"],
        "claim_type": str_array(np.where(enc.to_numpy() == "professional", "professional", "institutional")),
        "frequency": str_array(["original"] * n), "frequency_code": nothing, "submitted_date": t["claim_date"],
        "billed_amount": t["billed"].fillna(0).clip(lower=0), "principal_dx": nothing,
        "dx_version": np.full(n, 10, dtype=np.int64), "x12_original_ref": nothing,
        "patient_id": t["patient_id"], "facility_id": t["facility_id"], "encounter_type": enc,
        "service_date": t["claim_date"], "patient_age": np.zeros(n, dtype=np.int64), "patient_state": nothing,
        "guarantor_id": nothing, "x12_content": nothing, "x12_transaction": nothing,
        "x12_source": str_array([source] * n),
    })


def accounts_from(c: pd.DataFrame) -> pd.DataFrame:
    if not len(c):
        return empty("accounts").assign(x12_source=pd.Series(dtype=object))
    # per account: the facts of its first claim by (source priority, payer sequence), in that order
    # (= a stable sort then drop_duplicates), and the largest billed amount as total charges
    codes, uniques = pd.factorize(c["account_id"])
    total = np.full(len(uniques), -np.inf)
    np.maximum.at(total, codes, c["billed_amount"].to_numpy(dtype="float64"))
    order = np.lexsort((c["payer_sequence"].to_numpy(dtype="int64"), priority(c["x12_source"])))
    _, first_pos = np.unique(codes[order], return_index=True)
    rows = order[np.sort(first_pos)]
    first = c.iloc[rows]
    return pd.DataFrame({
        "account_id": first["account_id"], "patient_id": first["patient_id"],
        "facility_id": first["facility_id"], "encounter_type": first["encounter_type"],
        "service_date": first["service_date"], "discharge_date": None,
        "primary_payer_id": first["payer_id"],  # (the primary's payer, else the first claim's)
        "patient_age": first["patient_age"], "patient_state": first["patient_state"],
        "total_charges": total[codes[rows]], "guarantor_id": first["guarantor_id"],
        "x12_source": first["x12_source"],
    })


def with_charges(txn: pd.DataFrame, acc: pd.DataFrame) -> pd.DataFrame:
    """One `charge` per account (its total charges at its service date), rebuilt on each ingest."""
    acc = dedupe("accounts", acc)
    charges = pd.DataFrame({
        "txn_id": "chg-" + acc["account_id"].astype(str), "account_id": acc["account_id"],
        "posted_date": acc["service_date"], "txn_type": "charge", "amount": acc["total_charges"],
        "payer_id": None,
    })
    keep = txn[~txn["txn_id"].astype(str).str.startswith("chg-")]
    return pd.concat([charges, keep], ignore_index=True)


def dedupe(name: str, df: pd.DataFrame) -> pd.DataFrame:
    spec = TABLES[name]
    if "x12_source" in df:
        p = priority(df["x12_source"], 0)
        if len(p) and (p != p[0]).any():  # (a stable sort of equal keys would change nothing)
            df = df.assign(_p=p).sort_values("_p", kind="stable").drop(columns="_p")
    if not spec.unique_key:
        return df.reset_index(drop=True)  # (filtered against what was ingested before)
    return df.drop_duplicates(list(spec.key), keep="first").reset_index(drop=True)


def _remits_to_claims(rows: Rows, index: ClaimIndex, old_remits: pd.DataFrame | None
                      ) -> tuple[list[str], list[int], list[str], int]:
    """(claim id of each new remit, remits to build a claim from, their claim ids, unmatched count)."""
    icn: dict[tuple, str] = {}  # (account, payer claim number) -> claim: a reversal names the original's
    if old_remits is not None and len(old_remits):
        for pcn, cid in zip(old_remits["payer_claim_number"], old_remits["claim_id"], strict=True):
            if isinstance(pcn, str) and pcn:
                icn[(index.account_of.get(cid), pcn)] = cid
    claim_ids: list[str] = []
    stub_at: list[int] = []
    stub_ids: list[str] = []
    unmatched = 0
    for i, t in enumerate(rows.remits):
        acct, pcn, payer, seq = t[1], t[8], t[9], t[15]
        cid = icn.get((acct, pcn)) if pcn else None
        if cid is None:
            cid = index.match(acct, payer, seq, t[10], t[2])
        if cid is None:
            cid = index.stub_id(acct, payer, seq)
            index.add(acct, (cid, payer, seq, t[10], t[11], "835"))
            stub_at.append(i)
            stub_ids.append(cid)
        if index.source_of.get(cid) != "837":
            unmatched += 1
        if pcn:
            icn[(acct, pcn)] = cid
        claim_ids.append(cid)
    return claim_ids, stub_at, stub_ids, unmatched


def _acks_to_claims(rows: Rows, index: ClaimIndex, claims: list[pd.DataFrame], summary: IngestSummary
                    ) -> tuple[list[tuple], list[tuple]]:
    """(claim_acks rows, claims to build from 277CA rows whose claim was never seen)."""
    by_txn: dict[str, list[str]] = {}
    for df in claims:
        if df is not None and len(df) and "x12_transaction" in df:
            for cid, key in zip(df["claim_id"], df["x12_transaction"], strict=True):
                if isinstance(key, str) and key:
                    by_txn.setdefault(key, []).append(cid)
                    by_txn.setdefault(key.rsplit("|", 1)[0] + "|", []).append(cid)  # its group
    out, stubs = [], []
    for t in rows.acks:
        ack_id, acct, received, source, status, category, code, payer, billed, when = t[:10]
        if source == "999":
            cids = list(dict.fromkeys(by_txn.get(t[12], ())))
            if not cids:
                summary.notes[NOTE_999_UNKNOWN] += 1
            out.extend((text_hash(f"{ack_id}|{cid}"), cid, received, source, status, category, code)
                       for cid in cids)
            continue
        cid = index.match(acct, payer, None, billed, received, any_stub=True)
        if cid is None:
            cid = index.stub_id(acct, payer, 1)
            index.add(acct, (cid, payer, 1, billed or 0.0, when, "277"))
            stubs.append((cid, acct, payer, 1, "professional", when, billed, t[10], t[11]))
        out.append((ack_id, cid, received, source, status, category, code))
    return out, stubs


def build_tables(rows: Rows, existing: dict[str, pd.DataFrame] | None = None,
                 summary: IngestSummary | None = None) -> dict[str, pd.DataFrame]:
    """Row lists (+ tables already in the data folder) -> contract tables (plus the ingestion's hidden
    x12_* columns), keys unique, references held."""
    existing = existing or {}
    summary = summary or IngestSummary()
    old_claims = existing.get("claims")

    # ---- 837 claims: final ids; a claim known already (same content) is not added again
    c = frame(rows.claims, CLAIM_COLUMNS)
    c["x12_source"] = "837"
    ids, kept = assign_claim_ids(c["base_id"], c["x12_content"], old_claims)
    claim_of_content = dict(zip(c["x12_content"], ids, strict=True))
    c["claim_id"] = str_array(ids)
    c = c[np.asarray(kept, dtype=bool)].drop(columns="base_id").reset_index(drop=True)
    index = ClaimIndex([old_claims, c])

    # ---- remittances and acknowledgements -> claims (built from their segments when never seen)
    r = frame(rows.remits, REMIT_COLUMNS)
    remit_claims, stub_at, stub_ids, unmatched = _remits_to_claims(rows, index, existing.get("remittances"))
    r["claim_id"] = str_array(remit_claims)
    summary.unmatched_remits += unmatched
    ack_rows, ack_stubs = _acks_to_claims(rows, index, [old_claims, c], summary)
    parts = [c]
    if stub_at:
        summary.notes["age unknown for claims built from 835 CLP: patient_age 0"] += len(stub_at)
        t = r.iloc[np.asarray(stub_at, dtype=np.int64)].reset_index(drop=True)
        parts.append(stub_claims(t.assign(claim_id=str_array(stub_ids)), "835"))
    if ack_stubs:
        summary.notes["claims built from 277CA statuses (no 837 seen): patient_age 0"] += len(ack_stubs)
        t = frame(ack_stubs, ["claim_id", "account_id", "payer_id", "payer_sequence", "encounter_type",
                              "claim_date", "billed", "patient_id", "facility_id"])
        parts.append(stub_claims(t.assign(billed=pd.to_numeric(t["billed"]).astype("float64")), "277"))
    c = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else c
    c["original_claim_id"] = None
    c["billed_amount"] = pd.to_numeric(c["billed_amount"]).astype("float64")
    c["payer_sequence"] = pd.to_numeric(c["payer_sequence"]).astype("int64")
    acc = accounts_from(c)

    # ---- the other new tables
    remits = r[["remit_id", "claim_id", "received_date", "claim_status", "forwarded", "status_code",
                "paid_amount", "patient_responsibility", "payer_claim_number"]].copy()
    lines = frame(rows.lines, LINE_COLUMNS)
    if len(lines):
        lines["claim_id"] = str_array([claim_of_content[x] for x in lines["x12_content"]])
    lines = lines.drop(columns="x12_content")
    adj = frame(rows.adjustments, ADJUSTMENT_COLUMNS)
    plb = frame(rows.plb, PLB_COLUMNS)
    payer_rows = rows.payers + [(t[2], t[2], "other", "277") for t in ack_stubs]
    pay = frame(payer_rows, PAYER_COLUMNS)
    pay["timely_filing_days"] = pd.NA
    pay["appeal_window_days"] = pd.NA
    # an 837's financial class (from SBR09) beats an 835's (CLP06 of its first claim)
    pay = pay.assign(_p=priority(pay["x12_source"])).sort_values("_p", kind="stable").drop(columns="_p")
    paid = r["paid_amount"].to_numpy(dtype="float64") if len(r) else np.zeros(0)
    pay_txn = pd.DataFrame({
        "txn_id": "pay-" + r["remit_id"], "account_id": r["account_id"], "posted_date": r["received_date"],
        "txn_type": str_array(np.where(paid > 0, "insurance_payment", "payment_reversal")),
        "amount": np.abs(paid), "payer_id": r["payer_id"],
    })[paid != 0]
    new = {
        "payers": pay, "accounts": acc, "claims": c[columns_of("claims") + CLAIM_EXTRA],
        "claim_lines": lines, "remittances": remits, "adjustments": adj,
        "remit_lines": frame(rows.remit_lines, REMIT_LINE_COLUMNS), "provider_adjustments": plb,
        "transactions": pay_txn,
        "claim_acks": frame(ack_rows, columns_of("claim_acks")),
    }
    # tables without a unique key: drop new rows of a remit / PLB transaction already ingested
    old_rem = existing.get("remittances")
    if old_rem is not None and len(old_rem) and len(adj):
        new["adjustments"] = adj[~adj["remit_id"].isin(set(old_rem["remit_id"]))]
    old_plb = existing.get("provider_adjustments")
    if old_plb is not None and "x12_txn" in old_plb and len(plb):
        new["provider_adjustments"] = plb[~plb["x12_txn"].isin(set(old_plb["x12_txn"]))]
    merged: dict[str, pd.DataFrame] = {}
    for name in TABLES:  # what was there first, then what is new: a row read again keeps its place
        parts = [df for df in (existing.get(name), new.get(name)) if df is not None and len(df)]
        if not parts:
            merged[name] = empty(name)
            continue
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].copy()
        merged[name] = typed(name, df)
    acc = merged["accounts"]
    if acc["account_id"].duplicated().any():  # an account seen before: its largest claim so far
        acc["total_charges"] = acc.groupby("account_id", sort=False)["total_charges"].transform("max")
    link_originals(merged["claims"], merged["remittances"])
    merged["transactions"] = with_charges(merged["transactions"], merged["accounts"])
    for name in TABLES:
        merged[name] = dedupe(name, merged[name])
    return merged
