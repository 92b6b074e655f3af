"""The denial block: one row per denial open at T (the latest of its claim family, not paid, written
off or voided), the features of `denial_feature_names()`, and whether it was worked and overturned
within the overturn horizon where the data has the future."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import (
    CARC_GROUP_NAMES,
    DEFAULT_HORIZONS,
    DENIAL_LABELS,
    PROC_FAMILIES,
    Horizons,
    denial_feature_names,
)
from features.contract import CLAIM_FREQUENCIES, Dataset
from features.dates import DAY_KEY, day_number, parse_as_of_dates
from features.snapshot.arrays import days_since, feature_table, take
from features.snapshot.history import History
from features.snapshot.stats import RateLookup, rates_at

DENIAL_KEYS = ["claim_id", "account_id"]
DENIAL_FEATURE_COLUMNS = ["denial_date", *denial_feature_names()]


def denial_block(p: History, t: pd.Timestamp, lk: RateLookup, h2: int, with_labels: bool) -> dict[str, np.ndarray]:
    """The denial features (and labels, with `with_labels`: overturn horizon `h2` days) of the denials
    open at `t`, as NumPy columns."""
    T = day_number(t)
    dk = p.known_denials(T)
    open_ = p.open_denials(T, dk)
    # the account must not be written off to bad debt (denial write-offs are in d_close_day)
    rows = np.flatnonzero(open_)
    rows = rows[np.lexsort((p.d_day[rows], p.c_ids[p.d_claim[rows]].astype(str)))] if len(rows) else rows
    claim = p.d_claim[rows]
    acct = p.d_acct[rows]
    payer = p.c_payer[claim]
    f: dict[str, np.ndarray] = {
        "claim_id": p.c_ids[claim],
        "account_id": p.acct_ids[acct],
        "denial_date": p.denial_dates(rows),
    }
    f["carc"] = p.denial_carcs(rows)
    grp = p.d_group[rows]
    f["carc_group"] = np.array(CARC_GROUP_NAMES, dtype=object)[grp]
    f["rarc_present"] = p.d_rarc[rows].astype(np.float64)
    f["payer_id"] = take(p.pay_ids, payer, "unknown")
    f["financial_class"] = take(p.pay_class, payer, "other")
    f["encounter_type"] = p.enc[acct]
    f["claim_frequency"] = take(np.array(CLAIM_FREQUENCIES, dtype=object), p.c_freq[claim], "original")
    fam_i = p.c_proc[claim]
    f["proc_family"] = np.array(PROC_FAMILIES, dtype=object)[fam_i]
    f["payer_sequence"] = p.c_seq[claim].astype(np.float64)
    f["partial_denial"] = p.d_partial[rows].astype(np.float64)
    f["billed"] = p.c_billed[claim]
    f["denied_amount"] = p.d_amount[rows]
    since = (T - p.d_day[rows]).astype(np.float64)
    f["days_since_denial"] = since
    f["days_since_service"] = days_since(T, p.acct_day[acct])
    # latest appeal level on the family after the denial, known by T
    fam = p.c_fam[claim]
    ak = (p.a_day <= T) & (p.a_fam >= 0)
    lvl = np.zeros(len(rows))
    if ak.any() and len(rows):
        a_key = p.a_fam[ak] * DAY_KEY + p.a_day[ak]
        order = np.argsort(a_key, kind="stable")
        a_key, a_lvl = a_key[order], p.a_level[ak][order]
        hi = np.searchsorted(a_key, fam * DAY_KEY + T, side="right") - 1  # the last appeal ≤ T of the family
        okk = hi >= 0
        hit = a_key[np.maximum(hi, 0)]
        okk &= (hit // DAY_KEY == fam) & (hit % DAY_KEY >= p.d_day[rows])
        lvl = np.where(okk, a_lvl[np.maximum(hi, 0)], 0).astype(np.float64)
    f["appeal_level"] = lvl
    f["already_worked"] = (p.d_worked_day[rows] <= T).astype(np.float64)
    awd = np.where(payer >= 0, p.awd[np.maximum(payer, 0)] if len(p.awd) else np.nan, np.nan)
    f["appeal_deadline_days_left"] = awd - since
    tfd = np.where(payer >= 0, p.tfd[np.maximum(payer, 0)] if len(p.tfd) else np.nan, np.nan)
    f["timely_filing_days_left"] = tfd - f["days_since_service"]
    # denials of the same account before this one (known by T)
    da_all = p.d_acct[dk]
    key_all = np.sort(da_all * DAY_KEY + p.d_day[dk])
    f["n_prior_denials"] = (
        np.searchsorted(key_all, acct * DAY_KEY + p.d_day[rows], side="left")
        - np.searchsorted(key_all, acct * DAY_KEY, side="left")
    ).astype(np.float64)
    pc = np.where(payer >= 0, payer, len(p.pay_ids))
    f["payer_denial_rate"] = lk.payer["denial_rate"][pc]
    f["payer_overturn_rate"] = lk.payer["overturn_rate"][pc]
    f["payer_group_overturn_rate"] = lk.pg_over[pc, grp]
    f["proc_family_overturn_rate"] = lk.fam["overturn_rate"][fam_i]
    f["payer_paid_to_billed"] = lk.payer["paid_to_billed"][pc]
    f["payer_days_to_pay"] = lk.payer["days_to_pay"][pc]
    kw = np.array([lk.carc.get(c, (0.0, 0.0, np.nan, np.nan)) for c in f["carc"].tolist()], dtype=np.float64)
    kw = kw.reshape(len(rows), 4)
    f["carc_worked"] = kw[:, 0]
    f["carc_corrected_share"] = np.divide(kw[:, 1], kw[:, 0], out=np.full(len(rows), np.nan), where=kw[:, 0] > 0)
    f["carc_appeal_overturn_rate"] = kw[:, 2]
    f["carc_correct_overturn_rate"] = kw[:, 3]

    if with_labels:
        end = p.d_day[rows] + h2
        complete = end <= p.extract
        wd, pd_ = p.d_worked_day[rows], p.d_paid_day[rows]
        worked = np.where(wd <= np.minimum(end, p.extract), 1.0, np.where(complete, 0.0, np.nan))
        over = np.where(pd_ <= end, 1.0, 0.0)
        f["worked"] = worked
        f["label_overturn"] = np.where(complete & (worked == 1.0), over, np.nan)
    return f


def denial_features(
    ds: Dataset, as_of, stats: pd.DataFrame | None = None, horizons: Horizons = DEFAULT_HORIZONS,
    with_labels: bool = True,
) -> pd.DataFrame:
    """One row per open denial per as-of date (sorted by as_of, claim_id).

    Columns: `claim_id`, `account_id`, `as_of`, `denial_date`, the features of
    `denial_feature_names()` and, with `with_labels`, `worked` (an appeal or corrected/replacement
    claim followed within the overturn horizon; NaN while unknown) and `label_overturn` (1 when the
    claim family is paid within (denial_date, denial_date + horizon]; NaN when not worked or the
    window passes the extract date). The horizon is `horizons.overturn_horizon_days`; `stats` as in
    `account_features`."""
    p = History.from_dataset(ds)
    h2 = horizons.overturn_horizon_days
    blocks = [
        (t, denial_block(p, t, rates_at(p, t, stats, horizons), h2, with_labels)) for t in parse_as_of_dates(as_of)
    ]
    return feature_table(blocks, DENIAL_KEYS, DENIAL_FEATURE_COLUMNS, list(DENIAL_LABELS) if with_labels else [])
