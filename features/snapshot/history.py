"""Point-in-time snapshots: account features, denial features, labels and pooled statistics.

This is the one feature code path: training, the nightly batch and the HTTP API all call
`account_features` / `denial_features`. A snapshot (entity, as-of T) sees only rows whose event
time is on or before T (DESIGN.md, "Snapshots and labels"); a child row (claim line, adjustment)
takes its parent's time, and a row is never known before its parent (a remit before its claim).

How it is fast: every table is turned once into numpy arrays (integer account / claim / payer
codes, dates as integer days), then each as-of date is a handful of masked `np.bincount`s and
sorts. No Python loop per account; a loop over as-of dates only. Money sums are rounded to cents
so that the input row order cannot change a float's last bit.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.catalogue import (
    CARC_GROUP_NAMES,
    PROC_FAMILIES,
    account_feature_names,
    carc_group,
    denial_feature_names,
    proc_family,
    routine_carcs,
)
from features.contract import ACTIVITY_TYPES, CLAIM_FREQUENCIES, CLAIM_STATUSES, TXN_TYPES
from features.data import Dataset, latest_date

__all__ = ["account_features", "denial_features", "snapshot_features", "pooled_stats", "STATS_COLUMNS"]

NEVER = np.int64(1 << 40)  # the "day" of a date that is not known (null)
_OFF = 40_000  # days added to epoch days so that every real day is positive (keys below)
_BIG = np.int64(1 << 21)  # day multiplier in (key, day) composite sort keys
PRIOR_COUNT = 20.0  # pseudo-count pulling small cells of the stats table to the global rate

_TX = {t: i for i, t in enumerate(TXN_TYPES)}
_ACT = {t: i for i, t in enumerate(ACTIVITY_TYPES)}
_ST = {t: i for i, t in enumerate(CLAIM_STATUSES)}
_FREQ = {t: i for i, t in enumerate(CLAIM_FREQUENCIES)}
_PROCESSED = np.array([_ST["processed_primary"], _ST["processed_secondary"], _ST["processed_tertiary"]])
_LEDGER_SIGN = np.array([1.0 if t in ("charge", "refund", "payment_reversal") else -1.0 for t in TXN_TYPES])
_RECOVER_SIGN = np.array(
    [
        1.0 if t in ("insurance_payment", "patient_payment") else -1.0 if t in ("payment_reversal", "refund") else 0.0
        for t in TXN_TYPES
    ]
)
_GROUP_IDX = {g: i for i, g in enumerate(CARC_GROUP_NAMES)}
_FAM_IDX = {f: i for i, f in enumerate(PROC_FAMILIES)}

STATS_COLUMNS = [
    "as_of",
    "level",
    "payer_id",
    "carc_group",
    "proc_family",
    "n_claims",
    "n_denials",
    "n_worked",
    "denial_rate",
    "overturn_rate",
    "paid_to_billed",
    "days_to_pay",
]


# ------------------------------------------------------------------ small array helpers


# A table column is a pandas Series (DataFrame tables) or a NumPy array (`features.data.ColumnTable`,
# the API's one-request tables); these helpers turn either into the NumPy arrays the code works on.


def _obj(s) -> np.ndarray:
    return s.to_numpy(dtype=object) if isinstance(s, pd.Series) else np.asarray(s, dtype=object)


def _isin(s, choices: list[str]) -> np.ndarray:
    if isinstance(s, pd.Series):
        return s.isin(choices).to_numpy()
    wanted = set(choices)
    return np.fromiter((v in wanted for v in np.asarray(s, dtype=object).tolist()), dtype=bool, count=len(s))


def _notna(s) -> np.ndarray:
    return s.notna().to_numpy() if isinstance(s, pd.Series) else ~pd.isna(np.asarray(s))


def _text(s) -> np.ndarray:
    """Stripped text (missing stays missing)."""
    if isinstance(s, pd.Series):
        return s.astype(str).str.strip().to_numpy(dtype=object)
    return np.array([v.strip() if isinstance(v, str) else np.nan if v is None else str(v).strip()
                     for v in np.asarray(s, dtype=object).tolist()], dtype=object)


def _take_rows(table, rows: np.ndarray):
    return table.take(rows) if not isinstance(table, pd.DataFrame) else table.iloc[rows]


def _days(s) -> np.ndarray:
    v = s.to_numpy(dtype="datetime64[ns]") if isinstance(s, pd.Series) else np.asarray(s, dtype="datetime64[ns]")
    out = v.astype("datetime64[D]").astype(np.int64) + _OFF
    out[np.isnat(v)] = NEVER
    return out


def _day(t) -> int:
    return int(np.datetime64(pd.Timestamp(t).normalize(), "D").astype(np.int64)) + _OFF


_SMALL = 4096  # up to this many values, a dict lookup beats building pandas hash tables


class _Keys:
    """Ids -> integer codes (-1: unknown): a dict for the small inputs of one API request, Arrow's
    hash lookup for large ones (about 4x faster than a pandas object index here), with the id
    set converted once and reused by every table that refers to these ids."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._arrow = None
        self._dict: dict | None = None

    def codes(self, values: pd.Series) -> np.ndarray:
        vals = _obj(values)
        if len(self.ids) <= _SMALL and len(vals) <= _SMALL:
            if self._dict is None:
                self._dict = {k: i for i, k in enumerate(self.ids.tolist())}
            get = self._dict.get
            return np.fromiter((get(v, -1) for v in vals.tolist()), dtype=np.int64, count=len(vals))
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            if self._arrow is None:
                self._arrow = pa.array(self.ids, type=pa.string(), from_pandas=True)
            found = pc.index_in(pa.array(vals, type=pa.string(), from_pandas=True), value_set=self._arrow)
            return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # ids that are not strings: pandas' hash index
            index = pd.Index(self.ids, dtype=object)
            return index.get_indexer(pd.Index(vals, dtype=object)).astype(np.int64)


def _codes(keys: _Keys, values: pd.Series) -> np.ndarray:
    return keys.codes(values)


@functools.cache
def _enum_index(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(names), dtype=object)


def _enum(values: pd.Series, mapping: dict[str, int]) -> np.ndarray:
    vals = _obj(values)
    if len(vals) <= _SMALL:
        return np.fromiter((mapping.get(v, -1) for v in vals.tolist()), dtype=np.int64, count=len(vals))
    return _enum_index(tuple(mapping)).get_indexer(pd.Index(vals, dtype=object)).astype(np.int64)


def _num(s) -> np.ndarray:
    if isinstance(s, pd.Series):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(s, dtype=np.float64)  # ColumnTable numbers are float64 with NaN for missing


