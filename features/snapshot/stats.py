"""The pooled statistics table: point-in-time rates per payer, payer x CARC group and procedure
family (plus one global row), and its lookup per payer / group / family for the feature blocks.

Training computes the table per as-of date; the trained model stores it as of its data's end and
every scoring path passes that stored table (DESIGN.md, "Snapshots and labels"). Both go through
`rates_at`, with the overturn horizon of the one `Horizons` the caller was configured with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.catalogue import CARC_GROUP_NAMES, DEFAULT_HORIZONS, PROC_FAMILIES, Horizons, carc_group
from features.contract import Dataset
from features.dates import NEVER, day_number, parse_as_of_dates
from features.snapshot.arrays import count_by, sum_by
from features.snapshot.history import STATUS_CODE, History

PRIOR_COUNT = 20.0  # pseudo-count pulling small cells of the stats table to the global rate

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
    "carc",
    "n_corrected",
    "appeal_overturn_rate",
    "correct_overturn_rate",
]
CARC_WORK_COLUMNS = ("n_worked", "n_corrected", "appeal_overturn_rate", "correct_overturn_rate")
_RATE_COLS = ("denial_rate", "overturn_rate", "paid_to_billed", "days_to_pay")


def _smooth(k: np.ndarray, n: np.ndarray, prior: float) -> np.ndarray:
    return (k + PRIOR_COUNT * prior) / (n + PRIOR_COUNT)


def stats_table(h: History, T: int, overturn_horizon_days: int) -> pd.DataFrame:
    """The statistics table at day T (every column of `STATS_COLUMNS` but `as_of`)."""
    nc, npay = len(h.c_ids), len(h.pay_ids)
    nf, ng = len(PROC_FAMILIES), len(CARC_GROUP_NAMES)
    rk = (h.r_day <= T) & (h.r_claim >= 0)
    adjud = rk & (h.r_status != STATUS_CODE["pended"])
    c_adj = count_by(h.r_claim, nc, adjud) > 0
    c_den = count_by(h.d_claim, nc, h.d_day <= T) > 0
    c_paid = sum_by(h.r_claim, np.nan_to_num(h.r_paid), nc, rk)
    first_pay = h.first_payment_day(T)
    has_pay = first_pay < NEVER
    dtp = np.where(has_pay, first_pay - h.c_day, 0).astype(np.float64)
    cp = np.where(h.c_payer >= 0, h.c_payer, npay)  # unknown payer: an extra bucket, dropped

    # denials whose overturn window has closed by T: the label, known point-in-time
    _, worked, over = h.denial_outcomes(T, overturn_horizon_days)
    dpay = cp[h.d_claim] if len(h.d_claim) else np.zeros(0, np.int64)
    dfam = h.c_proc[h.d_claim] if len(h.d_claim) else np.zeros(0, np.int64)

    def agg(key: np.ndarray, dkey: np.ndarray, m: int) -> dict[str, np.ndarray]:
        return {
            "n_claims": count_by(key, m, c_adj),
            "n_den": count_by(key, m, c_adj & c_den),
            "billed": sum_by(key, np.nan_to_num(h.c_billed), m, c_adj),
            "paid": sum_by(key, c_paid, m, c_adj),
            "n_pay": count_by(key, m, has_pay),
            "dtp": np.bincount(key[has_pay], dtp[has_pay], minlength=m),
            "n_worked": count_by(dkey, m, worked),
            "n_over": count_by(dkey, m, over),
            "n_denials": count_by(dkey, m, h.d_day <= T),
        }

    g = agg(np.zeros(nc, np.int64), np.zeros(len(h.d_claim), np.int64), 1)
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
    by_fam = rates(agg(h.c_proc, dfam, nf), g_over)
    # payer x CARC group: overturn rate pulled toward the payer's own; denial rate = group share
    dg = dpay * ng + h.d_group if len(h.d_claim) else np.zeros(0, np.int64)
    m = (npay + 1) * ng
    pg_n_den = count_by(dg, m, h.d_day <= T)
    pg_worked = count_by(dg, m, worked).astype(np.float64)
    pg_over = count_by(dg, m, over)
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
    # per CARC: how often worked denials were corrected rather than appealed, and how often each won
    # (each kind's rate pulled toward the CARC's own, which is pulled toward the global rate)
    ccode, carcs = (pd.factorize(h.d_carc, sort=True) if len(h.d_claim)
                    else (np.zeros(0, np.int64), np.zeros(0, object)))
    nk = len(carcs)
    ck = ccode >= 0
    corr = h.d_corrected if len(h.d_claim) else np.zeros(0, bool)
    k_worked = count_by(ccode[ck], nk, worked[ck]).astype(np.float64)
    k_over = count_by(ccode[ck], nk, over[ck])
    k_rate = _smooth(k_over, k_worked, g_over)
    k_corr = count_by(ccode[ck], nk, (worked & corr)[ck]).astype(np.float64)
    k_corr_over = count_by(ccode[ck], nk, (over & corr)[ck])
    k_app = k_worked - k_corr
    k_app_over = k_over - k_corr_over
    by_carc = pd.DataFrame({
        "level": "carc", "payer_id": None,
        "carc_group": np.array([carc_group(c) for c in carcs], dtype=object), "proc_family": None,
        "n_claims": 0, "n_denials": count_by(ccode[ck], nk, (h.d_day <= T)[ck]), "n_worked": k_worked.astype(np.int64),
        "denial_rate": np.nan, "overturn_rate": k_rate, "paid_to_billed": np.nan, "days_to_pay": np.nan,
        "carc": np.asarray(carcs, dtype=object), "n_corrected": k_corr.astype(np.int64),
        "appeal_overturn_rate": (k_app_over + PRIOR_COUNT * k_rate) / (k_app + PRIOR_COUNT),
        "correct_overturn_rate": (k_corr_over + PRIOR_COUNT * k_rate) / (k_corr + PRIOR_COUNT),
    })
    by_carc = by_carc[by_carc["n_denials"] > 0]  # only CARCs seen by T: the rows themselves are point in time
    keep_p = slice(0, npay)
    keep_pg = slice(0, npay * ng)
    frames = [
        _stats_frame("global", glob, None, None, None),
        _stats_frame("payer", {k: v[keep_p] for k, v in by_payer.items()}, h.pay_ids, None, None),
        _stats_frame(
            "payer_carc_group",
            {k: v[keep_pg] for k, v in pg.items()},
            np.repeat(h.pay_ids, ng),
            np.tile(np.array(CARC_GROUP_NAMES, dtype=object), npay),
            None,
        ),
        _stats_frame("proc_family", by_fam, None, None, np.array(PROC_FAMILIES, dtype=object)),
        by_carc,
    ]
    return pd.concat([f for f in frames if len(f)], ignore_index=True)


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
            "carc": none,
            "n_corrected": np.zeros(n, np.int64),
            "appeal_overturn_rate": np.full(n, np.nan),
            "correct_overturn_rate": np.full(n, np.nan),
        }
    )


def pooled_stats(ds: Dataset, as_of, horizons: Horizons = DEFAULT_HORIZONS, history: History | None = None
                 ) -> pd.DataFrame:
    """The point-in-time statistics table: rates per payer, payer x CARC group and procedure
    family (plus one global row), from rows on or before each as-of date only, smoothed toward
    the global rate with a prior count of `PRIOR_COUNT`. Columns: `STATS_COLUMNS`.

    Overturn rates use denials whose `horizons.overturn_horizon_days` window closed by the as-of
    date (the overturn label, as it was known then). `history`: `ds` already prepared."""
    h = history or History.from_dataset(ds)
    out = []
    for t in parse_as_of_dates(as_of):
        f = stats_table(h, day_number(t), horizons.overturn_horizon_days)
        f.insert(0, "as_of", t)
        out.append(f)
    return pd.concat(out, ignore_index=True)[STATS_COLUMNS]


# ------------------------------------------------------------------ lookup


@dataclass
class RateLookup:
    """A stats table's rates as arrays indexed like the history's codes."""

    payer: dict[str, np.ndarray]  # per payer code (+1 trailing slot: unknown / self-pay -> global)
    pg_over: np.ndarray  # [payer code (+1), group]
    fam: dict[str, np.ndarray]  # per procedure family index
    carc: dict[str, tuple[float, ...]]  # CARC -> CARC_WORK_COLUMNS (a table from before them: empty)


@dataclass
class _ParsedStats:
    glob: dict[str, float]
    payer: dict[str, dict[str, float]]  # column -> payer_id -> value
    pg_over: dict[tuple[str, str], float]
    fam: dict[str, np.ndarray]
    carc: dict[str, tuple[float, ...]]


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


def _parse(stats: pd.DataFrame) -> _ParsedStats:
    """A single-date stats table as dicts."""
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
    carc = {}
    if "carc" in stats:
        cs = stats[level == "carc"]
        carc = dict(zip(cs["carc"].to_numpy(dtype=object),
                        zip(*(cs[c].to_numpy(np.float64) for c in CARC_WORK_COLUMNS), strict=True), strict=True))
    return _ParsedStats(gvals, payer, pg_over, fam, carc)


def _holds_one_date(stats: pd.DataFrame) -> bool:
    return not ("as_of" in stats and len(stats) and not (stats["as_of"].iloc[0] == stats["as_of"]).all())


def rate_lookup(stats: pd.DataFrame, h: History, t: pd.Timestamp) -> RateLookup:
    """The rates of `stats` for the history's payers, groups and families at as-of `t` (a table of
    several dates: its latest date on or before `t`, else its earliest)."""
    if not _by_identity(stats, _holds_one_date):
        dates = pd.to_datetime(stats["as_of"])
        prior = dates[dates <= t]
        pick = prior.max() if len(prior) else dates.min()
        stats = stats[dates == pick]
    ps = _by_identity(stats, _parse)
    ng = len(CARC_GROUP_NAMES)
    payer = {c: np.array([ps.payer[c].get(pid, ps.glob[c]) for pid in h.pay_ids] + [ps.glob[c]]) for c in _RATE_COLS}
    pg = np.repeat(payer["overturn_rate"][:, None], ng, axis=1)
    for i, pid in enumerate(h.pay_ids):  # a loop over payers (tens), not accounts
        for j, g in enumerate(CARC_GROUP_NAMES):
            v = ps.pg_over.get((pid, g))
            if v is not None:
                pg[i, j] = v
    return RateLookup(payer, pg, ps.fam, ps.carc)


def rates_at(h: History, t: pd.Timestamp, stats: pd.DataFrame | None, horizons: Horizons) -> RateLookup:
    """The rates the feature blocks read at `t`: those of the given `stats` table (scoring: the
    model's stored table), else of the history's own table at `t` with the configured overturn
    horizon (training)."""
    if stats is None:
        stats = stats_table(h, day_number(t), horizons.overturn_horizon_days)
    return rate_lookup(stats, h, t)
