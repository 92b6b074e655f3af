"""A synthetic A/R history with exact ground truth: the population of accounts, payers and
guarantors, and the entry points that write it.

Each account is a day-stepped Markov chain whose every move (and what work does to it) is declared
once, in `features.sources.chain`. The simulator samples it day by day with an office working the
accounts (`features.sources.office`: every piece of work goes to the `work` table with the exact
probability that the office chose it), and `features.sources.truth` solves the same chain exactly
for H days at each month start: the probability and expected dollars under the office's usual work,
left alone, and after each feasible action. So `_truth/` is what the mechanism implies given the
full latent state at T, computed by exact summation, never by sampling.

Defaults follow published figures where they exist: initial denial rates of roughly 10-15% with
CO-16/CO-197/CO-50/CO-97 the most common CARCs; a few percent of claims lost by the payer, a few
pended for information; Medicare paying in about two weeks and commercial payers in three to five;
most fixable denials paid when worked, timely-filing denials almost never; patient balances paid
far less often than insurance balances, less with age and size of the debt.

Accounts are generated in chunks (latent draws from independent seeded streams; daily draws are
counter-based, keyed by account and day), so memory is bounded and the same seed gives the same
bytes for the same run configuration.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.sources import latent, ledger
from features.sources.chain import BIG, Mechanics
from features.sources.engine import Memory, Recorder, step_day
from features.sources.office import OfficeConfig
from features.sources.truth import denial_truth, truth_at, truth_frames

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- defaults
PAYER_CLASSES = ["medicare", "medicaid", "commercial", "managed_care", "workers_comp", "other"]
CLASS_MIX = np.array([0.30, 0.17, 0.32, 0.12, 0.03, 0.06])  # of insured accounts
SELF_PAY_SHARE = 0.10
# mean days from submission to adjudication, initial denial rate, allowed/billed, patient share
CLASS_DAYS = {"medicare": 14, "medicaid": 32, "commercial": 24, "managed_care": 28, "workers_comp": 45,
              "other": 36}
CLASS_DENY = {"medicare": 0.08, "medicaid": 0.15, "commercial": 0.12, "managed_care": 0.14,
              "workers_comp": 0.17, "other": 0.14}
CLASS_ALLOWED = {"medicare": 0.34, "medicaid": 0.26, "commercial": 0.55, "managed_care": 0.46,
                 "workers_comp": 0.62, "other": 0.42}
CLASS_PT_SHARE = {"medicare": 0.20, "medicaid": 0.02, "commercial": 0.16, "managed_care": 0.12,
                  "workers_comp": 0.0, "other": 0.15}
CLASS_SECONDARY = {"medicare": 0.55, "medicaid": 0.0, "commercial": 0.08, "managed_care": 0.05,
                   "workers_comp": 0.0, "other": 0.05}
CLASS_TIMELY = {"medicare": 365, "medicaid": 180, "commercial": 90, "managed_care": 120, "workers_comp": 180,
                "other": 180}
CLASS_APPEAL_WINDOW = {"medicare": 120, "medicaid": 60, "commercial": 180, "managed_care": 90,
                       "workers_comp": 90, "other": 90}
CLASS_OVERTURN_SHIFT = {"medicare": 0.3, "medicaid": -0.4, "commercial": 0.0, "managed_care": -0.2,
                        "workers_comp": -0.1, "other": -0.1}
PAYER_PREFIX = {"medicare": "MCR", "medicaid": "MCD", "commercial": "COM", "managed_care": "HMO",
                "workers_comp": "WC", "other": "OTH"}
PAYERS_PER_CLASS = {"medicare": 2, "medicaid": 3, "commercial": 6, "managed_care": 4, "workers_comp": 2,
                    "other": 3}

# denial causes (CARC), their share of denials, group code, remark, P(overturn | worked), how it is worked
CARCS = pd.DataFrame(
    [
        ("16", 0.22, "CO", "MA130", 0.86, "corrected"),
        ("197", 0.14, "CO", "N54", 0.55, "appeal"),
        ("50", 0.12, "CO", "N115", 0.42, "appeal"),
        ("97", 0.11, "CO", "M15", 0.30, "appeal"),
        ("18", 0.07, "OA", "M86", 0.18, "appeal"),
        ("22", 0.08, "CO", "MA04", 0.72, "corrected"),
        ("27", 0.07, "CO", "N30", 0.22, "appeal"),
        ("11", 0.07, "CO", "M76", 0.78, "corrected"),
        ("4", 0.07, "CO", "N519", 0.82, "corrected"),
        ("29", 0.05, "CO", None, 0.03, "appeal"),
    ],
    columns=["code", "share", "group", "remark", "overturn", "work"],
)
TIMELY_CARC = int(np.flatnonzero(CARCS["code"].to_numpy() == "29")[0])
MISSING_INFO_CARC = int(np.flatnonzero(CARCS["code"].to_numpy() == "16")[0])
GUARANTOR_TYPES = np.array([0.12, 0.23, 0.65])  # never pays, pays whatever is done (self-cure), responds to contact
HOUSEHOLD_SHARE = 0.15  # patients whose balances another patient of the household pays
# propensity of a denial to be worked per day, by how fixable collectors think the CARC is
CARC_WORK_RATE = {"16": 0.09, "197": 0.05, "50": 0.04, "97": 0.03, "18": 0.02, "22": 0.07, "27": 0.02,
                  "11": 0.07, "4": 0.08, "29": 0.015}

PROCEDURES = {  # encounter -> (codes, revenue codes, family)
    "professional": (["99213", "99214", "99203", "99204", "93000", "36415", "71046", "80053"], [None]),
    "outpatient": (["74177", "70450", "93306", "45378", "29881", "72148", "66984"], ["0320", "0350", "0360"]),
    "emergency": (["99283", "99284", "99285", "71045", "70450"], ["0450"]),
    "inpatient": (["99223", "99233", "99238", "36556"], ["0120", "0250", "0300", "0450"]),
}
ENCOUNTERS = ["professional", "outpatient", "emergency", "inpatient"]
ENCOUNTER_MIX = np.array([0.45, 0.30, 0.17, 0.08])
ENCOUNTER_CHARGE = {"professional": (5.3, 0.6), "outpatient": (7.4, 0.8), "emergency": (7.6, 0.7),
                    "inpatient": (10.2, 0.7)}  # lognormal mean, sd of total charges
ENCOUNTER_DENY = {"professional": 0.85, "outpatient": 1.1, "emergency": 1.0, "inpatient": 1.35}
DX = ["E11.9", "I10", "J18.9", "M54.50", "R07.9", "N39.0", "K21.9", "Z00.00", "S72.001A", "I50.9", "J44.1",
      "F32.9"]
STATES_US = ["CA", "TX", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI"]


@dataclass(frozen=True)
class SimConfig:
    n_accounts: int = 10_000
    seed: int = 0
    start: str = "2024-01-01"
    end: str = "2025-12-31"
    horizon_days: int = 60
    chunk_size: int = 50_000
    truth: bool = True
    office: OfficeConfig = field(default_factory=OfficeConfig)
    mechanics: Mechanics = field(default_factory=Mechanics)

    def __post_init__(self) -> None:
        shortest = min(min(CLASS_APPEAL_WINDOW.values()), self.mechanics.agency_wait_days)
        if self.truth and self.horizon_days > shortest:
            # the truth under the office's usual work reads a future denial's deadline as "not yet"
            raise ValueError(f"horizon_days {self.horizon_days} is longer than the shortest appeal window "
                             f"({shortest} days): the truth would not be exact; use at most {shortest}")


# ----------------------------------------------------------------------------- payers


def make_payers(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 7])
    rows = []
    names = {"medicare": ["Medicare Part A", "Medicare Part B"],
             "medicaid": ["State Medicaid", "Medicaid Managed Plan East", "Medicaid Managed Plan West"],
             "commercial": ["Blue Plan", "United Commercial", "Aetna Commercial", "Cigna Commercial",
                            "Regional Health Plan", "Employer Trust"],
             "managed_care": ["HMO North", "HMO South", "Medicare Advantage A", "Medicare Advantage B"],
             "workers_comp": ["State Fund WC", "Employer WC Carrier"],
             "other": ["Tricare", "Auto Liability", "VA Community Care"]}
    for cls in PAYER_CLASSES:
        for i, name in enumerate(names[cls][: PAYERS_PER_CLASS[cls]]):
            rows.append(dict(
                payer_id=f"{PAYER_PREFIX[cls]}{i + 1:02d}", payer_name=name, financial_class=cls,
                timely_filing_days=CLASS_TIMELY[cls], appeal_window_days=CLASS_APPEAL_WINDOW[cls],
                speed=float(np.exp(rng.normal(0, 0.25))), deny_mult=float(np.exp(rng.normal(0, 0.2))),
                allowed_mult=float(np.exp(rng.normal(0, 0.08))), overturn_shift=float(rng.normal(0, 0.25)),
                lost_mult=float(np.exp(rng.normal(0, 0.6))), pend_mult=float(np.exp(rng.normal(0, 0.4))),
                reject_mult=float(np.exp(rng.normal(0, 0.5))),
            ))
    rows.append(dict(payer_id="SELFPAY", payer_name="Self pay", financial_class="self_pay",
                     timely_filing_days=None, appeal_window_days=None, speed=1.0, deny_mult=1.0,
                     allowed_mult=1.0, overturn_shift=0.0, lost_mult=0.0, pend_mult=0.0,
                     reject_mult=0.0))
    df = pd.DataFrame(rows)
    df["timely_filing_days"] = df["timely_filing_days"].astype("Int64")
    df["appeal_window_days"] = df["appeal_window_days"].astype("Int64")
    return df


# ----------------------------------------------------------------------------- accounts (latent)


def _draw_accounts(rng: np.random.Generator, n: int, first: int, n_days: int, payers: pd.DataFrame,
                   mech: Mechanics) -> dict:
    """Every latent variable of the chunk's accounts, drawn at creation."""
    insured = payers[payers.financial_class != "self_pay"].reset_index(drop=True)
    cls_of_payer = insured["financial_class"].to_numpy()
    P: dict = {"n": n, "first": first, "mech": mech, "gid": first + np.arange(n, dtype=np.int64)}
    P["service_day"] = rng.integers(0, max(n_days - 7, 1), n)
    enc = rng.choice(4, n, p=ENCOUNTER_MIX)
    P["encounter"] = enc
    los = np.where(enc == 3, rng.integers(2, 9, n), 0)
    P["los"] = los
    P["service_day"] = np.minimum(P["service_day"], n_days - 1 - los)  # discharged by the extract date
    selfpay = rng.random(n) < SELF_PAY_SHARE
    P["selfpay"] = selfpay
    cls_idx = rng.choice(len(PAYER_CLASSES), n, p=CLASS_MIX)
    cls = np.array(PAYER_CLASSES)[cls_idx]
    payer_ix = np.empty(n, dtype=np.int64)
    for c in PAYER_CLASSES:
        m = cls == c
        options = np.flatnonzero(cls_of_payer == c)
        payer_ix[m] = rng.choice(options, m.sum())
    P["payer_ix"] = payer_ix
    P["cls"] = np.where(selfpay, "self_pay", cls)
    mu = np.array([ENCOUNTER_CHARGE[ENCOUNTERS[e]][0] for e in range(4)])[enc]
    sd = np.array([ENCOUNTER_CHARGE[ENCOUNTERS[e]][1] for e in range(4)])[enc]
    charges = np.round(np.exp(rng.normal(mu, sd)), 2)
    P["charges"] = np.maximum(charges, 25.0)
    P["age"] = np.where(cls == "medicare", rng.integers(65, 95, n), rng.integers(0, 65, n))
    # claim lines: 1-4, procedure drawn from the encounter's list
    P["n_lines"] = rng.integers(1, 5, n)
    P["proc_seed"] = rng.integers(0, 2**31, n)
    # submission lag (latent, drawn now): mostly days, a thin tail of late claims
    lag = rng.geometric(1 / 6, n) + los
    late = rng.random(n) < 0.025
    lag = np.where(late, lag + rng.integers(90, 400, n), lag)
    P["submit_day"] = P["service_day"] + lag
    timely = insured["timely_filing_days"].to_numpy(dtype=float)[payer_ix]
    P["late_filed"] = (lag > timely) & ~selfpay
    # adjudication speed (3 Erlang stages)
    mean_days = np.array([CLASS_DAYS[c] for c in cls]) / insured["speed"].to_numpy()[payer_ix]
    P["r_ins"] = np.clip(3.0 / mean_days, 0.02, 0.9)
    # denial: probability from what the claim shows, cause drawn now (hidden until the remit)
    proc_risk = _procedure_risk(P)
    deny = (np.array([CLASS_DENY[c] for c in cls]) * insured["deny_mult"].to_numpy()[payer_ix]
            * np.array([ENCOUNTER_DENY[ENCOUNTERS[e]] for e in range(4)])[enc] * proc_risk)
    deny = np.clip(deny, 0.01, 0.6)
    P["p_deny"] = np.where(P["late_filed"], 0.95, deny)
    shares = CARCS["share"].to_numpy().copy()
    shares[TIMELY_CARC] = 0.0  # timely-filing denials come from late filing only
    carc = rng.choice(len(CARCS), n, p=shares / shares.sum())
    # some claims are lost (never received) and some pended for information; a pend nobody answers
    # is denied CO-16, so a claim that will pend carries that cause
    P["p_lost"] = np.where(P["late_filed"] | selfpay, 0.0,
                           np.clip(mech.lost_rate * insured["lost_mult"].to_numpy()[payer_ix], 0, 0.5))
    P["p_reject"] = np.where(P["late_filed"] | selfpay, 0.0,
                             np.clip(mech.reject_rate * insured["reject_mult"].to_numpy()[payer_ix], 0, 0.5))
    P["will_pend"] = (rng.random(n) < mech.pend_rate * insured["pend_mult"].to_numpy()[payer_ix]) & ~P["late_filed"]
    carc = np.where(P["will_pend"], MISSING_INFO_CARC, carc)
    P["carc"] = np.where(P["late_filed"], TIMELY_CARC, carc)
    # overturn if worked: CARC, payer and claim (bigger claims are fought harder by payers)
    base = CARCS["overturn"].to_numpy()[P["carc"]]
    logit = (np.log(base / (1 - base)) + np.array([CLASS_OVERTURN_SHIFT[c] for c in cls])
             + insured["overturn_shift"].to_numpy()[payer_ix] - 0.25 * np.log(P["charges"] / 2000.0))
    P["q_overturn"] = 1 / (1 + np.exp(-logit))
    P["work_kind"] = (CARCS["work"].to_numpy()[P["carc"]] == "corrected").astype(np.int64)  # 1: corrected claim
    P["q_appeal"] = np.where(P["work_kind"] == 0, P["q_overturn"], P["q_overturn"] * mech.wrong_work_factor)
    P["q_correct"] = np.where(P["work_kind"] == 1, P["q_overturn"], P["q_overturn"] * mech.wrong_work_factor)
    P["work_rate"] = (np.array([CARC_WORK_RATE[c] for c in CARCS["code"].to_numpy()[P["carc"]]])
                      * np.clip(np.log10(P["charges"]) / 3.0, 0.4, 1.6))
    # money
    allowed_ratio = (np.array([CLASS_ALLOWED[c] for c in cls]) * insured["allowed_mult"].to_numpy()[payer_ix]
                     * np.exp(rng.normal(0, 0.08, n)))
    allowed = np.round(P["charges"] * np.clip(allowed_ratio, 0.05, 1.0), 2)
    pt_share = np.clip(np.array([CLASS_PT_SHARE[c] for c in cls]) * rng.uniform(0.3, 1.7, n), 0, 0.6)
    pt_resp = np.round(allowed * pt_share, 2)
    has_sec = (rng.random(n) < np.array([CLASS_SECONDARY[c] for c in cls])) & ~selfpay
    sec_ix = rng.choice(np.flatnonzero(np.isin(cls_of_payer, ["medicaid", "commercial", "other"])), n)
    P["has_sec"], P["sec_ix"] = has_sec, sec_ix
    a2 = np.where(has_sec, np.round(pt_resp * rng.uniform(0.7, 1.0, n), 2), 0.0)
    discount = np.round(P["charges"] * 0.4, 2)
    P["allowed"] = np.where(selfpay, P["charges"] - discount, allowed)
    P["selfpay_discount"] = np.where(selfpay, discount, 0.0)
    P["a1"] = np.where(selfpay, 0.0, allowed - pt_resp)
    P["pt_resp"] = np.where(selfpay, 0.0, pt_resp)
    P["a2"] = a2
    P["pt_rem"] = np.where(selfpay, P["charges"] - discount, np.round(pt_resp - a2, 2))
    P["inst"] = np.round(P["pt_rem"] / 3, 2)
    P["r_sec"] = np.full(n, 2.0 / 20)
    P["r_app"] = np.full(n, 2.0 / 35)
    P["r_corr"] = np.full(n, 2.0 / mech.corrected_days)
    P["tf_day"] = np.where(selfpay, BIG, P["service_day"] + np.nan_to_num(timely, nan=0).astype(np.int64))
    P["appeal_window"] = insured["appeal_window_days"].to_numpy(dtype=float)[payer_ix].astype(np.int64)
    _draw_people(rng, P, n, first)
    P["fa_eligible"] = (P["pt_rem"] > 1000) & (rng.random(n) < 0.35)
    P["anchor"] = rng.integers(0, 30, n)
    P["p_reversal"] = np.full(n, 0.0006)
    copays = np.where(enc == 2, rng.choice([100.0, 150.0], n), rng.choice([20.0, 30.0, 40.0, 50.0], n))
    P["copay"] = np.where(np.isin(cls, ["commercial", "managed_care"]) & (enc < 3) & ~selfpay, copays, 0.0)
    _table_fields(P, insured, first)
    return P


