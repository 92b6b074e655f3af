"""What happened, as the contract's tables: the simulator's events and work rows -> claims, 835s,
the ledger, appeals, activities and the `work` log.

Works on any batch of events (a whole history, or one arena day): every id is built from the
account and the event's sequence number, and every amount from the account's latent draw, so
batches built apart concatenate into the same tables. An appeal's outcome is known only when it is
decided: `decide_appeals` fills it in on the rows an earlier batch wrote.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.sources import chain as ch

CLAIM_SUFFIX = np.array(["-1", "-R", "-2"], dtype=object)
TIMELY_FILING_CARC = "29"


def ids(prefix: str, values, width: int = 8) -> np.ndarray:
    return (prefix + pd.Series(np.asarray(values), dtype="int64").astype(str).str.zfill(width)).to_numpy(dtype=object)


def _dates(start: pd.Timestamp, days) -> np.ndarray:
    return (start + pd.to_timedelta(np.asarray(days, dtype=np.int64), unit="D")).to_numpy()


def account_rows(P: dict, ix: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    """The `accounts` rows of accounts ix."""
    service = _dates(start, P["service_day"][ix])
    inpatient = P["encounter_type"][ix] == "inpatient"
    discharge = np.where(inpatient, _dates(start, P["service_day"][ix] + P["los"][ix]), np.datetime64("NaT"))
    return pd.DataFrame({
        "account_id": P["account_id"][ix], "patient_id": P["patient_id"][ix],
        "facility_id": np.where(P["encounter_type"][ix] == "professional", "F-CLINIC", "F-HOSP"),
        "encounter_type": P["encounter_type"][ix], "service_date": service,
        "discharge_date": pd.to_datetime(discharge), "primary_payer_id": P["payer_id"][ix],
        "patient_age": P["age"][ix].astype("int64"), "patient_state": P["patient_state"][ix],
        "total_charges": P["charges"][ix], "guarantor_id": P["guarantor_id"][ix],
    })


def _claim_rows(P: dict, ix, suffix, payer_id, sequence, frequency, dates, original=None) -> pd.DataFrame:
    return pd.DataFrame({
        "claim_id": P["claim_base"][ix] + suffix, "account_id": P["account_id"][ix], "payer_id": payer_id,
        "payer_sequence": sequence,
        "claim_type": np.where(P["encounter_type"][ix] == "professional", "professional", "institutional"),
        "frequency": frequency, "submitted_date": dates, "billed_amount": P["charges"][ix],
        "principal_dx": P["dx"][ix], "dx_version": 10, "original_claim_id": original,
    })


def _claim_lines(P: dict, claims: pd.DataFrame, ix: np.ndarray) -> pd.DataFrame:
    """The charge split across the account's 1-4 lines; the last line takes the rounding."""
    parts = []
    k = P["n_lines"][ix]
    for line in range(4):
        has = k > line
        share = np.where(line == k - 1, 1.0 - (k - 1) * np.floor(100 / k) / 100, np.floor(100 / k) / 100)
        charge = np.round(P["charges"][ix] * share, 2)
        parts.append(pd.DataFrame({
            "claim_id": claims["claim_id"].to_numpy()[has], "line_number": line + 1,
            "procedure_code": P["line_proc"][ix, line][has], "modifiers": P["line_mod"][ix, line][has],
            "units": 1.0, "line_charge": charge[has], "revenue_code": P["line_rev"][ix, line][has],
            "_acct": ix[has], "_last": (line == k - 1)[has],
        }))
    lines = pd.concat(parts, ignore_index=True)
    total = lines.groupby("claim_id")["line_charge"].transform("sum")
    last = lines["_last"].to_numpy()
    fix = P["charges"][lines["_acct"].to_numpy()] - total.to_numpy()
    lines.loc[last, "line_charge"] = np.round(lines.loc[last, "line_charge"].to_numpy() + fix[last], 2)
    return lines.drop(columns=["_acct", "_last"])


def _remits(P: dict, sel: pd.DataFrame, suffix, status, paid, pt, tag: str, start) -> pd.DataFrame:
    ix = sel["acct"].to_numpy()
    rid = ids("R", P["gid"][ix]) + "-" + sel["seq"].astype(str).to_numpy() + tag
    return pd.DataFrame({
        "remit_id": rid, "claim_id": P["claim_base"][ix] + suffix, "received_date": _dates(start, sel["day"]),
        "claim_status": status, "paid_amount": paid, "patient_responsibility": pt, "payer_claim_number": "PCN" + rid,
    })


