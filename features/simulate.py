"""A synthetic A/R history with exact ground truth.

Each account is a small day-stepped Markov chain (states below). The same function, `_edges`,
gives the probability of every move out of a state on a given day; the simulator samples from it
and `_truth_for_open` propagates the state distribution through it for H days. So `_truth/` is the
exact probability and expected dollars the mechanism implies given its latent state at T (the
state, the Erlang sub-stage of a pending adjudication, the patient's propensity, the claim's
hidden denial cause), computed by exact summation, never by sampling.

Defaults follow published figures where they exist: initial denial rates of roughly 10-15% with
CO-16/CO-197/CO-50/CO-97 the most common CARCs; Medicare paying in about two weeks and commercial
payers in three to five; most fixable denials paid when worked, timely-filing denials almost never;
patient balances paid far less often than insurance balances, less with age and size of the debt.

Accounts are generated in chunks with independent seeded streams, so memory is bounded and the
same seed gives the same bytes whatever the chunk size... of the same run configuration.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- states
(NOT_STARTED, PRE_BILL, INS_1, INS_2, INS_3, DENIED, APPEAL_1, APPEAL_2, DENIED_FINAL, SEC_1, SEC_2,
 PAT_1, PAT_2, PAT_3, PAT_4, PLAN_3, PLAN_2, PLAN_1, FA_PENDING, BANKRUPT,
 CLOSED_PAID, CLOSED_WRITEOFF, CLOSED_AGENCY) = range(23)
N_STATES = 23
OPEN_STATES = np.array([PRE_BILL, INS_1, INS_2, INS_3, DENIED, APPEAL_1, APPEAL_2, DENIED_FINAL, SEC_1,
                        SEC_2, PAT_1, PAT_2, PAT_3, PAT_4, PLAN_3, PLAN_2, PLAN_1, FA_PENDING, BANKRUPT])
PAT_STATES = (PAT_1, PAT_2, PAT_3, PAT_4)
PLAN_STATES = (PLAN_3, PLAN_2, PLAN_1)

# event kinds
(EV_CHARGE, EV_SUBMIT, EV_PAID, EV_DENY, EV_WORK, EV_OVERTURN, EV_UPHELD, EV_DENIAL_WO, EV_SEC_PAID,
 EV_PAT_PAY, EV_PLAN_START, EV_INSTALLMENT, EV_PLAN_DEFAULT, EV_FA_APP, EV_CHARITY, EV_FA_DENIED,
 EV_BANKRUPTCY, EV_BK_WO, EV_AGENCY, EV_REVERSAL, EV_STATEMENT, EV_CALL_ATTEMPT, EV_CALL_CONTACT,
 EV_LETTER, EV_NONE) = range(25)

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
            ))
    rows.append(dict(payer_id="SELFPAY", payer_name="Self pay", financial_class="self_pay",
                     timely_filing_days=None, appeal_window_days=None, speed=1.0, deny_mult=1.0,
                     allowed_mult=1.0, overturn_shift=0.0))
    df = pd.DataFrame(rows)
    df["timely_filing_days"] = df["timely_filing_days"].astype("Int64")
    df["appeal_window_days"] = df["appeal_window_days"].astype("Int64")
    return df


# ----------------------------------------------------------------------------- accounts (latent)


def _draw_accounts(rng: np.random.Generator, n: int, first: int, n_days: int, payers: pd.DataFrame) -> dict:
    """Every latent variable of the chunk's accounts, drawn at creation."""
    insured = payers[payers.financial_class != "self_pay"].reset_index(drop=True)
    cls_of_payer = insured["financial_class"].to_numpy()
    P: dict = {"n": n, "first": first}
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
    P["carc"] = np.where(P["late_filed"], TIMELY_CARC, carc)
    # overturn if worked: CARC, payer and claim (bigger claims are fought harder by payers)
    base = CARCS["overturn"].to_numpy()[P["carc"]]
    logit = (np.log(base / (1 - base)) + np.array([CLASS_OVERTURN_SHIFT[c] for c in cls])
             + insured["overturn_shift"].to_numpy()[payer_ix] - 0.25 * np.log(P["charges"] / 2000.0))
    P["q_overturn"] = 1 / (1 + np.exp(-logit))
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
    # patient behaviour: a latent propensity per patient, observed only through what they do
    n_patients = max(int(n / 1.25), 1)
    patient = rng.integers(0, n_patients, n)
    prop = np.exp(rng.normal(0, 0.2, n_patients))[patient]
    P["patient"] = patient
    age_f = np.where(P["age"] >= 65, 1.3, np.where(P["age"] < 18, 1.1, 1.0))
    bal_f = 1.0 / np.sqrt(1.0 + P["pt_rem"] / 400.0)
    P["h_pay"] = np.clip(0.020 * prop * age_f * bal_f, 0, 0.2)
    P["p_plan"] = np.where(P["pt_rem"] > 300, 0.003 * prop, 0.0)
    P["fa_eligible"] = (P["pt_rem"] > 1000) & (rng.random(n) < 0.35)
    P["anchor"] = rng.integers(0, 30, n)
    P["p_reversal"] = np.full(n, 0.0006)
    return P


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


