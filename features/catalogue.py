"""The feature catalogue, declared once (in the manner of Feast feature views).

`FEATURE_VIEWS` lists every model feature with its entity (account, guarantor or denial), source tables,
timestamp column, window, dtype and description. `features.snapshot` takes the list of model
columns and which are categorical from here; the docs are generated from it too.

Also here: the project's classification of denial CARCs into groups and of procedure codes into
families (both are feature vocabularies).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Entity = Literal["account", "guarantor", "denial"]
DType = Literal["numeric", "categorical"]

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
WINDOWS = (30, 90, 365)


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: DType
    description: str
    window: int | None = None  # days looking back from the as-of date (None: all history to T)
    rule: bool = False  # read by the ranking rules (deadlines, bankruptcy, ...), not only the model


@dataclass(frozen=True)
class FeatureView:
    name: str
    entity: Entity
    sources: tuple[str, ...]
    timestamp: str  # "table.column" that decides when a row is known
    features: tuple[Feature, ...]
    description: str = ""


def _num(name: str, description: str, window: int | None = None, rule: bool = False) -> Feature:
    return Feature(name, "numeric", description, window, rule)


def _cat(name: str, description: str) -> Feature:
    return Feature(name, "categorical", description)


def _windowed(stem: str, what: str) -> tuple[Feature, ...]:
    return tuple(_num(f"{stem}_{w}d", f"{what} in the last {w} days", w) for w in WINDOWS)


# ------------------------------------------------------------------ account features

ACCOUNT_VIEWS: tuple[FeatureView, ...] = (
    FeatureView(
        "account_profile",
        "account",
        ("accounts", "payers"),
        "accounts.service_date",
        (
            _cat("financial_class", "financial class of the primary payer (self_pay when none)"),
            _cat("encounter_type", "inpatient, outpatient, emergency or professional"),
            _cat("primary_payer_id", "primary payer id (self_pay when none)"),
            _num("patient_age", "patient age at service"),
            _num("total_charges", "total charges of the encounter"),
            _num("days_since_service", "days from service date to as-of"),
            _num("days_since_discharge", "days from discharge (missing until the discharge is known)"),
        ),
    ),
    FeatureView(
        "ledger",
        "account",
        ("transactions",),
        "transactions.posted_date",
        (
            _num(
                "balance",
                "ledger balance at as-of (charges, refunds, reversals up; payments, adjustments down)",
            ),
            _num(
                "balance_patient",
                "part of the balance that is patient responsibility (remits' PR less patient"
                " payments; all of it for self-pay)",
            ),
            _num("balance_insurance", "balance less the patient part"),
            _num("charges_posted", "charges posted to the ledger"),
            _num("insurance_paid", "insurance payments posted, net of nothing"),
            _num("adjustments_total", "contractual, administrative and charity adjustments posted"),
            _num("days_since_last_payment", "days since the last insurance or patient payment"),
            *_windowed("payments", "net payments (insurance + patient - reversals - refunds)"),
            _num("payments_trend_30d", "net payments in the last 30 days less the 30-day mean over 365 days"),
        ),
    ),
    FeatureView(
        "claims",
        "account",
        ("claims", "claim_lines"),
        "claims.submitted_date",
        (
            _num("n_claims", "claims submitted"),
            _num("n_corrected_claims", "corrected or replacement claims submitted"),
            _num("has_secondary_claim", "a claim to a secondary or tertiary payer was submitted"),
            _num("billed_total", "billed amount of all claims (not void)"),
            _num("days_since_last_claim", "days since the last claim submission"),
            _cat("proc_family", "procedure family of the highest-charge claim line"),
            _num(
                "timely_filing_days_left",
                "payer timely filing limit less days since service, when no claim"
                " to the primary payer is filed or a denial is open",
                rule=True,
            ),
        ),
    ),
    FeatureView(
        "remittances",
        "account",
        ("remittances",),
        "remittances.received_date",
        (
            _num("n_remits", "remittances received"),
            _num("remit_paid", "paid amount of remittances (signed: reversals undo)"),
            _cat("last_remit_status", "claim status of the latest remittance"),
            _num("pending_adjudication", "a claim submitted with no remittance yet"),
            _num("days_claim_waiting", "days the oldest unanswered claim has waited"),
        ),
    ),
    FeatureView(
        "claim_status",
        "account",
        ("claim_acks", "remittances", "claims"),
        "claim_acks.received_date",
        (
            _num(
                "claim_rejected_open",
                "a claim was rejected at the payer's front door (277CA or 999) and not resubmitted or answered since",
                rule=True,
            ),
            _num("days_since_rejection", "days since the open front-door rejection"),
            _num(
                "claim_pended_open",
                "a claim's latest remittance is pended (the payer waits for information)",
                rule=True,
            ),
            _num("days_pended", "days since the open pend"),
            _num("filing_days_left", "payer timely filing limit less days since service (missing: no limit)",
                 rule=True),
        ),
    ),
    FeatureView(
        "work_log",
        "account",
        ("work",),
        "work.worked_date",
        (
            _num("status_calls_30d", "status calls to the payer in the last 30 days", 30),
            _num("days_since_status_call", "days since the latest status call"),
            _num("days_since_plan_offer", "days since the latest payment-plan offer"),
        ),
        "what the office's own work log says was done (empty where an office keeps none)",
    ),
    FeatureView(
        "denials",
        "account",
        ("remittances", "adjustments", "claims"),
        "remittances.received_date",
        (
            _num("n_denials", "denials received (full or partial)"),
            _num("open_denial", "a denial is open (not paid, written off or voided since)"),
            _num("open_denied_amount", "denied amount of open denials"),
            _cat("last_denial_carc", "CARC of the latest denial"),
            _cat("last_denial_group", "CARC group of the latest denial"),
            _num(
                "appeal_deadline_days_left",
                "days left to appeal the open denial closest to its deadline",
                rule=True,
            ),
        ),
    ),
    FeatureView(
        "appeals",
        "account",
        ("appeals",),
        "appeals.submitted_date",
        (
            _num("n_appeals", "appeals submitted"),
            _num("pending_appeal", "an appeal without a known decision"),
            _num("n_overturned", "appeals decided overturned or partially overturned by as-of"),
        ),
    ),
    FeatureView(
        "patient_payments",
        "account",
        ("transactions",),
        "transactions.posted_date",
        (
            _num("n_patient_payments", "patient payments posted"),
            _num("patient_paid", "patient payments posted (amount)"),
            _num("days_since_last_patient_payment", "days since the last patient payment"),
            *_windowed("patient_payments", "patient payments (amount)"),
        ),
    ),
    FeatureView(
        "activities",
        "account",
        ("activities",),
        "activities.activity_date",
        (
            *_windowed("statements", "statements sent"),
            *_windowed("call_attempts", "call attempts"),
            *_windowed("contacts", "calls reached, portal messages and letters"),
            _num(
                "contacts_trend_30d",
                "contacts + call attempts in the last 30 days less the 30-day mean over 365",
            ),
            _num("call_attempts_7d", "call attempts in the last 7 days", 7, rule=True),
            _num("days_since_first_statement", "days since the first patient statement", rule=True),
            _num("days_since_last_statement", "days since the latest patient statement"),
            _num(
                "days_since_last_contact",
                "days since the latest statement, reached call, letter or portal message (engagement fades)",
            ),
            _num("n_letters", "collection letters sent (each marks the next dunning stage)"),
            _num("plan_active", "a payment plan was started and not defaulted since"),
            _num("plan_defaulted", "the latest payment plan defaulted"),
            _num(
                "plan_in_good_standing",
                "plan active with a patient payment (or a start) in the last 60 days",
                rule=True,
            ),
            _num("dispute_recent", "a dispute in the last 90 days", 90),
            _num(
                "fa_pending",
                "a financial assistance application in the last 365 days with no charity adjustment since",
                rule=True,
            ),
            _num("in_bankruptcy", "a bankruptcy notice was received", rule=True),
            _num("n_promises_90d", "promises to pay in the last 90 days", 90),
        ),
    ),
    FeatureView(
        "pooled_rates",
        "account",
        ("pooled_stats",),
        "pooled_stats.as_of",
        (
            _num("payer_denial_rate", "this payer's denial rate (point-in-time, smoothed)"),
            _num(
                "payer_overturn_rate",
                "this payer's overturn rate of worked denials (point-in-time, smoothed)",
            ),
            _num("payer_group_overturn_rate", "this payer's overturn rate for the last denial's CARC group"),
            _num("payer_paid_to_billed", "this payer's paid-to-billed ratio"),
            _num("payer_days_to_pay", "this payer's mean days from submission to payment"),
            _num("proc_family_denial_rate", "denial rate of this procedure family"),
        ),
    ),
)

# ------------------------------------------------------------------ denial features

DENIAL_VIEWS: tuple[FeatureView, ...] = (
    FeatureView(
        "denial",
        "denial",
        ("remittances", "adjustments", "claims", "claim_lines", "payers"),
        "remittances.received_date",
        (
            _cat("carc", "CARC of the denial (the largest non-routine CO/PI/OA adjustment)"),
            _cat("carc_group", "CARC group"),
            _num("rarc_present", "the denial carries remark codes (RARC)"),
            _cat("payer_id", "the denying payer"),
            _cat("financial_class", "the denying payer's financial class"),
            _cat("encounter_type", "encounter type of the account"),
            _cat("claim_frequency", "original, corrected or replacement"),
            _cat("proc_family", "procedure family of the claim's highest-charge line"),
            _num("payer_sequence", "1 primary, 2 secondary, 3 tertiary"),
            _num("partial_denial", "line-level denial on an otherwise paid claim"),
            _num("billed", "claim billed amount"),
            _num("denied_amount", "amount denied"),
            _num("days_since_denial", "days from the denial's remittance to as-of"),
            _num("days_since_service", "days from service to as-of"),
            _num("appeal_level", "level of the latest appeal after the denial (0: none)"),
            _num("already_worked", "an appeal or corrected/replacement claim followed the denial by as-of"),
            _num("appeal_deadline_days_left", "payer appeal window less days since denial", rule=True),
            _num("timely_filing_days_left", "payer timely filing limit less days since service", rule=True),
            _num("n_prior_denials", "denials on the account before this one"),
        ),
    ),
    FeatureView(
        "denial_pooled_rates",
        "denial",
        ("pooled_stats",),
        "pooled_stats.as_of",
        (
            _num("payer_denial_rate", "this payer's denial rate"),
            _num("payer_overturn_rate", "this payer's overturn rate of worked denials"),
            _num("payer_group_overturn_rate", "this payer's overturn rate for this CARC group"),
            _num("proc_family_overturn_rate", "overturn rate for this procedure family"),
            _num("carc_worked", "denials with this CARC that were worked (appealed or corrected)"),
            _num("carc_corrected_share", "share of them worked by a corrected claim rather than an appeal"),
            _num("carc_appeal_overturn_rate", "overturn rate of appealed denials with this CARC"),
            _num("carc_correct_overturn_rate", "overturn rate of corrected claims for denials with this CARC"),
            _num("payer_paid_to_billed", "this payer's paid-to-billed ratio"),
            _num("payer_days_to_pay", "this payer's mean days to pay"),
        ),
    ),
)

# The guarantor: the person who pays the patient balance (`accounts.guarantor_id`, else the patient).
# Their features are computed over all their accounts known at T and joined onto each account row:
# "earlier" ones look at the guarantor's *other* accounts (what this person did before), the totals
# (open balance, contacts) at all of them (what a contact with the person covers).
GUARANTOR_VIEWS: tuple[FeatureView, ...] = (
    FeatureView(
        "guarantor_history",
        "guarantor",
        ("accounts", "transactions", "remittances", "activities"),
        "accounts.service_date",
        (
            _num("guarantor_prior_accounts", "the guarantor's other accounts with a service date by as-of"),
            _num("guarantor_closed_accounts", "of those, the ones closed by as-of (paid off, written off or placed)"),
            _num(
                "guarantor_paid_in_full_share",
                "share of the guarantor's other accounts with a patient balance that the patient paid off"
                " (missing: none had one)",
            ),
            _num(
                "guarantor_patient_paid_share",
                "patient dollars paid on the guarantor's other accounts over those paid, still owed and"
                " written off to bad debt (missing: none owed)",
            ),
            _num(
                "guarantor_median_days_to_pay",
                "median over the guarantor's other accounts of days from the first statement to the first"
                " patient payment after it (missing: none paid after a statement)",
            ),
            _num("guarantor_patient_payments_365d",
                 "patient payments on the guarantor's other accounts in the last 365 days", 365),
            _num("guarantor_days_since_last_payment",
                 "days since the guarantor's latest patient payment on another account"),
            _num("guarantor_plans_started", "payment plans started on the guarantor's other accounts"),
            _num("guarantor_plans_defaulted", "payment plans defaulted on the guarantor's other accounts"),
            _num(
                "guarantor_agency_accounts",
                "the guarantor's other accounts placed with an agency or written off to bad debt by as-of",
            ),
        ),
        "how this person paid their earlier balances at this provider",
    ),
    FeatureView(
        "guarantor_now",
        "guarantor",
        ("accounts", "transactions", "remittances", "activities"),
        "activities.activity_date",
        (
            _num("guarantor_open_accounts", "the guarantor's other accounts open at as-of"),
            _num("guarantor_open_patient_balance", "patient balance across all the guarantor's open accounts"),
            _num("guarantor_call_attempts_7d", "call attempts to the guarantor (any account) in the last 7 days", 7,
                 rule=True),
            _num("guarantor_call_attempts_30d", "call attempts to the guarantor (any account) in the last 30 days",
                 30),
            _num("guarantor_contacts_30d",
                 "statements, reached calls, letters and portal messages to the guarantor (any account) in the"
                 " last 30 days", 30),
            _num("guarantor_days_since_last_contact",
                 "days since the latest statement, reached call, letter or portal message to the guarantor"),
        ),
        "where the person stands today, across all their accounts (one contact covers them all)",
    ),
)

FEATURE_VIEWS: tuple[FeatureView, ...] = ACCOUNT_VIEWS + GUARANTOR_VIEWS + DENIAL_VIEWS
# the entities whose features make up a model's row: guarantor features are joined onto each account
ROW_ENTITIES: dict[str, tuple[Entity, ...]] = {"account": ("account", "guarantor"), "denial": ("denial",)}

ACCOUNT_LABELS = ("label_paid", "label_recovered")
# columns an account row carries beside its features (not model input): who pays the patient balance
ACCOUNT_CONTEXT = ("guarantor_id",)
DENIAL_LABELS = ("worked", "label_overturn")


@dataclass(frozen=True)
class Horizons:
    """The label windows, in days (DESIGN.md, "Snapshots and labels"): the payment label looks at
    (T, T + `horizon_days`]; a worked denial counts as overturned when paid within
    `overturn_horizon_days` of its remit date, which is also the window of the pooled overturn rates
    the account and denial features read. Training takes them from its settings
    (`training.settings.TrainingSettings.horizons`); the defaults here are DESIGN.md's H and H2."""

    horizon_days: int = 60
    overturn_horizon_days: int = 120