def _count(codes: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(codes if mask is None else codes[mask], minlength=n)


def _sum(codes: np.ndarray, w: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    if mask is not None:
        codes, w = codes[mask], w[mask]
    return np.round(np.bincount(codes, weights=w, minlength=n), 2)


def _max(codes: np.ndarray, v: np.ndarray, n: int, mask: np.ndarray, fill=-NEVER) -> np.ndarray:
    out = np.full(n, fill, dtype=np.int64)
    np.maximum.at(out, codes[mask], v[mask])
    return out


def _min(codes: np.ndarray, v: np.ndarray, n: int, mask: np.ndarray, fill=NEVER) -> np.ndarray:
    out = np.full(n, fill, dtype=np.int64)
    np.minimum.at(out, codes[mask], v[mask])
    return out


def _last(codes: np.ndarray, n: int, mask: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Row index of the last row per code by `keys` (the last key sorts first), -1 when none."""
    rows = np.flatnonzero(mask)
    out = np.full(n, -1, dtype=np.int64)
    if len(rows) == 0:
        return out
    order = rows[np.lexsort(tuple(k[rows] for k in keys) + (codes[rows],))]
    c = codes[order]
    is_last = np.r_[c[1:] != c[:-1], True]
    out[c[is_last]] = order[is_last]
    return out


def _next_day(ev_key: np.ndarray, ev_day: np.ndarray, q_key: np.ndarray, q_day: np.ndarray, strict: bool) -> np.ndarray:
    """For each query (key, day): the first event day of the same key on/after (or after) day."""
    out = np.full(len(q_key), NEVER, dtype=np.int64)
    if len(ev_key) == 0 or len(q_key) == 0:
        return out
    ev = np.sort(ev_key * _BIG + ev_day)
    pos = np.searchsorted(ev, q_key * _BIG + q_day, side="right" if strict else "left")
    ok = pos < len(ev)
    cand = ev[np.minimum(pos, len(ev) - 1)]
    ok &= (cand // _BIG) == q_key
    out[ok] = cand[ok] % _BIG
    return out


def _take(values: np.ndarray, idx: np.ndarray, fill=None) -> np.ndarray:
    """values[idx] as an object array, `fill` where idx < 0."""
    out = np.full(len(idx), fill, dtype=object)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def _since(T: int, day: np.ndarray) -> np.ndarray:
    """Days from `day` to T; NaN where the day is unknown (or not known by T)."""
    out = (T - day).astype(np.float64)
    out[(day >= NEVER) | (day <= -NEVER) | (day > T)] = np.nan
    return out


def _as_dates(as_of) -> list[pd.Timestamp]:
    if isinstance(as_of, str):
        as_of = [a for a in as_of.split(",") if a.strip()]
    if isinstance(as_of, (dt.date, pd.Timestamp, np.datetime64)) or not isinstance(as_of, Iterable):
        as_of = [as_of]
    return sorted({pd.Timestamp(a).normalize() for a in as_of})


# ------------------------------------------------------------------ preparation (once per call)


@dataclass
class _Prep:
    """The dataset as numpy arrays with integer codes (built once, shared by all as-of dates)."""

    n: int
    acct_ids: np.ndarray
    acct_day: np.ndarray
    disch_day: np.ndarray
    acct_payer: np.ndarray
    age: np.ndarray
    charges: np.ndarray
    enc: np.ndarray
    pay_ids: np.ndarray
    pay_class: np.ndarray
    tfd: np.ndarray
    awd: np.ndarray
    c_ids: np.ndarray
    c_acct: np.ndarray
    c_day: np.ndarray
    c_payer: np.ndarray
    c_seq: np.ndarray
    c_freq: np.ndarray
    c_billed: np.ndarray
    c_fam: np.ndarray
    c_proc: np.ndarray
    r_claim: np.ndarray
    r_acct: np.ndarray
    r_day: np.ndarray
    r_status: np.ndarray
    r_paid: np.ndarray
    r_pr: np.ndarray
    d_claim: np.ndarray
    d_acct: np.ndarray
    d_day: np.ndarray
    d_carc: np.ndarray
    d_carc_rank: np.ndarray
    d_group: np.ndarray
    d_rarc: np.ndarray
    d_amount: np.ndarray
    d_partial: np.ndarray
    d_paid_day: np.ndarray
    d_worked_day: np.ndarray
    d_close_day: np.ndarray
    a_acct: np.ndarray
    a_fam: np.ndarray
    a_day: np.ndarray
    a_dec_day: np.ndarray
    a_over: np.ndarray
    a_level: np.ndarray
    t_acct: np.ndarray
    t_day: np.ndarray
    t_type: np.ndarray
    t_amt: np.ndarray
    v_acct: np.ndarray
    v_day: np.ndarray
    v_type: np.ndarray
    extract: int


def _empty(name: str, ds: Dataset) -> pd.DataFrame:
    from features.contract import columns_of

    return ds.tables[name] if name in ds.tables else pd.DataFrame({c: [] for c in columns_of(name)})


def _prepare(ds: Dataset) -> _Prep:
    acc = _empty("accounts", ds)
    ids = _obj(acc["account_id"])
    order = np.argsort(ids, kind="stable")  # account codes follow account_id order: sorted output
    acct_index = _Keys(ids[order])
    n = len(acc)

    def acol(name: str):
        col = acc[name]
        return col if n <= 1 else col.take(order) if isinstance(col, pd.Series) else np.asarray(col)[order]

    pay = _empty("payers", ds)
    pay = _take_rows(pay, np.argsort(_obj(pay["payer_id"]), kind="stable")) if len(pay) > 1 else pay
    pay_ids = _obj(pay["payer_id"])
    pay_index = _Keys(pay_ids)
    acct_day = _days(acol("service_date"))
    acct_payer = _codes(pay_index, acol("primary_payer_id"))

    # claims: a claim is known from its submission, never before its account's service date
    cl = _empty("claims", ds)
    c_ids = _obj(cl["claim_id"])
    claim_index = _Keys(c_ids)
    c_acct = _codes(acct_index, cl["account_id"])
    c_day = np.where(c_acct >= 0, np.maximum(_days(cl["submitted_date"]), acct_day[c_acct]), NEVER)
    c_freq = _enum(cl["frequency"], _FREQ)
    nc = len(cl)
    # claim family: follow original_claim_id to the first claim of the chain
    parent = (
        _codes(claim_index, cl["original_claim_id"]) if "original_claim_id" in cl else np.full(nc, -1, dtype=np.int64)
    )
    fam = np.arange(nc, dtype=np.int64)
    for _ in range(32):
        p = parent[fam]
        move = p >= 0
        if not move.any():
            break
        fam = np.where(move, p, fam)

    # procedure family of each claim: its highest-charge line (ties: lowest line number)
    cline = _empty("claim_lines", ds)
    l_claim = _codes(claim_index, cline["claim_id"])
    ok = l_claim >= 0
    best = _last(l_claim, nc, ok, -_num(cline["line_number"]), _num(cline["line_charge"]))
    codes, uniq = pd.factorize(_obj(cline["procedure_code"]))
    fam_of_uniq = np.array([_FAM_IDX[proc_family(c)] for c in uniq], dtype=np.int64)
    line_fam = np.where(codes >= 0, fam_of_uniq[np.maximum(codes, 0)] if len(uniq) else 0, _FAM_IDX["unknown"])
    c_proc = np.where(best >= 0, line_fam[np.maximum(best, 0)] if len(line_fam) else 0, _FAM_IDX["unknown"])

    # remittances: known from receipt, never before their claim
    rem = _empty("remittances", ds)
    r_claim = _codes(claim_index, rem["claim_id"])
    rok = r_claim >= 0
    r_acct = np.where(rok, c_acct[np.maximum(r_claim, 0)], -1)
    r_day = np.where(rok, np.maximum(_days(rem["received_date"]), c_day[np.maximum(r_claim, 0)]), NEVER)
    r_status = _enum(rem["claim_status"], _ST)
    r_paid = _num(rem["paid_amount"])
    r_pr = np.nan_to_num(_num(rem["patient_responsibility"]))

    d = _denials(ds, rem, r_claim, r_day, r_status, r_paid, c_acct, fam, nc, cl)

    ap = _empty("appeals", ds)
    a_claim = _codes(claim_index, ap["claim_id"])
    aok = a_claim >= 0
    a_c = np.maximum(a_claim, 0)
    a_acct = np.where(aok, c_acct[a_c], -1)
    a_fam = np.where(aok, fam[a_c], -1)
    a_day = np.where(aok, np.maximum(_days(ap["submitted_date"]), c_day[a_c]), NEVER)
    a_dec_day = np.maximum(_days(ap["decision_date"]), a_day)  # outcome known from its decision date
    a_over = _isin(ap["outcome"], ["overturned", "partially_overturned"])
    a_level = np.nan_to_num(_num(ap["level"])).astype(np.int64)

    tx = _empty("transactions", ds)
    t_acct = _codes(acct_index, tx["account_id"])
    t_day = np.where(t_acct >= 0, _days(tx["posted_date"]), NEVER)
    t_type = _enum(tx["txn_type"], _TX)
    t_amt = _num(tx["amount"])

    act = _empty("activities", ds)
    v_acct = _codes(acct_index, act["account_id"])
    v_day = np.where(v_acct >= 0, _days(act["activity_date"]), NEVER)
    v_type = _enum(act["activity_type"], _ACT)

    # denial resolution days (all history; compared with T later, so no look-ahead)
    c_sub = c_day
    paid_r = rok & np.isin(r_status, _PROCESSED) & (r_paid > 0) & (r_day < NEVER)
    over_a = aok & a_over & (a_dec_day < NEVER)
    ev_fam = np.r_[fam[r_claim[paid_r]], a_fam[over_a]]
    ev_day = np.r_[r_day[paid_r], a_dec_day[over_a]]
    d_fam = fam[d["claim"]] if len(d["claim"]) else np.zeros(0, dtype=np.int64)
    d_paid_day = _next_day(ev_fam, ev_day, d_fam, d["day"], strict=True)
    fixes = (c_freq == _FREQ["corrected"]) | (c_freq == _FREQ["replacement"])
    fixes &= (parent >= 0) & (c_sub < NEVER)
    known_a = aok & (a_day < NEVER)
    w_fam = np.r_[fam[fixes], a_fam[known_a]]
    w_day = np.r_[c_sub[fixes], a_day[known_a]]
    d_worked_day = _next_day(w_fam, w_day, d_fam, d["day"], strict=False)
    voids = (c_freq == _FREQ["void"]) & (c_sub < NEVER)
    close_void = _next_day(fam[voids], c_sub[voids], d_fam, d["day"], strict=False)
    wo = (t_type == _TX["denial_writeoff"]) | (t_type == _TX["bad_debt_writeoff"])
    wo &= t_acct >= 0
    close_wo = _next_day(t_acct[wo], t_day[wo], d["acct"], d["day"], strict=False)

    return _Prep(
        n=n,
        acct_ids=acct_index.ids,
        acct_day=acct_day,
        disch_day=np.maximum(_days(acol("discharge_date")), acct_day),
        acct_payer=acct_payer,
        age=_num(acol("patient_age")),
        charges=_num(acol("total_charges")),
        enc=_obj(acol("encounter_type")),
        pay_ids=pay_ids,
        pay_class=_obj(pay["financial_class"]),
        tfd=_num(pay["timely_filing_days"]),
        awd=_num(pay["appeal_window_days"]),
        c_ids=c_ids,
        c_acct=c_acct,
        c_day=c_day,
        c_payer=_codes(pay_index, cl["payer_id"]),
        c_seq=np.nan_to_num(_num(cl["payer_sequence"]), nan=1).astype(np.int64),
        c_freq=c_freq,
        c_billed=_num(cl["billed_amount"]),
        c_fam=fam,
        c_proc=c_proc,
        r_claim=r_claim,
        r_acct=r_acct,
        r_day=r_day,
        r_status=r_status,
        r_paid=r_paid,
        r_pr=r_pr,
        d_claim=d["claim"],
        d_acct=d["acct"],
        d_day=d["day"],
        d_carc=d["carc"],
        d_carc_rank=d["carc_rank"],
        d_group=d["group"],
        d_rarc=d["rarc"],
        d_amount=d["amount"],
        d_partial=d["partial"],
        d_paid_day=d_paid_day,
        d_worked_day=d_worked_day,
        d_close_day=np.minimum(close_void, close_wo),
        a_acct=a_acct,
        a_fam=a_fam,
        a_day=a_day,
        a_dec_day=a_dec_day,
        a_over=a_over,
        a_level=a_level,
        t_acct=t_acct,
        t_day=t_day,
        t_type=t_type,
        t_amt=t_amt,
        v_acct=v_acct,
        v_day=v_day,
        v_type=v_type,
        extract=_day(ds.extract_date if ds.extract_date is not None else (latest_date(ds) or "2262-01-01")),
    )


def _denials(ds, rem, r_claim, r_day, r_status, r_paid, c_acct, fam, nc, cl) -> dict[str, np.ndarray]:
    """Denial events, one per remittance that denies (DESIGN.md: a claim with status denied, or a
    claim or line paid nothing with a non-routine CO/PI/OA CARC; a line on a paid claim = partial)."""
    adj = _empty("adjustments", ds)
    nr = len(rem)
    a_remit = _codes(_Keys(_obj(rem["remit_id"])), adj["remit_id"])
    reason = _text(adj["reason_code"])
    carc_codes, carc_uniq = pd.factorize(reason, sort=True)  # sorted: the rank is a deterministic tie-break
    routine = np.array([c in routine_carcs() for c in carc_uniq], dtype=bool)
    groups = _obj(adj["group_code"])
    denying = (a_remit >= 0) & np.isin(groups, ["CO", "PI", "OA"]) & (carc_codes >= 0)
    if len(routine):
        denying &= ~routine[np.maximum(carc_codes, 0)]
    has_line = _notna(adj["line_number"]) if "line_number" in adj else np.zeros(len(adj), bool)
    amt = np.abs(np.nan_to_num(_num(adj["amount"])))
    rarc = _notna(adj["remark_codes"]) if "remark_codes" in adj else np.zeros(len(adj), bool)

    n_claim_level = _count(a_remit, nr, denying & ~has_line) if nr else np.zeros(0, np.int64)
    n_line_level = _count(a_remit, nr, denying & has_line) if nr else np.zeros(0, np.int64)
    den_amt = _sum(a_remit, amt, nr, denying) if nr else np.zeros(0)
    any_rarc = _count(a_remit, nr, denying & rarc) > 0 if nr else np.zeros(0, bool)
    # the denial's CARC: its largest non-routine adjustment (ties: the lowest code)
    main = _last(a_remit, nr, denying, -carc_codes, amt) if nr else np.zeros(0, np.int64)

    ok = (r_claim >= 0) & (r_day < NEVER)
    st_denied = r_status == _ST["denied"]
    adjudicated = ~np.isin(r_status, [_ST["reversal"], _ST["pended"]])
    paid = np.nan_to_num(r_paid) > 0
    nonroutine = (n_claim_level + n_line_level) > 0
    full = st_denied | (adjudicated & ~paid & nonroutine)
    partial = adjudicated & paid & ~st_denied & (n_line_level > 0)
    is_d = ok & (full | partial)
    rows = np.flatnonzero(is_d)
    claim = r_claim[rows]
    mi = main[rows]
    carc = _take(
        np.asarray(carc_uniq, dtype=object),
        np.where(mi >= 0, carc_codes[np.maximum(mi, 0)] if len(carc_codes) else -1, -1),
    )
    billed = _num(cl["billed_amount"])
    amount = np.where(partial[rows], den_amt[rows], billed[claim])
    return {
        "claim": claim,
        "acct": c_acct[claim],
        "day": r_day[rows],
        "carc": carc,
        "carc_rank": np.where(mi >= 0, carc_codes[np.maximum(mi, 0)] if len(carc_codes) else -1, -1),
        "group": np.array([_GROUP_IDX[carc_group(c)] for c in carc], dtype=np.int64),
        "rarc": any_rarc[rows],
        "amount": np.round(amount, 2),
        "partial": partial[rows],
    }


# ------------------------------------------------------------------ pooled statistics


def _smooth(k: np.ndarray, n: np.ndarray, prior: float) -> np.ndarray:
    return (k + PRIOR_COUNT * prior) / (n + PRIOR_COUNT)


def _stats_one(p: _Prep, T: int, h2: int) -> pd.DataFrame:
    nc, npay = len(p.c_ids), len(p.pay_ids)
    nf, ng = len(PROC_FAMILIES), len(CARC_GROUP_NAMES)
    rk = (p.r_day <= T) & (p.r_claim >= 0)
    adjud = rk & (p.r_status != _ST["pended"])
    c_adj = _count(p.r_claim, nc, adjud) > 0
    c_den = _count(p.d_claim, nc, p.d_day <= T) > 0
    c_paid = _sum(p.r_claim, np.nan_to_num(p.r_paid), nc, rk)
    pay_r = rk & np.isin(p.r_status, _PROCESSED) & (p.r_paid > 0)
    first_pay = _min(p.r_claim, p.r_day, nc, pay_r)
    has_pay = first_pay < NEVER
    dtp = np.where(has_pay, first_pay - p.c_day, 0).astype(np.float64)
    cp = np.where(p.c_payer >= 0, p.c_payer, npay)  # unknown payer: an extra bucket, dropped

    # denials whose overturn window has closed by T: the label, known point-in-time
    dres = p.d_day + h2 <= T
    d_end = p.d_day + h2
    worked = dres & (p.d_worked_day <= d_end)
    over = worked & (p.d_paid_day <= d_end)
    dpay = cp[p.d_claim] if len(p.d_claim) else np.zeros(0, np.int64)
    dfam = p.c_proc[p.d_claim] if len(p.d_claim) else np.zeros(0, np.int64)

    def agg(key: np.ndarray, dkey: np.ndarray, m: int) -> dict[str, np.ndarray]:
        return {
            "n_claims": _count(key, m, c_adj),
            "n_den": _count(key, m, c_adj & c_den),
            "billed": _sum(key, np.nan_to_num(p.c_billed), m, c_adj),
            "paid": _sum(key, c_paid, m, c_adj),
            "n_pay": _count(key, m, has_pay),
            "dtp": np.bincount(key[has_pay], dtp[has_pay], minlength=m),
            "n_worked": _count(dkey, m, worked),
            "n_over": _count(dkey, m, over),
            "n_denials": _count(dkey, m, p.d_day <= T),
        }

    g = agg(np.zeros(nc, np.int64), np.zeros(len(p.d_claim), np.int64), 1)
    g_den = (g["n_den"][0] + 1.0) / (g["n_claims"][0] + 10.0)  # mildly smoothed global rates
    g_over = (g["n_over"][0] + 1.0) / (g["n_worked"][0] + 2.0)
    g_ptb = g["paid"][0] / g["billed"][0] if g["billed"][0] > 0 else 0.5
    g_dtp = g["dtp"][0] / g["n_pay"][0] if g["n_pay"][0] > 0 else 30.0

    def rates(a: dict[str, np.ndarray], over_prior: np.ndarray | float) -> dict[str, np.ndarray]:
        n = a["n_claims"].astype(np.float64)
        ptb = np.divide(a["paid"], a["billed"], out=np.full(len(n), g_ptb), where=a["billed"] > 0)
        mdtp = np.divide(a["dtp"], a["n_pay"], out=np.full(len(n), g_dtp), where=a["n_pay"] > 0)
        return {
            "n_claims": a["n_claims"],
            "n_denials": a["n_denials"],
            "n_worked": a["n_worked"],
            "denial_rate": _smooth(a["n_den"], n, g_den),
            "overturn_rate": _smooth(a["n_over"], a["n_worked"].astype(np.float64), over_prior),
            "paid_to_billed": (n * ptb + PRIOR_COUNT * g_ptb) / (n + PRIOR_COUNT),
            "days_to_pay": (a["n_pay"] * mdtp + PRIOR_COUNT * g_dtp) / (a["n_pay"] + PRIOR_COUNT),
        }

    glob = rates(g, g_over)
    by_payer = rates(agg(cp, dpay, npay + 1), g_over)
    by_fam = rates(agg(p.c_proc, dfam, nf), g_over)
    # payer x CARC group: overturn rate pulled toward the payer's own; denial rate = group share
    dg = dpay * ng + p.d_group if len(p.d_claim) else np.zeros(0, np.int64)
    m = (npay + 1) * ng
    pg_n_den = _count(dg, m, p.d_day <= T)
    pg_worked = _count(dg, m, worked).astype(np.float64)
    pg_over = _count(dg, m, over)
    payer_claims = np.repeat(by_payer["n_claims"], ng).astype(np.float64)
    pg = {
        "n_claims": np.repeat(by_payer["n_claims"], ng),
        "n_denials": pg_n_den,
        "n_worked": pg_worked,
        "denial_rate": _smooth(pg_n_den, payer_claims, g_den / ng),
        "overturn_rate": _smooth(pg_over, pg_worked, np.repeat(by_payer["overturn_rate"], ng)),
        "paid_to_billed": np.repeat(by_payer["paid_to_billed"], ng),
        "days_to_pay": np.repeat(by_payer["days_to_pay"], ng),
    }
    keep_p = slice(0, npay)
    keep_pg = slice(0, npay * ng)
    frames = [
        _stats_frame("global", glob, None, None, None),
        _stats_frame("payer", {k: v[keep_p] for k, v in by_payer.items()}, p.pay_ids, None, None),
        _stats_frame(
            "payer_carc_group",
            {k: v[keep_pg] for k, v in pg.items()},
            np.repeat(p.pay_ids, ng),
            np.tile(np.array(CARC_GROUP_NAMES, dtype=object), npay),
            None,
        ),
        _stats_frame("proc_family", by_fam, None, None, np.array(PROC_FAMILIES, dtype=object)),
    ]
    return pd.concat(frames, ignore_index=True)


def _stats_frame(level, r, payer, group, fam) -> pd.DataFrame:
    n = len(r["n_claims"])
    none = np.full(n, None, dtype=object)
    return pd.DataFrame(
        {
            "level": np.full(n, level, dtype=object),
            "payer_id": none if payer is None else payer,
            "carc_group": none if group is None else group,
            "proc_family": none if fam is None else fam,
            "n_claims": np.asarray(r["n_claims"], np.int64),
            "n_denials": np.asarray(r["n_denials"], np.int64),
            "n_worked": np.asarray(r["n_worked"], np.int64),
            "denial_rate": r["denial_rate"],
            "overturn_rate": r["overturn_rate"],
            "paid_to_billed": r["paid_to_billed"],
            "days_to_pay": r["days_to_pay"],
        }
    )


def pooled_stats(ds: Dataset, as_of, horizon_days: int = 120, _prep: _Prep | None = None) -> pd.DataFrame:
    """The point-in-time statistics table: rates per payer, payer x CARC group and procedure
    family (plus one global row), from rows on or before each as-of date only, smoothed toward
    the global rate with a prior count of `PRIOR_COUNT`. Columns: `STATS_COLUMNS`.

    Overturn rates use denials whose `horizon_days` window closed by the as-of date (the overturn
    label, as it was known then)."""
    p = _prep or _prepare(ds)
    out = []
    for t in _as_dates(as_of):
        f = _stats_one(p, _day(t), horizon_days)
        f.insert(0, "as_of", t)
        out.append(f)
    return pd.concat(out, ignore_index=True)[STATS_COLUMNS]


@dataclass
class _Lookup:
    payer: dict[str, np.ndarray]  # per payer code (+1 trailing slot: unknown / self-pay -> global)
    pg_over: np.ndarray  # [payer code (+1), group]
    fam: dict[str, np.ndarray]  # per procedure family index


_RATE_COLS = ("denial_rate", "overturn_rate", "paid_to_billed", "days_to_pay")


@dataclass
class _ParsedStats:
    glob: dict[str, float]
    payer: dict[str, dict[str, float]]  # column -> payer_id -> value
    pg_over: dict[tuple[str, str], float]
    fam: dict[str, np.ndarray]


_BY_IDENTITY: dict[tuple[int, str], tuple[pd.DataFrame, object]] = {}


def _by_identity(stats: pd.DataFrame, compute):
    """`compute(stats)`, cached by the table's identity: serving passes the same stats table with
    every request, so what is derived from it is paid once per model, not per call."""
    key = (id(stats), compute.__name__)
    hit = _BY_IDENTITY.get(key)
    if hit is not None and hit[0] is stats:
        return hit[1]
    value = compute(stats)
    if len(_BY_IDENTITY) > 16:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[key] = (stats, value)
    return value


def _parse_stats(stats: pd.DataFrame) -> _ParsedStats:
    """A single-date stats table as dicts (cached by identity)."""
    return _by_identity(stats, _parse)


def _parse(stats: pd.DataFrame) -> _ParsedStats:
    level = stats["level"].to_numpy(dtype=object)
    glob = stats[level == "global"]
    gvals = {c: float(glob[c].iloc[0]) if len(glob) else np.nan for c in _RATE_COLS}
    ps = stats[level == "payer"]
    payer = {
        c: dict(zip(ps["payer_id"].to_numpy(dtype=object), ps[c].to_numpy(np.float64), strict=True)) for c in _RATE_COLS
    }
    pgs = stats[level == "payer_carc_group"]
    pg_over = dict(
        zip(
            zip(pgs["payer_id"].to_numpy(dtype=object), pgs["carc_group"].to_numpy(dtype=object), strict=True),
            pgs["overturn_rate"].to_numpy(np.float64),
            strict=True,
        )
    )
    fs = stats[level == "proc_family"]
    fidx = pd.Index(fs["proc_family"].to_numpy(dtype=object)).get_indexer(list(PROC_FAMILIES))
    fam = {}
    for c in _RATE_COLS:
        v = np.full(len(PROC_FAMILIES), gvals[c])
        found = fidx >= 0
        v[found] = fs[c].to_numpy(np.float64)[fidx[found]]
        fam[c] = v
    return _ParsedStats(gvals, payer, pg_over, fam)


def _holds_one_date(stats: pd.DataFrame) -> bool:
    return not ("as_of" in stats and len(stats) and not (stats["as_of"].iloc[0] == stats["as_of"]).all())


def _lookup(stats: pd.DataFrame, p: _Prep, t: pd.Timestamp) -> _Lookup:
    if not _by_identity(stats, _holds_one_date):
        # a table of several dates: the latest one on or before T (else the earliest)
        dates = pd.to_datetime(stats["as_of"])
        prior = dates[dates <= t]
        pick = prior.max() if len(prior) else dates.min()
        stats = stats[dates == pick]
    ps = _parse_stats(stats)
    ng = len(CARC_GROUP_NAMES)
    payer = {c: np.array([ps.payer[c].get(pid, ps.glob[c]) for pid in p.pay_ids] + [ps.glob[c]]) for c in _RATE_COLS}
    pg = np.repeat(payer["overturn_rate"][:, None], ng, axis=1)
    for i, pid in enumerate(p.pay_ids):  # a loop over payers (tens), not accounts
        for j, g in enumerate(CARC_GROUP_NAMES):
            v = ps.pg_over.get((pid, g))
            if v is not None:
                pg[i, j] = v
    fam = ps.fam
    return _Lookup(payer, pg, fam)


# ------------------------------------------------------------------ account features


def _windows(codes, day, T, n, mask, w=None) -> dict[int, np.ndarray]:
    out = {}
    for win in (7, 30, 90, 365):
        m = mask & (day > T - win) & (day <= T)
        out[win] = _count(codes, n, m) if w is None else _sum(codes, w, n, m)
    return out


def _account_block(p: _Prep, t: pd.Timestamp, lk: _Lookup, h: int, with_labels: bool) -> dict[str, np.ndarray]:
    T, n = _day(t), p.n
    # ledger
    tk = (p.t_day <= T) & (p.t_acct >= 0)
    ta, ty, amt = p.t_acct, p.t_type, p.t_amt
    sign = _LEDGER_SIGN[np.maximum(ty, 0)]
    balance = _sum(ta, sign * amt, n, tk)
    is_t = {k: ty == i for k, i in _TX.items()}
    bad_debt = _count(ta, n, tk & is_t["bad_debt_writeoff"]) > 0
    vk = (p.v_day <= T) & (p.v_acct >= 0)
    is_v = {k: p.v_type == i for k, i in _ACT.items()}
    agency = _count(p.v_acct, n, vk & is_v["agency_placement"]) > 0
    open_ = (p.acct_day <= T) & (balance > 0) & ~bad_debt & ~agency
    rows = np.flatnonzero(open_)

    def sel(a):  # per-account array -> open accounts only
        return a[rows]

    f: dict[str, np.ndarray] = {"account_id": p.acct_ids[rows]}
    payer = p.acct_payer
    pclass = _take(p.pay_class, payer, "self_pay")
    self_pay = (payer < 0) | (pclass == "self_pay")
    f["financial_class"] = sel(pclass)
    f["encounter_type"] = sel(p.enc)
    f["primary_payer_id"] = sel(_take(p.pay_ids, payer, "self_pay"))
    f["patient_age"] = sel(p.age)
    f["total_charges"] = sel(p.charges)
    f["days_since_service"] = sel(_since(T, p.acct_day))
    f["days_since_discharge"] = sel(_since(T, p.disch_day))

    pay_t = tk & (is_t["insurance_payment"] | is_t["patient_payment"])
    pp_t = tk & is_t["patient_payment"]
    patient_paid = _sum(ta, amt, n, pp_t)
    rec_w = _RECOVER_SIGN[np.maximum(ty, 0)] * amt
    # patient responsibility: PR of remits of the latest payer sequence reached (a secondary claim
    # takes over the primary's PR), less patient payments
    rk = (p.r_day <= T) & (p.r_acct >= 0)
    r_seq = p.c_seq[np.maximum(p.r_claim, 0)]
    top_seq = _max(p.r_acct, r_seq, n, rk, fill=0)
    pr = _sum(p.r_acct, p.r_pr, n, rk & (r_seq == top_seq[np.maximum(p.r_acct, 0)]))
    bal_pat = np.clip(pr - patient_paid, 0, np.maximum(balance, 0))
    bal_pat = np.where(self_pay, np.maximum(balance, 0), bal_pat)
    f["balance"] = sel(balance)
    f["balance_patient"] = sel(np.round(bal_pat, 2))
    f["balance_insurance"] = sel(np.round(balance - bal_pat, 2))
    f["charges_posted"] = sel(_sum(ta, amt, n, tk & is_t["charge"]))
    f["insurance_paid"] = sel(_sum(ta, amt, n, tk & is_t["insurance_payment"]))
    f["adjustments_total"] = sel(
        _sum(
            ta,
            amt,
            n,
            tk & (is_t["contractual_adjustment"] | is_t["administrative_adjustment"] | is_t["charity_adjustment"]),
        )
    )
    f["days_since_last_payment"] = sel(_since(T, _max(ta, p.t_day, n, pay_t)))
    payw = _windows(ta, p.t_day, T, n, tk, rec_w)
    for w in (30, 90, 365):
        f[f"payments_{w}d"] = sel(payw[w])
    f["payments_trend_30d"] = sel(np.round(payw[30] - payw[365] * 30 / 365, 2))

    # claims
    ck = (p.c_day <= T) & (p.c_acct >= 0)
    ca = p.c_acct
    not_void = p.c_freq != _FREQ["void"]
    f["n_claims"] = sel(_count(ca, n, ck))
    f["n_corrected_claims"] = sel(
        _count(ca, n, ck & ((p.c_freq == _FREQ["corrected"]) | (p.c_freq == _FREQ["replacement"])))
    )
    f["has_secondary_claim"] = sel((_count(ca, n, ck & (p.c_seq > 1)) > 0).astype(np.float64))
    f["billed_total"] = sel(_sum(ca, np.nan_to_num(p.c_billed), n, ck & not_void))
    f["days_since_last_claim"] = sel(_since(T, _max(ca, p.c_day, n, ck)))
    top_line = _last(ca, n, ck, p.c_day, np.nan_to_num(p.c_billed))  # the largest claim's family
    acct_fam = np.where(top_line >= 0, p.c_proc[np.maximum(top_line, 0)] if len(p.c_proc) else 0, _FAM_IDX["unknown"])
    f["proc_family"] = sel(np.array(PROC_FAMILIES, dtype=object)[acct_fam])
    primary_filed = _count(ca, n, ck & (p.c_payer == payer[np.maximum(ca, 0)]) & (p.c_seq == 1)) > 0

    # remittances
    ra = p.r_acct
    f["n_remits"] = sel(_count(ra, n, rk))
    f["remit_paid"] = sel(_sum(ra, np.nan_to_num(p.r_paid), n, rk))
    last_r = _last(ra, n, rk, p.r_status, p.r_day)
    f["last_remit_status"] = sel(
        _take(
            np.array(CLAIM_STATUSES, dtype=object),
            np.where(last_r >= 0, p.r_status[np.maximum(last_r, 0)] if len(p.r_status) else -1, -1),
            "none",
        )
    )
    answered = _count(p.r_claim, len(p.c_ids), rk & (p.r_claim >= 0)) > 0
    waiting = ck & not_void & ~answered
    f["pending_adjudication"] = sel((_count(ca, n, waiting) > 0).astype(np.float64))
    f["days_claim_waiting"] = sel(_since(T, _min(ca, p.c_day, n, waiting)))

    # denials
    dk = (p.d_day <= T) & (p.d_acct >= 0)
    da = p.d_acct
    d_open = _open_denials(p, T, dk)
    f["n_denials"] = sel(_count(da, n, dk))
    any_open = _count(da, n, d_open) > 0
    f["open_denial"] = sel(any_open.astype(np.float64))
    f["open_denied_amount"] = sel(_sum(da, p.d_amount, n, d_open))
    last_d = _last(da, n, dk, p.d_carc_rank, p.d_day)
    f["last_denial_carc"] = sel(_take(p.d_carc, last_d, "none"))
    last_group = np.where(last_d >= 0, p.d_group[np.maximum(last_d, 0)] if len(p.d_group) else 0, -1)
    f["last_denial_group"] = sel(_take(np.array(CARC_GROUP_NAMES, dtype=object), last_group, "none"))
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
    tfd = np.where(payer >= 0, p.tfd[np.maximum(payer, 0)] if len(p.tfd) else np.nan, np.nan)
    tf_left = tfd - (T - p.acct_day)
    f["timely_filing_days_left"] = sel(np.where(~primary_filed | any_open, tf_left, np.nan))

    # appeals
    ak = (p.a_day <= T) & (p.a_acct >= 0)
    decided = p.a_dec_day <= T
    f["n_appeals"] = sel(_count(p.a_acct, n, ak))
    f["pending_appeal"] = sel((_count(p.a_acct, n, ak & ~decided) > 0).astype(np.float64))
    f["n_overturned"] = sel(_count(p.a_acct, n, ak & decided & p.a_over))

    # patient payments
    f["n_patient_payments"] = sel(_count(ta, n, pp_t))
    f["patient_paid"] = sel(patient_paid)
    last_pp = _max(ta, p.t_day, n, pp_t)
    f["days_since_last_patient_payment"] = sel(_since(T, last_pp))
    ppw = _windows(ta, p.t_day, T, n, pp_t, amt)
    for w in (30, 90, 365):
        f[f"patient_payments_{w}d"] = sel(ppw[w])

    # activities
    va, vd = p.v_acct, p.v_day
    st = _windows(va, vd, T, n, vk & is_v["statement"])
    ca_w = _windows(va, vd, T, n, vk & is_v["call_attempt"])
    co = _windows(va, vd, T, n, vk & (is_v["call_contact"] | is_v["portal_message"] | is_v["letter"]))
    for w in (30, 90, 365):
        f[f"statements_{w}d"] = sel(st[w])
    for w in (30, 90, 365):
        f[f"call_attempts_{w}d"] = sel(ca_w[w])
    for w in (30, 90, 365):
        f[f"contacts_{w}d"] = sel(co[w])
    touch30, touch365 = co[30] + ca_w[30], co[365] + ca_w[365]
    f["contacts_trend_30d"] = sel(touch30 - touch365 * 30 / 365)
    f["call_attempts_7d"] = sel(ca_w[7])
    f["days_since_first_statement"] = sel(_since(T, _min(va, vd, n, vk & is_v["statement"])))
    f["days_since_last_statement"] = sel(_since(T, _max(va, vd, n, vk & is_v["statement"])))
    f["n_letters"] = sel(_count(va, n, vk & is_v["letter"]))  # dunning letters mark the collection stage
    last_start = _max(va, vd, n, vk & is_v["payment_plan_start"])
    last_default = _max(va, vd, n, vk & is_v["payment_plan_default"])
    active = (last_start > -NEVER) & (last_start > last_default)
    f["plan_active"] = sel(active.astype(np.float64))
    f["plan_defaulted"] = sel(((last_default > -NEVER) & (last_default >= last_start)).astype(np.float64))
    recent = (T - np.maximum(last_pp, last_start)) <= 60
    f["plan_in_good_standing"] = sel((active & recent).astype(np.float64))
    f["dispute_recent"] = sel((_count(va, n, vk & is_v["dispute"] & (vd > T - 90)) > 0).astype(np.float64))
    last_fa = _max(va, vd, n, vk & is_v["financial_assistance_application"])
    last_charity = _max(ta, p.t_day, n, tk & is_t["charity_adjustment"])
    fa = (last_fa > -NEVER) & (last_fa > T - 365) & (last_charity < last_fa)
    f["fa_pending"] = sel(fa.astype(np.float64))
    f["in_bankruptcy"] = sel((_count(va, n, vk & is_v["bankruptcy_notice"]) > 0).astype(np.float64))
    f["n_promises_90d"] = sel(_count(va, n, vk & is_v["promise_to_pay"] & (vd > T - 90)))

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
        rec = sel(_sum(ta, rec_w, n, fut))
        known = T + h <= p.extract
        f["label_recovered"] = rec if known else np.full(len(rows), np.nan)
        f["label_paid"] = (rec > 0).astype(np.float64) if known else np.full(len(rows), np.nan)
    return f


def _open_denials(p: _Prep, T: int, dk: np.ndarray) -> np.ndarray:
    """Denials open at T: known, the latest of their claim family, not paid / written off / voided."""
    if not len(p.d_claim):
        return dk
    fam = p.c_fam[p.d_claim]
    latest = _last(fam, len(p.c_ids), dk, p.d_carc_rank, p.d_day)
    is_latest = np.zeros(len(p.d_claim), bool)
    is_latest[latest[latest >= 0]] = True
    return dk & is_latest & (p.d_paid_day > T) & (p.d_close_day > T)


_DENIAL_KEYS = ["claim_id", "account_id"]


def _frame(
    blocks: list[tuple[pd.Timestamp, dict[str, np.ndarray]]],
    keys: list[str],
    names: list[str],
    labels: list[str],
    frames: bool = True,
) -> pd.DataFrame | dict[str, np.ndarray]:
    """The output frame, built once with its columns in their final order (keys, as_of, ...); with
    `frames=False` the same columns as a dict of NumPy arrays (the API's path: no pandas)."""
    cols = [*keys, "as_of", *names, *labels]
    parts = []
    for t, b in blocks:
        n = len(b[keys[0]])
        data = {c: b[c] for c in cols if c in b}
        data["as_of"] = np.full(n, np.datetime64(t, "ns"))
        parts.append(data)
    if len(parts) == 1:
        data = parts[0]
    else:
        data = {c: np.concatenate([d[c] for d in parts]) for c in parts[0]}
    data = {c: data[c] for c in cols if c in data}
    return pd.DataFrame(data) if frames else data


def _stats_for(ds: Dataset, p: _Prep, stats: pd.DataFrame | None, t: pd.Timestamp, h2: int) -> _Lookup:
    if stats is None:
        stats = _stats_one(p, _day(t), h2)
    return _lookup(stats, p, t)


def account_features(
    ds: Dataset, as_of, stats: pd.DataFrame | None = None, horizon_days: int = 60, with_labels: bool = True
) -> pd.DataFrame:
    """One row per open account per as-of date (sorted by as_of, account_id).

    Columns: `account_id`, `as_of`, the features of `account_feature_names()` and, with
    `with_labels`, `label_paid` and `label_recovered` (NaN when as_of + horizon is after the
    extract date). `stats=None` computes the pooled statistics per as-of date from `ds`; a stats
    table (from `pooled_stats`) is used for every date instead (serving)."""
    p = _prepare(ds)
    blocks = [
        (t, _account_block(p, t, _stats_for(ds, p, stats, t, 120), horizon_days, with_labels)) for t in _as_dates(as_of)
    ]
    labels = ["label_paid", "label_recovered"] if with_labels else []
    return _frame(blocks, ["account_id"], account_feature_names(), labels)


# ------------------------------------------------------------------ denial features


def _denial_block(p: _Prep, t: pd.Timestamp, lk: _Lookup, h2: int, with_labels: bool) -> dict[str, np.ndarray]:
    T = _day(t)
    dk = (p.d_day <= T) & (p.d_acct >= 0)
    open_ = _open_denials(p, T, dk)
    # the account must not be written off to bad debt (denial write-offs are in d_close_day)
    rows = np.flatnonzero(open_)
    rows = rows[np.lexsort((p.d_day[rows], p.c_ids[p.d_claim[rows]].astype(str)))] if len(rows) else rows
    claim = p.d_claim[rows]
    acct = p.d_acct[rows]
    payer = p.c_payer[claim]
    f: dict[str, np.ndarray] = {
        "claim_id": p.c_ids[claim],
        "account_id": p.acct_ids[acct],
        "denial_date": (p.d_day[rows] - _OFF).astype("datetime64[D]").astype("datetime64[ns]"),
    }
    f["carc"] = np.where(pd.isna(p.d_carc[rows]), "none", p.d_carc[rows]).astype(object)
    grp = p.d_group[rows]
    f["carc_group"] = np.array(CARC_GROUP_NAMES, dtype=object)[grp]
    f["rarc_present"] = p.d_rarc[rows].astype(np.float64)
    f["payer_id"] = _take(p.pay_ids, payer, "unknown")
    f["financial_class"] = _take(p.pay_class, payer, "other")
    f["encounter_type"] = p.enc[acct]
    f["claim_frequency"] = _take(np.array(CLAIM_FREQUENCIES, dtype=object), p.c_freq[claim], "original")
    fam_i = p.c_proc[claim]
    f["proc_family"] = np.array(PROC_FAMILIES, dtype=object)[fam_i]
    f["payer_sequence"] = p.c_seq[claim].astype(np.float64)
    f["partial_denial"] = p.d_partial[rows].astype(np.float64)
    f["billed"] = p.c_billed[claim]
    f["denied_amount"] = p.d_amount[rows]
    since = (T - p.d_day[rows]).astype(np.float64)
    f["days_since_denial"] = since
    f["days_since_service"] = _since(T, p.acct_day[acct])
    # latest appeal level on the family after the denial, known by T
    fam = p.c_fam[claim]
    ak = (p.a_day <= T) & (p.a_fam >= 0)
    lvl = np.zeros(len(rows))
    if ak.any() and len(rows):
        a_key = p.a_fam[ak] * _BIG + p.a_day[ak]
        order = np.argsort(a_key, kind="stable")
        a_key, a_lvl = a_key[order], p.a_level[ak][order]
        hi = np.searchsorted(a_key, fam * _BIG + T, side="right") - 1  # the last appeal ≤ T of the family
        okk = hi >= 0
        hit = a_key[np.maximum(hi, 0)]
        okk &= (hit // _BIG == fam) & (hit % _BIG >= p.d_day[rows])
        lvl = np.where(okk, a_lvl[np.maximum(hi, 0)], 0).astype(np.float64)
    f["appeal_level"] = lvl
    f["already_worked"] = (p.d_worked_day[rows] <= T).astype(np.float64)
    awd = np.where(payer >= 0, p.awd[np.maximum(payer, 0)] if len(p.awd) else np.nan, np.nan)
    f["appeal_deadline_days_left"] = awd - since
    tfd = np.where(payer >= 0, p.tfd[np.maximum(payer, 0)] if len(p.tfd) else np.nan, np.nan)
    f["timely_filing_days_left"] = tfd - f["days_since_service"]
    # denials of the same account before this one (known by T)
    da_all = p.d_acct[dk]
    key_all = np.sort(da_all * _BIG + p.d_day[dk])
    f["n_prior_denials"] = (
        np.searchsorted(key_all, acct * _BIG + p.d_day[rows], side="left")
        - np.searchsorted(key_all, acct * _BIG, side="left")
    ).astype(np.float64)
    pc = np.where(payer >= 0, payer, len(p.pay_ids))
    f["payer_denial_rate"] = lk.payer["denial_rate"][pc]
    f["payer_overturn_rate"] = lk.payer["overturn_rate"][pc]
    f["payer_group_overturn_rate"] = lk.pg_over[pc, grp]
    f["proc_family_overturn_rate"] = lk.fam["overturn_rate"][fam_i]
    f["payer_paid_to_billed"] = lk.payer["paid_to_billed"][pc]
    f["payer_days_to_pay"] = lk.payer["days_to_pay"][pc]

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
    ds: Dataset, as_of, stats: pd.DataFrame | None = None, horizon_days: int = 120, with_labels: bool = True
) -> pd.DataFrame:
    """One row per open denial per as-of date (sorted by as_of, claim_id).

    Columns: `claim_id`, `account_id`, `as_of`, `denial_date`, the features of
    `denial_feature_names()` and, with `with_labels`, `worked` (an appeal or corrected/replacement
    claim followed within the horizon; NaN while unknown) and `label_overturn` (1 when the claim
    family is paid within (denial_date, denial_date + horizon]; NaN when not worked or the window
    passes the extract date)."""
    p = _prepare(ds)
    blocks = [
        (t, _denial_block(p, t, _stats_for(ds, p, stats, t, horizon_days), horizon_days, with_labels))
        for t in _as_dates(as_of)
    ]
    labels = ["worked", "label_overturn"] if with_labels else []
    return _frame(blocks, _DENIAL_KEYS, ["denial_date", *denial_feature_names()], labels)


def snapshot_features(
    ds: Dataset,
    as_of,
    stats: pd.DataFrame | None = None,
    horizon_days: int = 60,
    overturn_horizon_days: int = 120,
    with_labels: bool = True,
    frames: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`(account_features(...), denial_features(...))` from one preparation of `ds`: the API and
    the batch need both, and preparing the arrays is most of a one-account call's cost. With
    `frames=False`, each is a dict of NumPy arrays with the same columns (what the API ranks)."""
    p = _prepare(ds)
    acc, den = [], []
    for t in _as_dates(as_of):
        if stats is None:
            acc.append((t, _account_block(p, t, _stats_for(ds, p, None, t, 120), horizon_days, with_labels)))
            lk = _stats_for(ds, p, None, t, overturn_horizon_days)
        else:
            lk = _lookup(stats, p, t)
            acc.append((t, _account_block(p, t, lk, horizon_days, with_labels)))
        den.append((t, _denial_block(p, t, lk, overturn_horizon_days, with_labels)))
    a = _frame(
        acc, ["account_id"], account_feature_names(), ["label_paid", "label_recovered"] if with_labels else [], frames
    )
    d = _frame(
        den,
        _DENIAL_KEYS,
        ["denial_date", *denial_feature_names()],
        ["worked", "label_overturn"] if with_labels else [],
        frames,
    )
    return a, d