# ----------------------------------------------------------------------------- the mechanism


def _next_after_primary(P: dict, ix: np.ndarray) -> np.ndarray:
    return np.where(P["has_sec"][ix], SEC_1, np.where(P["pt_rem"][ix] > 0, PAT_1, CLOSED_PAID))


def _balance(P: dict, s: int, ix: np.ndarray) -> np.ndarray:
    """The ledger balance of accounts in state s (every amount is fixed by the latent draw)."""
    if s in (PRE_BILL, INS_1, INS_2, INS_3, DENIED, APPEAL_1, APPEAL_2, DENIED_FINAL):
        return P["charges"][ix]
    if s in (SEC_1, SEC_2):
        return P["pt_resp"][ix]
    if s in PLAN_STATES:
        k = {PLAN_3: 3, PLAN_2: 2, PLAN_1: 1}[s]
        return np.round(P["pt_rem"][ix] - (3 - k) * P["inst"][ix], 2)
    return P["pt_rem"][ix]


def _edges(s: int, d: int, P: dict, ix: np.ndarray, contact: np.ndarray | None):
    """Moves out of state s on day d for accounts ix: [(dst, prob, event, dollars or None)].

    `contact` is the day's call-contact draw (simulation) or None (truth: its expectation).
    """
    one = np.ones(len(ix))
    if s == NOT_STARTED:
        on = (P["service_day"][ix] == d).astype(float)
        return [(np.where(P["selfpay"][ix], PAT_1, PRE_BILL), on, EV_CHARGE, None)]
    if s == PRE_BILL:
        return [(INS_1, (P["submit_day"][ix] == d).astype(float), EV_SUBMIT, None)]
    if s in (INS_1, INS_2):
        return [(s + 1, P["r_ins"][ix], EV_NONE, None)]
    if s == INS_3:
        r, pd_ = P["r_ins"][ix], P["p_deny"][ix]
        return [(_next_after_primary(P, ix), r * (1 - pd_), EV_PAID, P["a1"][ix]),
                (DENIED, r * pd_, EV_DENY, None)]
    if s == DENIED:
        w = P["work_rate"][ix]
        return [(APPEAL_1, w, EV_WORK, None), (CLOSED_WRITEOFF, (1 - w) / 120.0, EV_DENIAL_WO, None)]
    if s == APPEAL_1:
        return [(APPEAL_2, P["r_app"][ix], EV_NONE, None)]
    if s == APPEAL_2:
        r, q = P["r_app"][ix], P["q_overturn"][ix]
        return [(_next_after_primary(P, ix), r * q, EV_OVERTURN, P["a1"][ix]),
                (DENIED_FINAL, r * (1 - q), EV_UPHELD, None)]
    if s == DENIED_FINAL:
        return [(CLOSED_WRITEOFF, one / 30.0, EV_DENIAL_WO, None)]
    if s == SEC_1:
        return [(SEC_2, P["r_sec"][ix], EV_NONE, None), (SEC_1, P["p_reversal"][ix], EV_REVERSAL, None)]
    if s == SEC_2:
        nxt = np.where(P["pt_rem"][ix] > 0, PAT_1, CLOSED_PAID)
        return [(nxt, P["r_sec"][ix], EV_SEC_PAID, P["a2"][ix]),
                (SEC_2, P["p_reversal"][ix], EV_REVERSAL, None)]
    if s in PAT_STATES:
        stage = s - PAT_1
        in_boost = ((d - P["anchor"][ix]) % 30) < 10
        base = P["h_pay"][ix] * np.array([1.0, 0.55, 0.3, 0.15])[stage] * np.where(in_boost, 1.8, 1.0)
        p_contact = _contact_prob(s, P, ix)
        pay = base + 0.12 * (p_contact if contact is None else contact)
        out = [(CLOSED_PAID, pay, EV_PAT_PAY, P["pt_rem"][ix]),
               (PLAN_3, P["p_plan"][ix], EV_PLAN_START, None),
               (FA_PENDING, np.where(P["fa_eligible"][ix], 0.004, 0.0), EV_FA_APP, None),
               (BANKRUPT, one * 0.00015, EV_BANKRUPTCY, None),
               (s, P["p_reversal"][ix] * (~P["selfpay"][ix]), EV_REVERSAL, None)]
        if s < PAT_4:
            # each step into a later collection stage sends the next dunning letter (and is seen as one)
            out.append((s + 1, one * [1 / 40, 1 / 60, 1 / 60][stage], EV_LETTER, None))
        else:
            out.append((CLOSED_AGENCY, one / 45.0, EV_AGENCY, None))
        return out
    if s in PLAN_STATES:
        k = {PLAN_3: 3, PLAN_2: 2, PLAN_1: 1}[s]
        amount = P["inst"][ix] if k > 1 else np.round(P["pt_rem"][ix] - 2 * P["inst"][ix], 2)
        return [(s + 1 if k > 1 else CLOSED_PAID, one / 30.0, EV_INSTALLMENT, amount),
                (CLOSED_WRITEOFF, one / 250.0, EV_PLAN_DEFAULT, None)]
    if s == FA_PENDING:
        return [(CLOSED_WRITEOFF, one * 0.6 / 30, EV_CHARITY, None), (PAT_3, one * 0.4 / 30, EV_FA_DENIED, None)]
    if s == BANKRUPT:
        return [(CLOSED_WRITEOFF, one / 150.0, EV_BK_WO, None)]
    return []