DEFAULT_HORIZONS = Horizons()


def features_of(entity: Entity) -> list[Feature]:
    """The features of a model row of `entity` ("account" rows carry their guarantor's too)."""
    joined = ROW_ENTITIES.get(entity, (entity,))
    return [f for e in joined for v in FEATURE_VIEWS if v.entity == e for f in v.features]


def account_feature_names() -> list[str]:
    return [f.name for f in features_of("account")]


def denial_feature_names() -> list[str]:
    return [f.name for f in features_of("denial")]


def categorical_features(entity: Entity) -> list[str]:
    return [f.name for f in features_of(entity) if f.dtype == "categorical"]


# ------------------------------------------------------------------ vocabularies

# Denial CARC groups: the project's classification of the common denial reasons (X12 CARC list).
CARC_GROUP_NAMES = (
    "missing_info",
    "authorization",
    "medical_necessity",
    "timely_filing",
    "coordination_of_benefits",
    "coding",
    "duplicate",
    "eligibility",
    "other",
)
CARC_GROUPS: dict[str, str] = {
    **dict.fromkeys(["16", "17", "125", "140", "206", "226", "227", "252", "A1", "B7"], "missing_info"),
    **dict.fromkeys(["15", "38", "39", "62", "197", "198", "199", "243", "288"], "authorization"),
    **dict.fromkeys(
        ["50", "55", "56", "57", "58", "150", "151", "152", "167", "193", "B22"], "medical_necessity"
    ),
    **dict.fromkeys(["29"], "timely_filing"),
    **dict.fromkeys(["19", "20", "21", "22", "109", "136", "B11"], "coordination_of_benefits"),
    **dict.fromkeys(
        [
            "4",
            "5",
            "6",
            "7",
            "8",
            "9",
            "10",
            "11",
            "12",
            "97",
            "146",
            "181",
            "182",
            "189",
            "231",
            "234",
            "236",
            "B15",
        ],
        "coding",
    ),
    **dict.fromkeys(["18", "B13"], "duplicate"),
    **dict.fromkeys(["26", "27", "31", "32", "33", "96", "177", "200", "204", "B9"], "eligibility"),
}