def _draw_people(rng: np.random.Generator, P: dict, n: int, first: int) -> None:
    """Patients, and the guarantors who pay for them (a household may hold several patients). What
    decides patient payment is the guarantor's, shared by all their accounts and seen only through
    what they do: their type (self-cure, never pays, or responds to contact), propensity,
    reachability by phone, and willingness to take a payment plan."""
    n_patients = max(int(n / 1.25), 1)
    patient = rng.integers(0, n_patients, n)
    # most patients pay for themselves; some are in another patient's household (a parent pays)
    dependent = rng.random(n_patients) < HOUSEHOLD_SHARE
    head = rng.integers(0, n_patients, n_patients)
    guarantor = np.where(dependent, head, np.arange(n_patients))[patient]
    n_guarantors = n_patients  # guarantor ids are patient ids (of the household's payer)
    kind = rng.choice(3, n_guarantors, p=GUARANTOR_TYPES)  # 0 never pays, 1 self-cure, 2 responds to contact
    prop = np.exp(rng.normal(0, 0.35, n_guarantors)) * np.array([0.0, 2.2, 0.8])[kind]
    resp = np.exp(rng.normal(0, 0.4, n_guarantors)) * np.array([0.0, 0.3, 1.0])[kind]
    reach = rng.beta(2.0, 3.0, n_guarantors)
    accept = rng.beta(2.0, 5.0, n_guarantors) * (kind > 0)
    P["patient"], P["guarantor"] = patient, guarantor
    P["guarantor_gid"] = first * 10 + guarantor
    age_f = np.where(P["age"] >= 65, 1.3, np.where(P["age"] < 18, 1.1, 1.0))
    bal_f = 1.0 / np.sqrt(1.0 + P["pt_rem"] / 400.0)
    P["h_pay"] = np.clip(0.020 * prop[guarantor] * age_f * bal_f, 0, 0.2)
    P["resp"] = resp[guarantor] * bal_f
    P["reach"], P["accept"] = reach[guarantor], accept[guarantor]
    P["p_plan"] = np.where(P["pt_rem"] > 300, 0.003 * prop[guarantor], 0.0)