def _contact_prob(s: int, P: dict, ix: np.ndarray) -> np.ndarray:
    if s in (PAT_2, PAT_3, PAT_4):
        return np.where(P["pt_rem"][ix] > 100, 0.05 * 0.35, 0.0)
    return np.zeros(len(ix))


# ----------------------------------------------------------------------------- simulation


def _simulate_chunk(P: dict, rng: np.random.Generator, n_days: int, truth_days: list[int], horizon: int):
    n = P["n"]
    state = np.full(n, NOT_STARTED, dtype=np.int8)
    events: list[tuple[np.ndarray, int, int, np.ndarray | None, np.ndarray]] = []
    truth_rows = []
    truth_set = set(truth_days)
    for d in range(n_days):
        new_state = state.copy()
        order = np.argsort(state, kind="stable")
        counts = np.bincount(state, minlength=N_STATES)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for s in range(N_STATES):
            if counts[s] == 0 or s in (CLOSED_PAID, CLOSED_WRITEOFF, CLOSED_AGENCY):
                continue
            ix = order[bounds[s]:bounds[s + 1]]
            if s == NOT_STARTED:
                ix = ix[P["service_day"][ix] == d]
                if len(ix) == 0:
                    continue
            contact = None
            if s in PAT_STATES:
                stmt = ((d - P["anchor"][ix]) % 30) == 0
                if stmt.any():
                    events.append((ix[stmt], d, EV_STATEMENT, None, np.full(stmt.sum(), s)))
                pc = _contact_prob(s, P, ix)
                attempt = rng.random(len(ix)) < np.where(pc > 0, 0.05, 0.0)
                contact = (attempt & (rng.random(len(ix)) < 0.35)).astype(float)
                if attempt.any():
                    events.append((ix[attempt], d, EV_CALL_ATTEMPT, None, np.full(attempt.sum(), s)))
                if contact.any():
                    c = contact > 0
                    events.append((ix[c], d, EV_CALL_CONTACT, None, np.full(c.sum(), s)))
            edges = _edges(s, d, P, ix, contact)
            u = rng.random(len(ix))
            cum = np.zeros(len(ix))
            taken = np.zeros(len(ix), dtype=bool)
            for dst, prob, ev, dollars in edges:
                hit = ~taken & (u < cum + prob)
                cum = cum + prob
                if hit.any():
                    dst_arr = np.broadcast_to(dst, len(ix))[hit]
                    new_state[ix[hit]] = dst_arr
                    amt = None if dollars is None else dollars[hit]
                    events.append((ix[hit], d, ev, amt, np.full(hit.sum(), s)))
                    taken |= hit
        state = new_state
        if d in truth_set:
            truth_rows.append(_truth_for_open(P, state, d, horizon))
    return events, truth_rows, state