PROC_FAMILIES = (
    "anesthesia",
    "surgery",
    "radiology",
    "lab",
    "medicine",
    "em",
    "cpt_cat2",
    "cpt_cat3",
    *(f"hcpcs_{c}" for c in "ABCDEGHJKLMPQRSTUV"),
    "other",
    "unknown",
)


def carc_group(code: str | None) -> str:
    if code is None:
        return "other"
    return CARC_GROUPS.get(code, "other")


def proc_family(code: str | None) -> str:
    """Family of a CPT/HCPCS code: CPT sections by range, HCPCS level II by letter."""
    if not code:
        return "unknown"
    code = code.strip().upper()
    if len(code) == 5 and code[:4].isdigit() and code[4] in "FT":
        return "cpt_cat2" if code[4] == "F" else "cpt_cat3"
    if code[:1].isalpha():
        fam = f"hcpcs_{code[0]}"
        return fam if fam in PROC_FAMILIES else "other"
    if not code.isdigit():
        return "other"
    n = int(code)
    if 99202 <= n <= 99499:
        return "em"
    if n < 10000:
        return "anesthesia"
    if n < 70000:
        return "surgery"
    if n < 80000:
        return "radiology"
    if n < 90000:
        return "lab"
    return "medicine"


@functools.cache
def routine_carcs() -> frozenset[str]:
    """CARCs that are routine adjustments, never denials (loaded lazily, once)."""
    with open(REFERENCE_DIR / "carc_routine.csv", newline="") as f:
        return frozenset(row["code"].strip() for row in csv.DictReader(f))


@functools.cache
def carc_descriptions() -> dict[str, str]:
    with open(REFERENCE_DIR / "carc_from_vista.csv", newline="") as f:
        return {row["code"].strip(): row["description"] for row in csv.DictReader(f)}
