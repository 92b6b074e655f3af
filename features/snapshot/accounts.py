"""The account block: one row per account open at T (ledger balance above zero, not written off to
bad debt, not placed with an agency), the features of `account_feature_names()`, and the payment
labels recovered(T, T+H] where the data has the future."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import (
    ACCOUNT_CONTEXT,
    ACCOUNT_LABELS,
    CARC_GROUP_NAMES,
    DEFAULT_HORIZONS,
    PROC_FAMILIES,
    WINDOWS,
    Horizons,
    account_feature_names,
    features_of,
)
from features.contract import CLAIM_STATUSES, TXN_TYPES, Dataset
from features.dates import NEVER, day_number, parse_as_of_dates
from features.snapshot.arrays import (
    count_by,
    days_since,
    feature_table,
    last_by,
    max_by,
    min_by,
    sum_by,
    take,
)
from features.snapshot.history import (
    ACK_CODE,
    ACTIVITY_CODE,
    FAMILY_CODE,
    FREQUENCY_CODE,
    STATUS_CODE,
    TXN_CODE,
    WORK_CODE,
    History,
)
from features.snapshot.stats import RateLookup, rates_at

_LEDGER_SIGN = np.array([1.0 if t in ("charge", "refund", "payment_reversal") else -1.0 for t in TXN_TYPES])
_RECOVER_SIGN = np.array(
    [
        1.0 if t in ("insurance_payment", "patient_payment") else -1.0 if t in ("payment_reversal", "refund") else 0.0
        for t in TXN_TYPES
    ]
)


def _windows(codes, day, T, n, mask, w=None) -> dict[int, np.ndarray]:
    out = {}
    for win in (7, *WINDOWS):  # 7: call attempts (the call limit rule)
        m = mask & (day > T - win) & (day <= T)
        out[win] = count_by(codes, n, m) if w is None else sum_by(codes, w, n, m)
    return out


def account_block(p: History, t: pd.Timestamp, lk: RateLookup, h: int, with_labels: bool) -> dict[str, np.ndarray]:
    """The account features (and labels, with `with_labels`: payment horizon `h` days) of the accounts
    open at `t`, as NumPy columns."""
    T, n = day_number(t), p.n
    # ledger
    tk = (p.t_day <= T) & (p.t_acct >= 0)
    ta, ty, amt = p.t_acct, p.t_type, p.t_amt
    sign = _LEDGER_SIGN[np.maximum(ty, 0)]
    balance = sum_by(ta, sign * amt, n, tk)
    is_t = {k: ty == i for k, i in TXN_CODE.items()}
    bad_debt = count_by(ta, n, tk & is_t["bad_debt_writeoff"]) > 0
    vk = (p.v_day <= T) & (p.v_acct >= 0)
    is_v = {k: p.v_type == i for k, i in ACTIVITY_CODE.items()}
    agency = count_by(p.v_acct, n, vk & is_v["agency_placement"]) > 0
    open_ = (p.acct_day <= T) & (balance > 0) & ~bad_debt & ~agency
    rows = np.flatnonzero(open_)

    def sel(a):  # per-account array -> open accounts only
        return a[rows]

    f: dict[str, np.ndarray] = {"account_id": p.acct_ids[rows], "guarantor_id": p.acct_guarantor[rows]}
    payer = p.acct_payer
    pclass = take(p.pay_class, payer, "self_pay")
    self_pay = (payer < 0) | (pclass == "self_pay")
    f["financial_class"] = sel(pclass)
    f["encounter_type"] = sel(p.enc)
    f["primary_payer_id"] = sel(take(p.pay_ids, payer, "self_pay"))
    f["patient_age"] = sel(p.age)
    f["total_charges"] = sel(p.charges)
    f["days_since_service"] = sel(days_since(T, p.acct_day))
    f["days_since_discharge"] = sel(days_since(T, p.disch_day))

    pay_t = tk & (is_t["insurance_payment"] | is_t["patient_payment"])
    pp_t = tk & is_t["patient_payment"]
    patient_paid = sum_by(ta, amt, n, pp_t)
    rec_w = _RECOVER_SIGN[np.maximum(ty, 0)] * amt
    # patient responsibility: PR of remits of the latest payer sequence reached (a secondary claim
    # takes over the primary's PR), less patient payments
    rk = (p.r_day <= T) & (p.r_acct >= 0)
    r_seq = p.c_seq[np.maximum(p.r_claim, 0)]
    top_seq = max_by(p.r_acct, r_seq, n, rk, fill=0)
    pr = sum_by(p.r_acct, p.r_pr, n, rk & (r_seq == top_seq[np.maximum(p.r_acct, 0)]))
    bal_pat = np.clip(pr - patient_paid, 0, np.maximum(balance, 0))
    bal_pat = np.where(self_pay, np.maximum(balance, 0), bal_pat)
    f["balance"] = sel(balance)
    f["balance_patient"] = sel(np.round(bal_pat, 2))
    f["balance_insurance"] = sel(np.round(balance - bal_pat, 2))
    f["charges_posted"] = sel(sum_by(ta, amt, n, tk & is_t["charge"]))
    f["insurance_paid"] = sel(sum_by(ta, amt, n, tk & is_t["insurance_payment"]))
    f["adjustments_total"] = sel(
        sum_by(
            ta,
            amt,
            n,
            tk & (is_t["contractual_adjustment"] | is_t["administrative_adjustment"] | is_t["charity_adjustment"]),
        )
    )
    f["days_since_last_payment"] = sel(days_since(T, max_by(ta, p.t_day, n, pay_t)))
    payw = _windows(ta, p.t_day, T, n, tk, rec_w)
    for w in WINDOWS:
        f[f"payments_{w}d"] = sel(payw[w])
    f["payments_trend_30d"] = sel(np.round(payw[30] - payw[365] * 30 / 365, 2))

    # claims
    ck = (p.c_day <= T) & (p.c_acct >= 0)
    ca = p.c_acct
    not_void = p.c_freq != FREQUENCY_CODE["void"]
    f["n_claims"] = sel(count_by(ca, n, ck))
    f["n_corrected_claims"] = sel(
        count_by(ca, n, ck & ((p.c_freq == FREQUENCY_CODE["corrected"]) | (p.c_freq == FREQUENCY_CODE["replacement"])))
    )
    f["has_secondary_claim"] = sel((count_by(ca, n, ck & (p.c_seq > 1)) > 0).astype(np.float64))
    f["billed_total"] = sel(sum_by(ca, np.nan_to_num(p.c_billed), n, ck & not_void))
    f["days_since_last_claim"] = sel(days_since(T, max_by(ca, p.c_day, n, ck)))
    top_line = last_by(ca, n, ck, p.c_day, np.nan_to_num(p.c_billed))  # the largest claim's family
    acct_fam = np.where(top_line >= 0, p.c_proc[np.maximum(top_line, 0)] if len(p.c_proc) else 0,
                        FAMILY_CODE["unknown"])
    f["proc_family"] = sel(np.array(PROC_FAMILIES, dtype=object)[acct_fam])
    primary_filed = count_by(ca, n, ck & (p.c_payer == payer[np.maximum(ca, 0)]) & (p.c_seq == 1)) > 0

    # remittances
    ra = p.r_acct
    f["n_remits"] = sel(count_by(ra, n, rk))
    f["remit_paid"] = sel(sum_by(ra, np.nan_to_num(p.r_paid), n, rk))
    last_r = last_by(ra, n, rk, p.r_status, p.r_day)
    f["last_remit_status"] = sel(
        take(
            np.array(CLAIM_STATUSES, dtype=object),
            np.where(last_r >= 0, p.r_status[np.maximum(last_r, 0)] if len(p.r_status) else -1, -1),
            "none",
        )
    )
    answered = count_by(p.r_claim, len(p.c_ids), rk & (p.r_claim >= 0)) > 0
    waiting = ck & not_void & ~answered
    f["pending_adjudication"] = sel((count_by(ca, n, waiting) > 0).astype(np.float64))
    f["days_claim_waiting"] = sel(days_since(T, min_by(ca, p.c_day, n, waiting)))

    # claim status: front-door rejections not fixed, pends not answered, the payer's filing clock
    nc = len(p.c_ids)
    kk = (p.k_day <= T) & (p.k_claim >= 0)
    last_k = last_by(p.k_claim, nc, kk, p.k_status == ACK_CODE["rejected"], p.k_day)  # a same-day reject wins
    rej_day = np.where(last_k >= 0, p.k_day[np.maximum(last_k, 0)] if len(p.k_day) else NEVER, NEVER)
    rejected = (last_k >= 0) & (np.where(last_k >= 0, p.k_status[np.maximum(last_k, 0)] if len(p.k_status) else -1,
                                         -1) == ACK_CODE["rejected"])
    rejected &= ~answered  # a remittance answers the claim after all
    # a later claim on the account (a resubmission or a corrected claim) fixes the rejection
    latest_claim_day = max_by(ca, p.c_day, n, ck)
    rejected &= latest_claim_day[np.maximum(ca, 0)] <= rej_day
    rej_acct = max_by(ca, rej_day, n, ck & rejected)
    f["claim_rejected_open"] = sel((rej_acct > -NEVER).astype(np.float64))
    f["days_since_rejection"] = sel(days_since(T, rej_acct))
    last_rc = last_by(p.r_claim, nc, rk & (p.r_claim >= 0), p.r_day)
    pended = (last_rc >= 0) & (np.where(last_rc >= 0, p.r_status[np.maximum(last_rc, 0)] if len(p.r_status) else -1,
                                        -1) == STATUS_CODE["pended"])
    pend_day = np.where(pended, p.r_day[np.maximum(last_rc, 0)] if len(p.r_day) else NEVER, NEVER)
    pend_acct = max_by(ca, pend_day, n, ck & pended)
    f["claim_pended_open"] = sel((pend_acct > -NEVER).astype(np.float64))
    f["days_pended"] = sel(days_since(T, pend_acct))
    tfd = np.where(payer >= 0, p.tfd[np.maximum(payer, 0)] if len(p.tfd) else np.nan, np.nan)
    tf_left = tfd - (T - p.acct_day)
    f["filing_days_left"] = sel(tf_left)
    wk = (p.w_day <= T) & (p.w_acct >= 0) & (p.w_action == WORK_CODE["status_call"])
    f["status_calls_30d"] = sel(count_by(p.w_acct, n, wk & (p.w_day > T - 30)))
    f["days_since_status_call"] = sel(days_since(T, max_by(p.w_acct, p.w_day, n, wk)))
    offers = (p.w_day <= T) & (p.w_acct >= 0) & (p.w_action == WORK_CODE["payment_plan_offer"])
    f["days_since_plan_offer"] = sel(days_since(T, max_by(p.w_acct, p.w_day, n, offers)))

    # denials
    dk = p.known_denials(T)
    da = p.d_acct
    d_open = p.open_denials(T, dk)
    f["n_denials"] = sel(count_by(da, n, dk))
    any_open = count_by(da, n, d_open) > 0
    f["open_denial"] = sel(any_open.astype(np.float64))
    f["open_denied_amount"] = sel(sum_by(da, p.d_amount, n, d_open))
    last_d = last_by(da, n, dk, p.d_carc_rank, p.d_day)
    f["last_denial_carc"] = sel(take(p.d_carc, last_d, "none"))
    last_group = np.where(last_d >= 0, p.d_group[np.maximum(last_d, 0)] if len(p.d_group) else 0, -1)
    f["last_denial_group"] = sel(take(np.array(CARC_GROUP_NAMES, dtype=object), last_group, "none"))
    d_payer = p.c_payer[p.d_claim] if len(p.d_claim) else np.zeros(0, np.int64)
    d_awd = np.where(d_payer >= 0, p.awd[np.maximum(d_payer, 0)] if len(p.awd) else np.nan, np.nan)
    d_left = d_awd - (T - p.d_day)
    deadline = np.full(n, np.nan)
    m = d_open & ~np.isnan(d_left)
    if m.any():
        dl = np.full(n, np.inf)
        np.minimum.at(dl, da[m], d_left[m])
        deadline = np.where(np.isinf(dl), np.nan, dl)
    f["appeal_deadline_days_left"] = sel(deadline)
    f["timely_filing_days_left"] = sel(np.where(~primary_filed | any_open, tf_left, np.nan))

    # appeals
    ak = (p.a_day <= T) & (p.a_acct >= 0)
    decided = p.a_dec_day <= T
    f["n_appeals"] = sel(count_by(p.a_acct, n, ak))
    f["pending_appeal"] = sel((count_by(p.a_acct, n, ak & ~decided) > 0).astype(np.float64))
    f["n_overturned"] = sel(count_by(p.a_acct, n, ak & decided & p.a_over))

    # patient payments
    f["n_patient_payments"] = sel(count_by(ta, n, pp_t))
    f["patient_paid"] = sel(patient_paid)
    last_pp = max_by(ta, p.t_day, n, pp_t)
    f["days_since_last_patient_payment"] = sel(days_since(T, last_pp))
    ppw = _windows(ta, p.t_day, T, n, pp_t, amt)
    for w in WINDOWS:
        f[f"patient_payments_{w}d"] = sel(ppw[w])

    # activities
    va, vd = p.v_acct, p.v_day
    st = _windows(va, vd, T, n, vk & is_v["statement"])
    ca_w = _windows(va, vd, T, n, vk & is_v["call_attempt"])
    co = _windows(va, vd, T, n, vk & (is_v["call_contact"] | is_v["portal_message"] | is_v["letter"]))
    for w in WINDOWS:
        f[f"statements_{w}d"] = sel(st[w])
    for w in WINDOWS:
        f[f"call_attempts_{w}d"] = sel(ca_w[w])
    for w in WINDOWS:
        f[f"contacts_{w}d"] = sel(co[w])
    touch30, touch365 = co[30] + ca_w[30], co[365] + ca_w[365]
    f["contacts_trend_30d"] = sel(touch30 - touch365 * 30 / 365)
    f["call_attempts_7d"] = sel(ca_w[7])
    f["days_since_first_statement"] = sel(days_since(T, min_by(va, vd, n, vk & is_v["statement"])))
    f["days_since_last_statement"] = sel(days_since(T, max_by(va, vd, n, vk & is_v["statement"])))
    touch = vk & (is_v["statement"] | is_v["call_contact"] | is_v["letter"] | is_v["portal_message"])
    f["days_since_last_contact"] = sel(days_since(T, max_by(va, vd, n, touch)))
    f["n_letters"] = sel(count_by(va, n, vk & is_v["letter"]))  # dunning letters mark the collection stage
    last_start = max_by(va, vd, n, vk & is_v["payment_plan_start"])
    last_default = max_by(va, vd, n, vk & is_v["payment_plan_default"])
    active = (last_start > -NEVER) & (last_start > last_default)
    f["plan_active"] = sel(active.astype(np.float64))
    f["plan_defaulted"] = sel(((last_default > -NEVER) & (last_default >= last_start)).astype(np.float64))
    recent = (T - np.maximum(last_pp, last_start)) <= 60
    f["plan_in_good_standing"] = sel((active & recent).astype(np.float64))
    f["dispute_recent"] = sel((count_by(va, n, vk & is_v["dispute"] & (vd > T - 90)) > 0).astype(np.float64))
    last_fa = max_by(va, vd, n, vk & is_v["financial_assistance_application"])
    last_charity = max_by(ta, p.t_day, n, tk & is_t["charity_adjustment"])
    fa = (last_fa > -NEVER) & (last_fa > T - 365) & (last_charity < last_fa)
    f["fa_pending"] = sel(fa.astype(np.float64))
    f["in_bankruptcy"] = sel((count_by(va, n, vk & is_v["bankruptcy_notice"]) > 0).astype(np.float64))
    f["n_promises_90d"] = sel(count_by(va, n, vk & is_v["promise_to_pay"] & (vd > T - 90)))

    f.update(_guarantor_features(p, T, open_, bad_debt | agency, bal_pat, patient_paid, rows, {
        "known": p.acct_day <= T,
        "bad_debt_amount": sum_by(ta, amt, n, tk & is_t["bad_debt_writeoff"]),
        "first_statement": min_by(va, vd, n, vk & is_v["statement"]),
        "pp_mask": pp_t,
        "patient_payments_365d": count_by(ta, n, pp_t & (p.t_day > T - 365)),
        "last_patient_payment": last_pp,
        "plans_started": count_by(va, n, vk & is_v["payment_plan_start"]),
        "plans_defaulted": count_by(va, n, vk & is_v["payment_plan_default"]),
        "calls_7d": ca_w[7], "calls_30d": ca_w[30], "contacts_30d": co[30] + st[30],
        "last_contact": max_by(va, vd, n, touch),
    }))

    # pooled rates (payer code npay = unknown/self-pay -> global values)
    pc = np.where(payer >= 0, payer, len(p.pay_ids))[rows]
    f["payer_denial_rate"] = lk.payer["denial_rate"][pc]
    f["payer_overturn_rate"] = lk.payer["overturn_rate"][pc]
    grp = sel(last_group)
    f["payer_group_overturn_rate"] = np.where(
        grp >= 0, lk.pg_over[pc, np.maximum(grp, 0)], lk.payer["overturn_rate"][pc]
    )
    f["payer_paid_to_billed"] = lk.payer["paid_to_billed"][pc]
    f["payer_days_to_pay"] = lk.payer["days_to_pay"][pc]
    f["proc_family_denial_rate"] = lk.fam["denial_rate"][sel(acct_fam)]

    if with_labels:
        fut = (p.t_day > T) & (p.t_day <= T + h) & (ta >= 0)
        rec = sel(sum_by(ta, rec_w, n, fut))
        known = T + h <= p.extract
        f["label_recovered"] = rec if known else np.full(len(rows), np.nan)
        f["label_paid"] = (rec > 0).astype(np.float64) if known else np.full(len(rows), np.nan)
    return f


def _guarantor_features(p: History, T: int, open_: np.ndarray, gone: np.ndarray, bal_pat: np.ndarray,
                        patient_paid: np.ndarray, rows: np.ndarray, acct: dict[str, np.ndarray]
                        ) -> dict[str, np.ndarray]:
    """The guarantor view (`features.catalogue.GUARANTOR_VIEWS`) of the open accounts `rows`, from
    per-account arrays at T over every account of the history: sums over the guarantor's accounts, less
    the account's own where the feature is about the person's *other* accounts. `gone`: written off to
    bad debt or placed with an agency."""
    if not len(rows):
        return {f.name: np.zeros(0) for f in features_of("guarantor")}
    n, g = p.n, p.acct_gcode
    ng = int(g.max()) + 1
    known = acct["known"]

    def total(x: np.ndarray) -> np.ndarray:  # per account: the sum over its guarantor's known accounts
        sums = np.bincount(g, weights=np.where(known, x, 0).astype(np.float64), minlength=ng)
        return sums.astype(np.float64)[g]  # (an empty bincount is int64, even with weights)

    def others(x: np.ndarray) -> np.ndarray:
        return (total(x) - np.where(known, x, 0))[rows]

    def share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
        a, b = others(part), others(whole)
        return np.divide(a, b, out=np.full(len(rows), np.nan), where=b > 0)

    closed = known & ~open_
    owed = (patient_paid > 0) | (bal_pat > 0) | gone  # the patient had a balance to pay
    paid_off = (patient_paid > 0) & (bal_pat <= 0) & ~gone & ~open_
    f = {
        "guarantor_prior_accounts": others(np.ones(n)),
        "guarantor_closed_accounts": others(closed.astype(np.float64)),
        "guarantor_paid_in_full_share": share(paid_off.astype(np.float64), owed.astype(np.float64)),
        "guarantor_patient_paid_share": share(np.round(patient_paid, 2),
                                              np.round(patient_paid + bal_pat + acct["bad_debt_amount"], 2)),
    }
    # days from the first statement to the first patient payment after it, per account, then the
    # median over the guarantor's other accounts (all of an account's own history is known by T)
    first_st = acct["first_statement"]
    after = acct["pp_mask"] & (p.t_day >= first_st[np.maximum(p.t_acct, 0)])
    first_pay = min_by(p.t_acct, p.t_day, n, after)
    has = known & (first_pay < NEVER) & (first_st < NEVER)
    f["guarantor_median_days_to_pay"] = _median_of_others(g, has, (first_pay - first_st).astype(np.float64), rows)
    f["guarantor_patient_payments_365d"] = others(acct["patient_payments_365d"])
    # the latest patient payment on another account: the latest and second latest per guarantor, so
    # that an account's own payment can be left out
    pay = np.where(known, acct["last_patient_payment"], -NEVER)
    order = np.lexsort((pay, g))[::-1]  # by guarantor, latest first
    gs = order[np.r_[True, g[order][1:] != g[order][:-1]]]
    top = np.full(ng, -NEVER, dtype=np.int64)
    top[g[gs]] = pay[gs]
    rest = pay.copy()
    rest[gs] = -NEVER
    second = np.full(ng, -NEVER, dtype=np.int64)
    np.maximum.at(second, g, rest)
    other_last = np.where(pay[rows] == top[g[rows]], second[g[rows]], top[g[rows]])
    f["guarantor_days_since_last_payment"] = days_since(T, other_last).astype(np.float64)
    f["guarantor_plans_started"] = others(acct["plans_started"])
    f["guarantor_plans_defaulted"] = others(acct["plans_defaulted"])
    f["guarantor_agency_accounts"] = others((known & gone).astype(np.float64))
    f["guarantor_open_accounts"] = others(open_.astype(np.float64))
    f["guarantor_open_patient_balance"] = np.round(total(np.where(open_, bal_pat, 0.0))[rows], 2)
    f["guarantor_call_attempts_7d"] = total(acct["calls_7d"])[rows]
    f["guarantor_call_attempts_30d"] = total(acct["calls_30d"])[rows]
    f["guarantor_contacts_30d"] = total(acct["contacts_30d"])[rows]
    last = np.full(ng, -NEVER, dtype=np.int64)
    np.maximum.at(last, g, acct["last_contact"])
    f["guarantor_days_since_last_contact"] = days_since(T, last[g[rows]]).astype(np.float64)
    return f


def _median_of_others(g: np.ndarray, has: np.ndarray, value: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per row in `rows`: the median of `value` over the *other* accounts of its guarantor where `has`
    (NaN where there are none), vectorised: within each guarantor's sorted values, leaving one out
    shifts the middle positions past it by one."""
    out = np.full(len(rows), np.nan)
    if not has.any() or not len(rows):
        return out
    ng = int(g.max()) + 1
    idx = np.flatnonzero(has)
    order = idx[np.lexsort((value[idx], g[idx]))]  # by guarantor, then value
    vals = value[order]
    count = np.bincount(g[order], minlength=ng)
    start = np.r_[0, np.cumsum(count)[:-1]]
    pos = np.full(len(g), -1, dtype=np.int64)
    pos[order] = np.arange(len(order))
    gr = g[rows]
    s, own = start[gr], has[rows]
    k = count[gr] - own  # values of the other accounts
    j = np.where(own, pos[rows] - s, np.iinfo(np.int64).max)  # the row's own place (none: past the end)
    ok = k > 0
    lo, hi = (np.maximum(k - 1, 0) // 2), k // 2
    lo = np.where(lo < j, lo, lo + 1)
    hi = np.where(hi < j, hi, hi + 1)
    last = len(vals) - 1
    out[ok] = (vals[np.minimum(s + lo, last)][ok] + vals[np.minimum(s + hi, last)][ok]) / 2
    return out


def account_features(
    ds: Dataset, as_of, stats: pd.DataFrame | None = None, horizons: Horizons = DEFAULT_HORIZONS,
    with_labels: bool = True,
) -> pd.DataFrame:
    """One row per open account per as-of date (sorted by as_of, account_id).

    Columns: `account_id`, `as_of`, the features of `account_feature_names()` and, with
    `with_labels`, `label_paid` and `label_recovered` (NaN when as_of + `horizons.horizon_days` is
    after the extract date). `stats=None` computes the pooled statistics per as-of date from `ds`
    (with `horizons.overturn_horizon_days`, as training does); a stats table (from `pooled_stats`) is
    used for every date instead (scoring)."""
    p = History.from_dataset(ds)
    blocks = [
        (t, account_block(p, t, rates_at(p, t, stats, horizons), horizons.horizon_days, with_labels))
        for t in parse_as_of_dates(as_of)
    ]
    return feature_table(blocks, ["account_id"], [*account_feature_names(), *ACCOUNT_CONTEXT],
                         list(ACCOUNT_LABELS) if with_labels else [])