def _paid_adjustments(P: dict, remits: pd.DataFrame, ix: np.ndarray) -> pd.DataFrame:
    """CO-45 down to the allowed amount; the patient's share as PR-3 copay, PR-1 deductible, PR-2 coinsurance."""
    rid = remits["remit_id"].to_numpy()
    pt = P["pt_resp"][ix]
    copay = np.round(np.minimum(pt, P["copay"][ix]), 2)
    ded = np.round(np.minimum(pt - copay, 250.0), 2)
    coins = np.round(pt - copay - ded, 2)
    parts = [pd.DataFrame({"remit_id": rid, "line_number": pd.NA, "group_code": "CO", "reason_code": "45",
                           "amount": np.round(P["charges"][ix] - P["allowed"][ix], 2), "remark_codes": None})]
    for code, amt in (("3", copay), ("1", ded), ("2", coins)):
        m = amt > 0
        parts.append(pd.DataFrame({"remit_id": rid[m], "line_number": pd.NA, "group_code": "PR", "reason_code": code,
                                   "amount": amt[m], "remark_codes": None}))
    return pd.concat(parts, ignore_index=True)


def _denial_adjustments(P: dict, remits: pd.DataFrame, ix: np.ndarray, carc=None) -> pd.DataFrame:
    """The CAS of a denied remit: the claim's cause as CARC (and its remark) for the whole charge."""
    timely = carc == TIMELY_FILING_CARC
    return pd.DataFrame({
        "remit_id": remits["remit_id"].to_numpy(), "line_number": pd.NA,
        "group_code": "CO" if timely else P["carc_group"][ix], "reason_code": carc or P["carc_code"][ix],
        "amount": P["charges"][ix], "remark_codes": None if timely else P["carc_remark"][ix],
    })