def _truth_for_open(P: dict, state: np.ndarray, t: int, horizon: int) -> pd.DataFrame:
    """Exact P(any net payment in (t, t+H]) and expected dollars, by propagating the chain."""
    open_ix = np.flatnonzero(np.isin(state, OPEN_STATES))
    m = len(open_ix)
    # state-major layout: one contiguous row of mass per state
    pi = np.zeros((N_STATES, m))
    pi[state[open_ix], np.arange(m)] = 1.0
    nopay = pi.copy()
    dollars = np.zeros(m)
    for d in range(t + 1, t + horizon + 1):
        new_pi, new_nopay = pi.copy(), nopay.copy()
        for s in OPEN_STATES:
            live = np.flatnonzero(pi[s])  # nopay mass is never positive where pi is zero
            if len(live) == 0:
                continue
            mass, mass0 = pi[s, live], nopay[s, live]
            for dst, prob, _ev, amount in _edges(int(s), d, P, open_ix[live], None):
                if np.ndim(dst) == 0 and dst == s:
                    continue  # a self-loop (a reversal pair) moves no mass and nets no dollars
                moved, moved0 = mass * prob, mass0 * prob
                new_pi[s, live] -= moved
                new_nopay[s, live] -= moved0
                new_pi[dst, live] += moved  # (dst, live) pairs are distinct, so fancy += is exact
                if amount is not None:
                    dollars[live] += moved * amount
                else:
                    new_nopay[dst, live] += moved0
        pi, nopay = new_pi, new_nopay
    return pd.DataFrame({"acct": open_ix, "day": t, "p_payment": 1.0 - nopay.sum(axis=0),
                         "expected_recovery": dollars})


# ----------------------------------------------------------------------------- tables


def _ids(prefix: str, values: np.ndarray, width: int = 8) -> np.ndarray:
    return (prefix + pd.Series(values, dtype="int64").astype(str).str.zfill(width)).to_numpy(dtype=object)