def _table_fields(P: dict, insured: pd.DataFrame, first: int) -> None:
    """What the tables show of each account, fixed at creation (ids, codes, claim lines)."""
    ids = ledger.ids
    n = P["n"]
    payer_ids = insured["payer_id"].to_numpy(dtype=object)
    P["account_id"] = ids("A", P["gid"])
    P["claim_base"] = ids("C", P["gid"])
    P["patient_id"] = ids("PT", first * 10 + P["patient"], 10)
    P["guarantor_id"] = ids("G", P["guarantor_gid"], 10)
    P["encounter_type"] = np.array(ENCOUNTERS, dtype=object)[P["encounter"]]
    P["patient_state"] = np.array(STATES_US, dtype=object)[P["patient"] % len(STATES_US)]
    P["payer_id"] = np.where(P["selfpay"], None, payer_ids[P["payer_ix"]])
    P["sec_payer_id"] = payer_ids[P["sec_ix"]]
    P["dx"] = np.array(DX, dtype=object)[P["proc_seed"] % len(DX)]
    P["carc_code"] = CARCS["code"].to_numpy(dtype=object)[P["carc"]]
    P["carc_group"] = CARCS["group"].to_numpy(dtype=object)[P["carc"]]
    P["carc_remark"] = CARCS["remark"].to_numpy(dtype=object)[P["carc"]]
    P["line_proc"] = np.stack([_procedure_codes(P, line) for line in range(4)], axis=1)
    P["line_mod"] = np.stack([np.where((P["proc_seed"] // (5 ** line)) % 9 == 0, "25", None)
                              for line in range(4)], axis=1).astype(object)
    rev = np.empty((n, 4), dtype=object)
    for line in range(4):
        for e, name in enumerate(ENCOUNTERS):
            m = P["encounter"] == e
            opts = np.array(PROCEDURES[name][1], dtype=object)
            rev[m, line] = opts[(P["proc_seed"][m] // (3 ** line)) % len(opts)]
    P["line_rev"] = rev


def _procedure_risk(P: dict) -> np.ndarray:
    first_proc = _procedure_codes(P, 0)
    risky = np.isin(first_proc, ["74177", "70450", "72148", "93306", "29881", "45378"])  # imaging, scopes
    return np.where(risky, 1.35, 1.0)


def _procedure_codes(P: dict, line: int) -> np.ndarray:
    out = np.empty(P["n"], dtype=object)
    for e, name in enumerate(ENCOUNTERS):
        m = P["encounter"] == e
        codes = np.array(PROCEDURES[name][0], dtype=object)
        out[m] = codes[(P["proc_seed"][m] // (7**line)) % len(codes)]
    return out


# ----------------------------------------------------------------------------- entry points


def month_starts(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    first = (start + pd.offsets.MonthBegin(0)) if start.day != 1 else start
    return list(pd.date_range(first, end, freq="MS"))


def _one_chunk(cfg: SimConfig, c: int, stream: np.random.SeedSequence):
    """Chunk c of the run: its accounts' latent draw, their histories (the office working them), and
    their truth; the latent state at the end, for the arena."""
    t0 = time.perf_counter()
    start, end = pd.Timestamp(cfg.start), pd.Timestamp(cfg.end)
    n_days = int((end - start).days) + 1
    payers = make_payers(cfg.seed)
    truth_days = {int((t - start).days) for t in month_starts(start, end)} if cfg.truth else set()
    first = c * cfg.chunk_size
    n = min(cfg.chunk_size, cfg.n_accounts - first)
    rng = np.random.default_rng(stream)
    P = _draw_accounts(rng, n, first, n_days, payers, cfg.mechanics)
    mem, rec = Memory.fresh(n), Recorder()
    acc, act = [], []
    t_truth = 0.0
    for d in range(n_days):
        step_day(P, mem, d, cfg.seed, rec, cfg.office)
        if d in truth_days:
            t1 = time.perf_counter()
            a, b = truth_at(P, mem.state, mem.clocks(P), d, cfg.horizon_days, cfg.office)
            b["claim"] = mem.claim[b["acct"]]
            acc.append(a)
            act.append(b)
            t_truth += time.perf_counter() - t1
    ev, wk = rec.frames()
    tables = ledger.build_tables(P, ev, wk, start)
    tables["payers"] = payers[["payer_id", "payer_name", "financial_class", "timely_filing_days", "appeal_window_days"]]
    truth = {}
    if cfg.truth:
        truth = truth_frames(P, start, acc, act)
        truth["denials"] = denial_truth(P, ev, start, cfg.office)
    truth["latent"] = latent.to_frame(P, mem)
    if c == 0:
        truth["simulation"] = latent.config_frame(cfg)
    log.info("simulated chunk %d (%d accounts) in %.1fs (truth %.1fs)", c + 1, n, time.perf_counter() - t0, t_truth)
    return c, tables, truth


def draw_arrivals(config: dict, n: int, first: int, first_day: int, days: int, seed: int) -> dict:
    """The latent draw of `n` accounts (global ids from `first`) whose service dates fall in the
    `days` days from day `first_day`: the patients an office keeps receiving (the arena's inflow).
    `config` is the run's `_truth/simulation.json`."""
    payers = make_payers(int(config["seed"]))
    mech = latent.mechanics_of(config)
    rng = np.random.default_rng([int(config["seed"]), 99, int(seed)])
    P = _draw_accounts(rng, n, first, days + 7, payers, mech)
    for k in ("service_day", "submit_day"):
        P[k] = P[k] + first_day
    P["tf_day"] = np.where(P["tf_day"] < BIG, P["tf_day"] + first_day, BIG)
    return P


def simulate_chunks(cfg: SimConfig, workers: int = 1):
    """Yield (chunk, tables, truth) in chunk order; each chunk has its own seeded stream, so the
    output does not depend on how many worker processes made it."""
    n_chunks = max(1, -(-cfg.n_accounts // cfg.chunk_size))
    streams = np.random.SeedSequence(cfg.seed).spawn(n_chunks)
    if workers <= 1 or n_chunks == 1:
        for c in range(n_chunks):
            yield _one_chunk(cfg, c, streams[c])
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = {}
        for c in range(min(workers, n_chunks)):  # at most `workers` chunks in flight: bounded memory
            pending[c] = pool.submit(_one_chunk, cfg, c, streams[c])
        for c in range(n_chunks):
            result = pending.pop(c).result()
            nxt = c + workers
            if nxt < n_chunks:
                pending[nxt] = pool.submit(_one_chunk, cfg, nxt, streams[nxt])
            yield result


def _config(n_accounts, seed, start, end, horizon_days, chunk_size, truth, office, mechanics) -> SimConfig:
    return SimConfig(n_accounts, seed, start, end, horizon_days, chunk_size, truth, office or OfficeConfig(),
                     mechanics or Mechanics())


def simulate(n_accounts: int = 10_000, seed: int = 0, start: str = "2024-01-01", end: str = "2025-12-31",
             horizon_days: int = 60, chunk_size: int = 50_000, truth: bool = True,
             office: OfficeConfig | None = None, mechanics: Mechanics | None = None):
    """Simulate in memory; returns a `features.contract.Dataset` with `_truth/` tables in `extra`."""
    from features.contract import Dataset

    cfg = _config(n_accounts, seed, start, end, horizon_days, chunk_size, truth, office, mechanics)
    parts: dict[str, list[pd.DataFrame]] = {}
    for c, tables, tr in simulate_chunks(cfg):
        for name, df in tables.items():
            if name == "payers" and c > 0:
                continue
            parts.setdefault(name, []).append(df)
        for name, df in tr.items():
            parts.setdefault(f"_truth/{name}", []).append(df)
    merged = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    tables = {k: v for k, v in merged.items() if not k.startswith("_truth/")}
    extra = {k: v for k, v in merged.items() if k.startswith("_truth/")}
    return Dataset(tables, extract_date=pd.Timestamp(end), source="simulated", extra=extra)


def simulate_to_folder(out: str | Path, n_accounts: int = 10_000, seed: int = 0, start: str = "2024-01-01",
                       end: str = "2025-12-31", horizon_days: int = 60, chunk_size: int = 50_000,
                       truth: bool = True, progress=None, workers: int = 1, office: OfficeConfig | None = None,
                       mechanics: Mechanics | None = None) -> Path:
    """Simulate chunk by chunk straight to Parquet (bounded memory), atomically."""
    from features.contract import DatasetWriter

    out = Path(out)
    cfg = _config(n_accounts, seed, start, end, horizon_days, chunk_size, truth, office, mechanics)
    with DatasetWriter(out) as writer:
        for c, tables, tr in simulate_chunks(cfg, workers):
            for name, df in tables.items():
                if name != "payers" or c == 0:  # every chunk carries the same payers
                    writer.write(name, df)
            for name, df in tr.items():
                writer.write(f"_truth/{name}", df)
            if progress is not None:
                progress(min((c + 1) * chunk_size, n_accounts))
    return out