def build_tables(P: dict, ev: pd.DataFrame, wk: pd.DataFrame, start: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The contract rows of a batch of events and work rows (payers excepted)."""
    ev = ev.sort_values(["acct", "seq"], kind="stable").reset_index(drop=True)

    def of(*kinds, from_states=None) -> pd.DataFrame:
        m = ev["kind"].isin(kinds)
        if from_states is not None:
            m &= ev["from_state"].isin(from_states)
        return ev[m]

    def ax(sel: pd.DataFrame) -> np.ndarray:
        return sel["acct"].to_numpy()

    suffix = lambda sel: CLAIM_SUFFIX[sel["claim"].to_numpy()]  # noqa: E731
    charge = of(ch.EV_CHARGE)
    accounts = account_rows(P, ax(charge), start)

    # ---- claims: the original, a resubmission of a lost claim, a corrected claim, the secondary claim
    sub, rs, co = of(ch.EV_SUBMIT, ch.EV_REJECT), of(ch.EV_RESUBMIT), of(ch.EV_CORRECT)
    primary_paid = of(ch.EV_PAID, ch.EV_OVERTURN)
    sec = primary_paid[P["has_sec"][ax(primary_paid)]]
    claims = [
        (_claim_rows(P, ax(sub), "-1", P["payer_id"][ax(sub)], 1, "original", _dates(start, sub["day"])), ax(sub)),
        (_claim_rows(P, ax(rs), "-R", P["payer_id"][ax(rs)], 1, "original", _dates(start, rs["day"])), ax(rs)),
        (_claim_rows(P, ax(co), "-2", P["payer_id"][ax(co)], 1, "corrected", _dates(start, co["day"]),
                     P["claim_base"][ax(co)] + suffix(co)), ax(co)),
        (_claim_rows(P, ax(sec), "-S", P["sec_payer_id"][ax(sec)], 2, "original", _dates(start, sec["day"])), ax(sec)),
    ]
    claims_df = pd.concat([c for c, _ in claims], ignore_index=True)
    lines = _claim_lines(P, claims_df, np.concatenate([i for _, i in claims]))

    # ---- remittances and their adjustments
    remits, adjs = [], []
    paid = of(ch.EV_PAID, ch.EV_OVERTURN)
    r = _remits(P, paid, suffix(paid), "processed_primary", P["a1"][ax(paid)], P["pt_resp"][ax(paid)], "", start)
    remits.append(r)
    adjs.append(_paid_adjustments(P, r, ax(paid)))
    denied = pd.concat([of(ch.EV_DENY), of(ch.EV_UPHELD, from_states=[ch.CORR_2])])
    r = _remits(P, denied, suffix(denied), "denied", 0.0, 0.0, "", start)
    remits.append(r)
    adjs.append(_denial_adjustments(P, r, ax(denied)))
    tf = of(ch.EV_TF_DENY)
    r = _remits(P, tf, suffix(tf), "denied", 0.0, 0.0, "", start)
    remits.append(r)
    adjs.append(_denial_adjustments(P, r, ax(tf), TIMELY_FILING_CARC))
    pend = of(ch.EV_PEND)
    remits.append(_remits(P, pend, suffix(pend), "pended", 0.0, 0.0, "", start))
    sp = of(ch.EV_SEC_PAID)
    spx = ax(sp)
    r = _remits(P, sp, "-S", "processed_secondary", P["a2"][spx], P["pt_rem"][spx], "", start)
    remits.append(r)
    oa23 = np.round(P["charges"][spx] - P["a2"][spx] - P["pt_rem"][spx], 2)
    adjs.append(pd.DataFrame({"remit_id": r["remit_id"].to_numpy(), "line_number": pd.NA, "group_code": "OA",
                              "reason_code": "23", "amount": oa23, "remark_codes": None}))
    # reversal pairs: the payer takes back its primary payment and pays it again under a new number
    rv = of(ch.EV_REVERSAL)
    rvx = ax(rv)
    remits.append(_remits(P, rv, suffix(rv), "reversal", -P["a1"][rvx], -P["pt_resp"][rvx], "r", start))
    r = _remits(P, rv, suffix(rv), "processed_primary", P["a1"][rvx], P["pt_resp"][rvx], "c", start)
    remits.append(r)
    adjs.append(_paid_adjustments(P, r, rvx))
    remits_df = pd.concat(remits, ignore_index=True)
    adjs_df = pd.concat(adjs, ignore_index=True)
    adjs_df = adjs_df[adjs_df["amount"] != 0].reset_index(drop=True)
    adjs_df["line_number"] = adjs_df["line_number"].astype("Int64")

    # ---- appeals (outcomes filled in when decided)
    ap = of(ch.EV_APPEAL)
    appeals = pd.DataFrame({
        "appeal_id": ids("AP", P["gid"][ax(ap)]) + "-1", "claim_id": P["claim_base"][ax(ap)] + suffix(ap), "level": 1,
        "submitted_date": _dates(start, ap["day"]), "outcome": None, "decision_date": pd.NaT,
        "recovered_amount": np.nan,
    })
    appeals = decide_appeals(P, appeals, ev, start)

    # ---- the ledger
    tx = []

    def txn(sel: pd.DataFrame, ttype, amount, payer=None, tag=""):
        tx.append(pd.DataFrame({
            "txn_id": ids("T", P["gid"][ax(sel)]) + "-" + sel["seq"].astype(str).to_numpy() + tag,
            "account_id": P["account_id"][ax(sel)], "posted_date": _dates(start, sel["day"]), "txn_type": ttype,
            "amount": np.round(np.asarray(amount, dtype=np.float64), 2), "payer_id": payer,
        }))

    chx = ax(charge)
    txn(charge, "charge", P["charges"][chx])
    spm = P["selfpay"][chx]
    txn(charge[spm], "administrative_adjustment", P["selfpay_discount"][chx[spm]], tag="d")
    px = ax(paid)
    txn(paid, "contractual_adjustment", P["charges"][px] - P["allowed"][px], P["payer_id"][px], tag="k")
    txn(paid, "insurance_payment", P["a1"][px], P["payer_id"][px])
    txn(rv, "payment_reversal", P["a1"][rvx], P["payer_id"][rvx], tag="r")
    txn(rv, "insurance_payment", P["a1"][rvx], P["payer_id"][rvx], tag="c")
    txn(sp, "insurance_payment", P["a2"][spx], P["sec_payer_id"][spx])
    pp = of(ch.EV_PAT_PAY)
    txn(pp, "patient_payment", P["pt_rem"][ax(pp)])
    ins = of(ch.EV_INSTALLMENT)
    txn(ins, "patient_payment", ins["amount"].to_numpy())
    closing = of(ch.EV_WRITEOFF, ch.EV_PLAN_DEFAULT, ch.EV_CHARITY, ch.EV_BK_WO, ch.EV_AGENCY)
    if len(closing):
        bal = np.zeros(len(closing))
        fs = closing["from_state"].to_numpy()
        for s in np.unique(fs):
            m = fs == s
            bal[m] = ch.balance(P, int(s), ax(closing)[m])
        kind = closing["kind"].to_numpy()
        patient_side = fs >= ch.PAT_FIRST
        ttype = np.select(
            [kind == ch.EV_CHARITY, (kind == ch.EV_WRITEOFF) & ~patient_side, (kind == ch.EV_WRITEOFF) & (bal < 10)],
            ["charity_adjustment", "denial_writeoff", "administrative_adjustment"], "bad_debt_writeoff")
        txn(closing, ttype, bal, tag="w")
    txns = pd.concat(tx, ignore_index=True)
    txns = txns[txns["amount"] > 0].reset_index(drop=True)

    # ---- activities
    act_map = {ch.EV_STATEMENT: "statement", ch.EV_CALL_ATTEMPT: "call_attempt", ch.EV_CALL_CONTACT: "call_contact",
               ch.EV_PLAN_START: "payment_plan_start", ch.EV_PLAN_DEFAULT: "payment_plan_default",
               ch.EV_FA_APP: "financial_assistance_application", ch.EV_BANKRUPTCY: "bankruptcy_notice",
               ch.EV_AGENCY: "agency_placement", ch.EV_LETTER: "letter"}
    acts = of(*act_map)
    activities = pd.DataFrame({
        "activity_id": ids("AC", P["gid"][ax(acts)]) + "-" + acts["seq"].astype(str).to_numpy(),
        "account_id": P["account_id"][ax(acts)], "activity_date": _dates(start, acts["day"]),
        "activity_type": acts["kind"].map(act_map).to_numpy(),
    })
    return {"accounts": accounts, "claims": claims_df, "claim_lines": lines, "remittances": remits_df,
            "adjustments": adjs_df, "transactions": txns, "appeals": appeals, "activities": activities,
            "claim_acks": _claim_acks(P, of(ch.EV_SUBMIT, ch.EV_REJECT, ch.EV_RESUBMIT), start),
            "work": work_rows(P, wk, start)}


def _claim_acks(P: dict, sent: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """The payer's 277CA for every claim sent: accepted into adjudication (A2:20; a claim the payer
    later loses was accepted too), or rejected at the front door (A7:21, missing or invalid data)."""
    kind = sent["kind"].to_numpy()
    rejected = kind == ch.EV_REJECT
    suffix = np.where(kind == ch.EV_RESUBMIT, "-R", "-1").astype(object)
    ix = sent["acct"].to_numpy()
    return pd.DataFrame({
        "ack_id": ids("K", P["gid"][ix]) + "-" + sent["seq"].astype(str).to_numpy(),
        "claim_id": P["claim_base"][ix] + suffix, "received_date": _dates(start, sent["day"]), "source": "277CA",
        "status": np.where(rejected, "rejected", "accepted"), "category_code": np.where(rejected, "A7", "A2"),
        "status_code": np.where(rejected, "21", "20"),
    })


def decide_appeals(P: dict, appeals: pd.DataFrame, ev: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """Fill in the outcome, decision date and recovered amount of the appeals decided in `ev`."""
    dec = ev[ev["kind"].isin([ch.EV_OVERTURN, ch.EV_UPHELD]) & (ev["from_state"] == ch.APPEAL_2)]
    if not len(dec) or not len(appeals):
        return appeals
    dix = dec["acct"].to_numpy()
    key = pd.Series(np.arange(len(dec)), index=ids("AP", P["gid"][dix]) + "-1")
    row = appeals["appeal_id"].map(key)
    hit = row.notna().to_numpy()
    if not hit.any():
        return appeals
    out = appeals.copy()
    r = row[hit].astype(np.int64).to_numpy()
    over = dec["kind"].to_numpy()[r] == ch.EV_OVERTURN
    out.loc[hit, "outcome"] = np.where(over, "overturned", "upheld")
    out.loc[hit, "decision_date"] = _dates(start, dec["day"].to_numpy()[r])
    out.loc[hit, "recovered_amount"] = np.where(over, P["a1"][dix[r]], np.nan)
    return out


def work_rows(P: dict, wk: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """The `work` log: what was done, when, in how many minutes, and with what probability."""
    wx = wk["acct"].to_numpy()
    action = wk["action"].to_numpy(dtype=np.int64)
    on_claim = np.isin(action, ch.CLAIM_ACTIONS)
    claim = np.where(on_claim, P["claim_base"][wx] + CLAIM_SUFFIX[wk["claim"].to_numpy(dtype=np.int64)], None)
    return pd.DataFrame({
        "work_id": ids("W", P["gid"][wx]) + "-" + wk["seq"].astype(str).to_numpy(),
        "account_id": P["account_id"][wx], "claim_id": claim, "worked_date": _dates(start, wk["day"]),
        "action": np.array(ch.ACTIONS, dtype=object)[action],
        "minutes": wk["minutes"].to_numpy(dtype=np.float64), "propensity": wk["propensity"].to_numpy(dtype=np.float64),
        "is_exploration": wk["is_exploration"].to_numpy(dtype=np.int64), "run_id": None, "suggested_action": None,
        "collector": wk["collector"].to_numpy(dtype=object),
    })