def _build_tables(P: dict, events, payers: pd.DataFrame, start: pd.Timestamp) -> dict[str, pd.DataFrame]:
    insured = payers[payers.financial_class != "self_pay"].reset_index(drop=True)
    ev = pd.DataFrame({
        "acct": np.concatenate([e[0] for e in events]) if events else np.array([], dtype=np.int64),
        "day": np.concatenate([np.full(len(e[0]), e[1]) for e in events]) if events else np.array([]),
        "kind": np.concatenate([np.full(len(e[0]), e[2]) for e in events]) if events else np.array([]),
        "amount": np.concatenate([e[3] if e[3] is not None else np.full(len(e[0]), np.nan) for e in events])
        if events else np.array([]),
        "from_state": np.concatenate([e[4] for e in events]) if events else np.array([]),
    })
    ev["seq"] = np.arange(len(ev))
    ev = ev.sort_values(["acct", "day", "seq"], kind="stable").reset_index(drop=True)
    first = P["first"]
    gid = first + ev["acct"].to_numpy()
    date = start + pd.to_timedelta(ev["day"].to_numpy(), unit="D")
    ev["gid"], ev["date"] = gid, date
    ev["n_in_acct"] = ev.groupby("acct").cumcount().to_numpy()
    n = P["n"]
    acct_gid = first + np.arange(n)
    acct_id = _ids("A", acct_gid)
    payer_ids = insured["payer_id"].to_numpy()
    prim_payer = np.where(P["selfpay"], None, payer_ids[P["payer_ix"]])
    started = np.isin(np.arange(n), ev.loc[ev.kind == EV_CHARGE, "acct"].to_numpy())

    def day_to_date(days):
        return start + pd.to_timedelta(np.asarray(days), unit="D")

    enc_names = np.array(ENCOUNTERS, dtype=object)[P["encounter"]]
    service = day_to_date(P["service_day"])
    accounts = pd.DataFrame({
        "account_id": acct_id, "patient_id": _ids("PT", first * 10 + P["patient"], 10),
        "facility_id": np.where(P["encounter"] == 0, "F-CLINIC", "F-HOSP"),
        "encounter_type": enc_names, "service_date": service,
        "discharge_date": np.where(P["encounter"] == 3, day_to_date(P["service_day"] + P["los"]), pd.NaT),
        "primary_payer_id": prim_payer, "patient_age": P["age"].astype("int64"),
        "patient_state": np.array(STATES_US, dtype=object)[P["patient"] % len(STATES_US)],
        "total_charges": P["charges"],
    })[started].reset_index(drop=True)
    accounts["discharge_date"] = pd.to_datetime(accounts["discharge_date"])

    a = lambda k: ev[ev.kind == k]  # noqa: E731
    # ---- claims: the original at submission, corrected claims when a denial is worked that way,
    # secondary claims when the primary pays
    carc_code = CARCS["code"].to_numpy()
    work_kind = CARCS["work"].to_numpy()[P["carc"]]
    sub = a(EV_SUBMIT)
    ix = sub["acct"].to_numpy()
    def claim_frame(ix_, suffix, payer_ix, sequence, frequency, dates, original=None) -> pd.DataFrame:
        return pd.DataFrame({
            "claim_id": _ids("C", first + ix_) + suffix, "account_id": acct_id[ix_], "payer_id": payer_ids[payer_ix],
            "payer_sequence": sequence,
            "claim_type": np.where(P["encounter"][ix_] == 0, "professional", "institutional"),
            "frequency": frequency, "submitted_date": dates, "billed_amount": P["charges"][ix_],
            "principal_dx": np.array(DX, dtype=object)[P["proc_seed"][ix_] % len(DX)], "dx_version": 10,
            "original_claim_id": original,
        })

    claims = [claim_frame(ix, "-1", P["payer_ix"][ix], 1, "original", sub["date"].to_numpy())]
    work = a(EV_WORK)
    corrected = work[work_kind[work["acct"].to_numpy()] == "corrected"]
    cix = corrected["acct"].to_numpy()
    claims.append(claim_frame(cix, "-2", P["payer_ix"][cix], 1, "corrected", corrected["date"].to_numpy(),
                              _ids("C", first + cix) + "-1"))
    primary_paid = ev[ev.kind.isin([EV_PAID, EV_OVERTURN])]
    sec = primary_paid[P["has_sec"][primary_paid["acct"].to_numpy()]]
    six = sec["acct"].to_numpy()
    claims.append(claim_frame(six, "-S", P["sec_ix"][six], 2, "original", sec["date"].to_numpy()))
    claims_df = pd.concat(claims, ignore_index=True)

    # ---- claim lines: the charge split across 1-4 lines (last line takes the rounding)
    line_frames = []
    cl_acct = pd.Series(claims_df["account_id"].str[1:].astype("int64").to_numpy() - first)
    for line in range(4):
        has = P["n_lines"][cl_acct.to_numpy()] > line
        sub_c = claims_df[has.astype(bool)]
        cix2 = cl_acct[has.astype(bool)].to_numpy()
        k = P["n_lines"][cix2]
        share = np.where(line == k - 1, 1.0 - (k - 1) * np.floor(100 / k) / 100, np.floor(100 / k) / 100)
        procs = _procedure_codes(P, line)[cix2]
        rev = np.empty(len(cix2), dtype=object)
        for e, name in enumerate(ENCOUNTERS):
            m = P["encounter"][cix2] == e
            opts = np.array(PROCEDURES[name][1], dtype=object)
            rev[m] = opts[(P["proc_seed"][cix2][m] // (3 ** line)) % len(opts)]
        line_frames.append(pd.DataFrame({
            "claim_id": sub_c["claim_id"].to_numpy(), "line_number": line + 1, "procedure_code": procs,
            "modifiers": np.where((P["proc_seed"][cix2] // (5 ** line)) % 9 == 0, "25", None),
            "units": 1.0, "line_charge": np.round(P["charges"][cix2] * share, 2), "revenue_code": rev,
        }))
    claim_lines = pd.concat(line_frames, ignore_index=True)
    # make line charges add up exactly to the claim's billed amount
    tot = claim_lines.groupby("claim_id")["line_charge"].transform("sum")
    billed = claim_lines["claim_id"].map(claims_df.set_index("claim_id")["billed_amount"])
    last = claim_lines["line_number"] == claim_lines.groupby("claim_id")["line_number"].transform("max")
    claim_lines.loc[last, "line_charge"] = np.round(claim_lines.loc[last, "line_charge"] + (billed - tot)[last], 2)

    # ---- remittances, adjustments, appeals
    remits, adjs, appeals = [], [], []

    def remit_frame(sel: pd.DataFrame, claim_suffix, status, paid, pt, tag):
        ix_ = sel["acct"].to_numpy()
        cs = claim_suffix if isinstance(claim_suffix, np.ndarray) else np.full(len(ix_), claim_suffix, dtype=object)
        rid = _ids("R", first + ix_) + "-" + sel["n_in_acct"].astype(str).to_numpy() + tag
        return pd.DataFrame({
            "remit_id": rid, "claim_id": _ids("C", first + ix_) + cs, "received_date": sel["date"].to_numpy(),
            "claim_status": status, "paid_amount": paid, "patient_responsibility": pt,
            "payer_claim_number": "PCN" + rid,
        })

    def primary_adjustments(r: pd.DataFrame, ix_: np.ndarray) -> pd.DataFrame:
        co45 = np.round(P["charges"][ix_] - P["allowed"][ix_], 2)
        ded = np.round(np.minimum(P["pt_resp"][ix_], 250.0), 2)
        coins = np.round(P["pt_resp"][ix_] - ded, 2)
        parts = [pd.DataFrame({"remit_id": r["remit_id"].to_numpy(), "line_number": pd.NA, "group_code": "CO",
                               "reason_code": "45", "amount": co45, "remark_codes": None})]
        for code, amt in (("1", ded), ("2", coins)):
            m = amt > 0
            parts.append(pd.DataFrame({"remit_id": r["remit_id"].to_numpy()[m], "line_number": pd.NA,
                                       "group_code": "PR", "reason_code": code, "amount": amt[m],
                                       "remark_codes": None}))
        return pd.concat(parts, ignore_index=True)

    def denial_adjustments(r: pd.DataFrame, ix_: np.ndarray) -> pd.DataFrame:
        """The CAS of a denied remit: the claim's hidden cause as CARC (and its remark) for the whole charge."""
        return pd.DataFrame({"remit_id": r["remit_id"].to_numpy(), "line_number": pd.NA,
                             "group_code": CARCS["group"].to_numpy()[P["carc"][ix_]],
                             "reason_code": carc_code[P["carc"][ix_]], "amount": P["charges"][ix_],
                             "remark_codes": CARCS["remark"].to_numpy()[P["carc"][ix_]]})

    paid = a(EV_PAID)
    r = remit_frame(paid, "-1", "processed_primary", P["a1"][paid["acct"].to_numpy()],
                    P["pt_resp"][paid["acct"].to_numpy()], "")
    remits.append(r)
    adjs.append(primary_adjustments(r, paid["acct"].to_numpy()))

    deny = a(EV_DENY)
    dix = deny["acct"].to_numpy()
    r = remit_frame(deny, "-1", "denied", 0.0, 0.0, "")
    remits.append(r)
    adjs.append(denial_adjustments(r, dix))
    # worked by appeal: an appeal row; its outcome is known from the decision
    appeal_work = work[work_kind[work["acct"].to_numpy()] == "appeal"]
    decided = ev[ev.kind.isin([EV_OVERTURN, EV_UPHELD])][["acct", "kind", "date"]]
    ap = appeal_work.merge(decided, on="acct", how="left", suffixes=("", "_dec"))
    apx = ap["acct"].to_numpy()
    appeals_df = pd.DataFrame({
        "appeal_id": _ids("AP", first + apx) + "-1", "claim_id": _ids("C", first + apx) + "-1", "level": 1,
        "submitted_date": ap["date"].to_numpy(),
        "outcome": np.where(ap["kind_dec"] == EV_OVERTURN, "overturned",
                            np.where(ap["kind_dec"] == EV_UPHELD, "upheld", None)),
        "decision_date": ap["date_dec"].to_numpy(),
        "recovered_amount": np.where(ap["kind_dec"] == EV_OVERTURN, P["a1"][apx], np.nan),
    })
    appeals.append(appeals_df)
    # overturned: paid on the original claim (appeal) or the corrected claim
    ov = a(EV_OVERTURN)
    oix = ov["acct"].to_numpy()
    suffix = np.where(work_kind[oix] == "corrected", "-2", "-1").astype(object)
    r = remit_frame(ov, suffix, "processed_primary", P["a1"][oix], P["pt_resp"][oix], "")
    remits.append(r)
    adjs.append(primary_adjustments(r, oix))
    # upheld corrected claims are denied again
    up = a(EV_UPHELD)
    up = up[work_kind[up["acct"].to_numpy()] == "corrected"]
    uix = up["acct"].to_numpy()
    r = remit_frame(up, "-2", "denied", 0.0, 0.0, "")
    remits.append(r)
    adjs.append(denial_adjustments(r, uix))
    # secondary payments
    sp = a(EV_SEC_PAID)
    spx = sp["acct"].to_numpy()
    r = remit_frame(sp, "-S", "processed_secondary", P["a2"][spx], P["pt_rem"][spx], "")
    remits.append(r)
    oa23 = np.round(P["charges"][spx] - P["a2"][spx] - P["pt_rem"][spx], 2)
    adjs.append(pd.DataFrame({"remit_id": r["remit_id"].to_numpy(), "line_number": pd.NA, "group_code": "OA",
                              "reason_code": "23", "amount": oa23, "remark_codes": None}))
    # reversal pairs: the payer takes back its primary payment and pays it again under a new number
    rv = a(EV_REVERSAL)
    rvx = rv["acct"].to_numpy()
    sfx = np.where(np.isin(rvx, oix) & (work_kind[rvx] == "corrected"), "-2", "-1").astype(object)
    remits.append(remit_frame(rv, sfx, "reversal", -P["a1"][rvx], -P["pt_resp"][rvx], "r"))
    r = remit_frame(rv, sfx, "processed_primary", P["a1"][rvx], P["pt_resp"][rvx], "c")
    remits.append(r)
    adjs.append(primary_adjustments(r, rvx))
    remits_df = pd.concat(remits, ignore_index=True)
    adjs_df = pd.concat(adjs, ignore_index=True)
    adjs_df = adjs_df[adjs_df["amount"] != 0].reset_index(drop=True)
    adjs_df["line_number"] = adjs_df["line_number"].astype("Int64")

    # ---- the ledger
    tx = []

    def txn(sel: pd.DataFrame, ttype: str, amount: np.ndarray, payer=None, tag=""):
        ix_ = sel["acct"].to_numpy()
        tx.append(pd.DataFrame({
            "txn_id": _ids("T", first + ix_) + "-" + sel["n_in_acct"].astype(str).to_numpy() + tag,
            "account_id": acct_id[ix_], "posted_date": sel["date"].to_numpy(), "txn_type": ttype,
            "amount": np.round(amount, 2), "payer_id": payer,
        }))

    ch = a(EV_CHARGE)
    chx = ch["acct"].to_numpy()
    txn(ch, "charge", P["charges"][chx])
    spm = P["selfpay"][chx]
    txn(ch[spm], "administrative_adjustment", P["selfpay_discount"][chx[spm]], tag="d")
    for sel in (paid, ov, rv):
        sx = sel["acct"].to_numpy()
        if sel is rv:
            txn(sel, "payment_reversal", P["a1"][sx], payer_ids[P["payer_ix"][sx]], tag="r")
            txn(sel, "insurance_payment", P["a1"][sx], payer_ids[P["payer_ix"][sx]], tag="c")
        else:
            txn(sel, "contractual_adjustment", P["charges"][sx] - P["allowed"][sx], payer_ids[P["payer_ix"][sx]],
                tag="k")
            txn(sel, "insurance_payment", P["a1"][sx], payer_ids[P["payer_ix"][sx]])
    txn(sp, "insurance_payment", P["a2"][spx], payer_ids[P["sec_ix"][spx]])
    pp = a(EV_PAT_PAY)
    txn(pp, "patient_payment", P["pt_rem"][pp["acct"].to_numpy()])
    ins = a(EV_INSTALLMENT)
    txn(ins, "patient_payment", ins["amount"].to_numpy())
    # write-offs take the balance of the state they leave
    for kind, ttype in ((EV_DENIAL_WO, "denial_writeoff"), (EV_PLAN_DEFAULT, "bad_debt_writeoff"),
                        (EV_CHARITY, "charity_adjustment"), (EV_BK_WO, "bad_debt_writeoff"),
                        (EV_AGENCY, "bad_debt_writeoff")):
        sel = a(kind)
        if len(sel):
            bal = np.concatenate([_balance(P, int(s), sel["acct"].to_numpy()[sel["from_state"].to_numpy() == s])
                                  for s in np.unique(sel["from_state"])])
            sel = pd.concat([sel[sel["from_state"] == s] for s in np.unique(sel["from_state"])])
            txn(sel, ttype, bal, tag="w")
    txns = pd.concat(tx, ignore_index=True)
    txns = txns[txns["amount"] > 0].reset_index(drop=True)

    # ---- activities
    act_map = {EV_STATEMENT: "statement", EV_CALL_ATTEMPT: "call_attempt", EV_CALL_CONTACT: "call_contact",
               EV_PLAN_START: "payment_plan_start", EV_PLAN_DEFAULT: "payment_plan_default",
               EV_FA_APP: "financial_assistance_application", EV_BANKRUPTCY: "bankruptcy_notice",
               EV_AGENCY: "agency_placement", EV_LETTER: "letter"}
    acts = ev[ev.kind.isin(list(act_map))]
    activities = pd.DataFrame({
        "activity_id": _ids("AC", acts["gid"].to_numpy()) + "-" + acts["n_in_acct"].astype(str).to_numpy(),
        "account_id": acct_id[acts["acct"].to_numpy()], "activity_date": acts["date"].to_numpy(),
        "activity_type": acts["kind"].map(act_map).to_numpy(),
    })
    payers_out = payers[["payer_id", "payer_name", "financial_class", "timely_filing_days", "appeal_window_days"]]
    return {"payers": payers_out, "accounts": accounts, "claims": claims_df, "claim_lines": claim_lines,
            "remittances": remits_df, "adjustments": adjs_df, "transactions": txns,
            "appeals": pd.concat(appeals, ignore_index=True), "activities": activities}


def _denial_truth(P: dict, tables: dict[str, pd.DataFrame], first: int) -> pd.DataFrame:
    r = tables["remittances"]
    den = r[(r["claim_status"] == "denied") & r["claim_id"].str.endswith("-1")]
    acct = den["claim_id"].str[1:-2].astype("int64").to_numpy() - first
    return pd.DataFrame({
        "claim_id": den["claim_id"].to_numpy(), "account_id": _ids("A", first + acct),
        "denial_date": den["received_date"].to_numpy(), "reason_code": CARCS["code"].to_numpy()[P["carc"][acct]],
        "p_overturn_if_worked": P["q_overturn"][acct], "p_worked": P["work_rate"][acct] / (
            P["work_rate"][acct] + (1 - P["work_rate"][acct]) / 120.0),
        "expected_overturn_dollars": P["q_overturn"][acct] * P["a1"][acct],
    })


# ----------------------------------------------------------------------------- entry points


def month_starts(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    first = (start + pd.offsets.MonthBegin(0)) if start.day != 1 else start
    return list(pd.date_range(first, end, freq="MS"))


def _one_chunk(cfg: SimConfig, c: int, stream: np.random.SeedSequence):
    """Chunk c of the run: its accounts' latent draw, their histories and their truth."""
    t0 = time.perf_counter()
    start, end = pd.Timestamp(cfg.start), pd.Timestamp(cfg.end)
    n_days = int((end - start).days) + 1
    payers = make_payers(cfg.seed)
    truth_days = [int((t - start).days) for t in month_starts(start, end)]
    first = c * cfg.chunk_size
    n = min(cfg.chunk_size, cfg.n_accounts - first)
    rng = np.random.default_rng(stream)
    P = _draw_accounts(rng, n, first, n_days, payers)
    events, truth_rows, _ = _simulate_chunk(P, rng, n_days, truth_days if cfg.truth else [], cfg.horizon_days)
    tables = _build_tables(P, events, payers, start)
    truth = {}
    if cfg.truth:
        acc_ids = _ids("A", first + np.arange(n))
        tr = pd.concat(truth_rows, ignore_index=True) if truth_rows else pd.DataFrame(
            columns=["acct", "day", "p_payment", "expected_recovery"])
        truth["accounts"] = pd.DataFrame({
            "account_id": acc_ids[tr["acct"].to_numpy(dtype=np.int64)],
            "as_of": start + pd.to_timedelta(tr["day"].to_numpy(dtype=np.int64), unit="D"),
            "p_payment": tr["p_payment"].to_numpy(dtype=float),
            "expected_recovery": tr["expected_recovery"].to_numpy(dtype=float),
        })
        truth["denials"] = _denial_truth(P, tables, first)
    log.info("simulated chunk %d (%d accounts) in %.1fs", c + 1, n, time.perf_counter() - t0)
    return c, tables, truth


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


def simulate(n_accounts: int = 10_000, seed: int = 0, start: str = "2024-01-01", end: str = "2025-12-31",
             horizon_days: int = 60, chunk_size: int = 50_000, truth: bool = True):
    """Simulate in memory; returns a `features.data.Dataset` with `_truth/` tables in `extra`."""
    from features.data import Dataset

    cfg = SimConfig(n_accounts, seed, start, end, horizon_days, chunk_size, truth)
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
                       truth: bool = True, progress=None, workers: int = 1) -> Path:
    """Simulate chunk by chunk straight to Parquet (bounded memory), atomically."""
    import shutil
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.contract import TABLES
    from features.data import arrow_schema

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    cfg = SimConfig(n_accounts, seed, start, end, horizon_days, chunk_size, truth)
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for c, tables, tr in simulate_chunks(cfg, workers):
            items = list(tables.items()) + [(f"_truth/{k}", v) for k, v in tr.items()]
            for name, df in items:
                if name == "payers":
                    if c == 0:
                        df.to_parquet(tmp / "payers.parquet", index=False)
                    continue
                # (optional contract columns the simulator does not write are left out of the file)
                schema = pa.schema([f for f in arrow_schema(name) if f.name in df]) if name in TABLES else None
                table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
                if name not in writers:
                    path = tmp / f"{name}.parquet"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    writers[name] = pq.ParquetWriter(path, table.schema)
                writers[name].write_table(table.cast(writers[name].schema))
            if progress is not None:
                progress(min((c + 1) * chunk_size, n_accounts))
        for w in writers.values():
            w.close()
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        for w in writers.values():
            try:
                w.close()
            except Exception:  # noqa: BLE001 - already failing; the temp folder goes anyway
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
