"""The input data contract (DESIGN.md, "The data contract"), declared once.

`TABLES` is the single declaration of every table: its key, event time, columns (type, enum,
nullability, sign) and references. The pandera schemas, the SQL DDL of `recoup load`, the readers'
type coercion and the generated docs all derive from it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["str", "date", "money", "signed_money", "int", "float"]

FINANCIAL_CLASSES = (
    "medicare", "medicaid", "commercial", "managed_care", "self_pay", "workers_comp", "other",
)
ENCOUNTER_TYPES = ("inpatient", "outpatient", "emergency", "professional")
CLAIM_TYPES = ("professional", "institutional")
CLAIM_FREQUENCIES = ("original", "corrected", "replacement", "void", "interim", "late_charge", "no_pay", "other")
CLAIM_STATUSES = (
    "processed_primary", "processed_secondary", "processed_tertiary", "denied", "pended", "reversal",
    "not_our_claim", "predetermination",
)
ACK_SOURCES = ("277CA", "999")
ACK_STATUSES = ("accepted", "rejected", "pended")
GROUP_CODES = ("CO", "PR", "OA", "PI", "CR")
TXN_TYPES = (
    "charge", "insurance_payment", "patient_payment", "payment_reversal", "contractual_adjustment",
    "administrative_adjustment", "denial_writeoff", "charity_adjustment", "bad_debt_writeoff", "refund",
)
APPEAL_OUTCOMES = ("overturned", "partially_overturned", "upheld")
ACTIVITY_TYPES = (
    "statement", "call_attempt", "call_contact", "letter", "portal_message", "promise_to_pay",
    "payment_plan_start", "payment_plan_default", "dispute", "financial_assistance_application",
    "bankruptcy_notice", "agency_placement",
)

WORK_ACTIONS = (
    "status_call", "resubmit", "send_information", "appeal", "correct_and_resubmit", "patient_call", "statement",
    "payment_plan_offer", "dispute_underpayment", "send_to_agency", "write_off",
)

# X12 code <-> contract value maps (837 CLM05-3, 835 CLP02). Any other valid frequency code is "other";
# any other CLP02 is stored raw in `status_code` (and reported by the ingestion).
FREQUENCY_FROM_X12 = {
    "1": "original", "6": "corrected", "7": "replacement", "8": "void",
    "2": "interim", "3": "interim", "4": "interim", "5": "late_charge", "0": "no_pay",
}
CLAIM_STATUS_FROM_X12 = {
    "1": "processed_primary", "2": "processed_secondary", "3": "processed_tertiary",
    "19": "processed_primary", "20": "processed_secondary", "21": "processed_tertiary",
    "4": "denied", "5": "pended", "13": "pended", "22": "reversal", "23": "not_our_claim",
    "25": "predetermination",
}
FORWARDED_X12_STATUSES = frozenset({"19", "20", "21"})  # processed and forwarded to another payer


@dataclass(frozen=True)
class Col:
    type: ColumnType
    nullable: bool = False
    required: bool = True
    enum: tuple | None = None
    non_negative: bool = False
    default: object = None  # value used when an optional column is absent
    doc: str = ""
    maximum: float | None = None  # a number above it is not a plausible value (days, ages, minutes, units)


@dataclass(frozen=True)
class Ref:
    column: str
    table: str
    target: str


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: dict[str, Col]
    event_time: str | None = None
    # tables whose event time is the parent row's (claim_lines -> claims.submitted_date ...)
    time_from: tuple[str, str, str] | None = None  # (fk column, parent table, parent time column)
    references: tuple[Ref, ...] = ()
    optional: bool = False
    unique_key: bool = True
    doc: str = ""


# Plausibility ceilings the contract declares per column (`Col.maximum`): a value above them is a typo or
# garbage, and day counts beyond them would carry a date past what datetime64[ns] holds.
MAX_DAYS = 3_650  # a payer's filing or appeal window: ten years
MAX_AGE = 150
MAX_COUNT = 1_000_000  # line numbers and units
MAX_MINUTES = 1_440  # one piece of work: at most a day

# The value bounds that are configuration, not contract (`Bounds`), and their variables
DEFAULT_MIN_DATE = dt.date(1900, 1, 1)
DEFAULT_MAX_DATE = dt.date(2100, 12, 31)
DEFAULT_MAX_AMOUNT = 1_000_000_000.0  # dollars, in absolute value
# what datetime64[ns] holds: no bound may reach past it
NANOSECOND_DAYS = (dt.date(1677, 9, 22), dt.date(2262, 4, 11))
BOUND_VARIABLES = {"min_date": "RECOUP_MIN_DATE", "max_date": "RECOUP_MAX_DATE", "max_amount": "RECOUP_MAX_AMOUNT"}


@dataclass(frozen=True)
class Bounds:
    """The values a dataset or a request may hold beyond their types: every date within
    [`min_date`, `max_date`], every amount finite and at most `max_amount` dollars in absolute value.
    `from_env` reads them from RECOUP_MIN_DATE, RECOUP_MAX_DATE (ISO dates) and RECOUP_MAX_AMOUNT."""

    min_date: dt.date = DEFAULT_MIN_DATE
    max_date: dt.date = DEFAULT_MAX_DATE
    max_amount: float = DEFAULT_MAX_AMOUNT

    def __post_init__(self) -> None:
        first, last = NANOSECOND_DAYS
        if not first <= self.min_date < self.max_date <= last:
            raise ValueError(f"{BOUND_VARIABLES['min_date']}={self.min_date} and {BOUND_VARIABLES['max_date']}="
                             f"{self.max_date} must be ordered and within {first} … {last}")
        if not (math.isfinite(self.max_amount) and self.max_amount > 0):
            raise ValueError(f"{BOUND_VARIABLES['max_amount']}={self.max_amount!r} must be a positive finite number")

    @property
    def date_range(self) -> str:
        return f"{self.min_date} … {self.max_date}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Bounds:
        env = os.environ if environ is None else environ
        values: dict = {}
        for name, variable in BOUND_VARIABLES.items():
            raw = env.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[name] = float(raw) if name == "max_amount" else dt.date.fromisoformat(raw)
            except ValueError:
                kind = "a number" if name == "max_amount" else "an ISO date (YYYY-MM-DD)"
                raise ValueError(f"{variable}={raw!r} is not {kind}") from None
        return cls(**values)


def _money(**kw) -> Col:
    return Col("money", non_negative=True, **kw)


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            "payers", ("payer_id",),
            {
                "payer_id": Col("str"),
                "payer_name": Col("str"),
                "financial_class": Col("str", enum=FINANCIAL_CLASSES),
                "timely_filing_days": Col("int", nullable=True, non_negative=True, maximum=MAX_DAYS),
                "appeal_window_days": Col("int", nullable=True, non_negative=True, maximum=MAX_DAYS),
            },
            doc="Insurance plans and the self-pay pseudo payer.",
        ),
        Table(
            "accounts", ("account_id",),
            {
                "account_id": Col("str"),
                "patient_id": Col("str"),
                "facility_id": Col("str"),
                "encounter_type": Col("str", enum=ENCOUNTER_TYPES),
                "service_date": Col("date"),
                "discharge_date": Col("date", nullable=True, doc="known from that date"),
                "primary_payer_id": Col("str", nullable=True, doc="null: self-pay"),
                "patient_age": Col("int", non_negative=True, maximum=MAX_AGE),
                "patient_state": Col("str", nullable=True),
                "total_charges": _money(),
                "guarantor_id": Col("str", nullable=True, required=False,
                                    doc="the person responsible for the patient balance; the patient when absent"),
            },
            event_time="service_date",
            references=(Ref("primary_payer_id", "payers", "payer_id"),),
            doc="One patient encounter (the unit that is worked).",
        ),
        Table(
            "claims", ("claim_id",),
            {
                "claim_id": Col("str"),
                "account_id": Col("str"),
                "payer_id": Col("str"),
                "payer_sequence": Col("int", enum=(1, 2, 3)),
                "claim_type": Col("str", enum=CLAIM_TYPES),
                "frequency": Col("str", enum=CLAIM_FREQUENCIES),
                "frequency_code": Col("str", nullable=True, required=False, doc="the raw 837 CLM05-3"),
                "submitted_date": Col("date"),
                "billed_amount": _money(),
                "principal_dx": Col("str", nullable=True, doc="ICD-10-CM; ICD-9-CM on older claims"),
                "dx_version": Col("int", required=False, enum=(9, 10), default=10),
                "original_claim_id": Col("str", nullable=True, required=False,
                                         doc="the claim a corrected, replacement or void claim replaces"),
            },
            event_time="submitted_date",
            references=(
                Ref("account_id", "accounts", "account_id"),
                Ref("payer_id", "payers", "payer_id"),
                Ref("original_claim_id", "claims", "claim_id"),
            ),
            doc="837 claims sent to a payer.",
        ),
        Table(
            "claim_lines", ("claim_id", "line_number"),
            {
                "claim_id": Col("str"),
                "line_number": Col("int", non_negative=True, maximum=MAX_COUNT),
                "procedure_code": Col("str"),
                "modifiers": Col("str", nullable=True),
                "units": Col("float", non_negative=True, maximum=MAX_COUNT),
                "line_charge": _money(),
                "revenue_code": Col("str", nullable=True),
            },
            time_from=("claim_id", "claims", "submitted_date"),
            references=(Ref("claim_id", "claims", "claim_id"),),
            doc="837 service lines.",
        ),
        Table(
            "remittances", ("remit_id",),
            {
                "remit_id": Col("str"),
                "claim_id": Col("str"),
                "received_date": Col("date"),
                "claim_status": Col("str", enum=CLAIM_STATUSES),
                "forwarded": Col("int", required=False, enum=(0, 1), default=0,
                                 doc="1 (true) for CLP02 19, 20, 21: crossed over to another payer"),
                "status_code": Col("str", nullable=True, required=False, doc="the raw 835 CLP02"),
                "paid_amount": Col("signed_money", doc="signed: a reversal is negative"),
                "patient_responsibility": Col("signed_money"),
                "payer_claim_number": Col("str", nullable=True, required=False, doc="835 CLP07"),
            },
            event_time="received_date",
            references=(Ref("claim_id", "claims", "claim_id"),),
            doc="835 claim payment information (CLP).",
        ),
        Table(
            "adjustments", ("remit_id", "line_number", "group_code", "reason_code"),
            {
                "remit_id": Col("str"),
                "line_number": Col("int", nullable=True, required=False, maximum=MAX_COUNT),
                "group_code": Col("str", enum=GROUP_CODES),
                "reason_code": Col("str"),
                "amount": Col("signed_money", doc="signed: 835s carry negative adjustments"),
                "remark_codes": Col("str", nullable=True, required=False),
            },
            time_from=("remit_id", "remittances", "received_date"),
            references=(Ref("remit_id", "remittances", "remit_id"),),
            unique_key=False,
            doc="835 CAS adjustments with CARC, and RARC remarks.",
        ),
        Table(
            "transactions", ("txn_id",),
            {
                "txn_id": Col("str"),
                "account_id": Col("str"),
                "posted_date": Col("date"),
                "txn_type": Col("str", enum=TXN_TYPES),
                "amount": _money(doc="positive; the type gives the direction"),
                "payer_id": Col("str", nullable=True),
            },
            event_time="posted_date",
            references=(
                Ref("account_id", "accounts", "account_id"),
                Ref("payer_id", "payers", "payer_id"),
            ),
            doc="The ledger: the one source of an account's balance.",
        ),
        Table(
            "appeals", ("appeal_id",),
            {
                "appeal_id": Col("str"),
                "claim_id": Col("str"),
                "level": Col("int", enum=(1, 2, 3)),
                "submitted_date": Col("date"),
                "outcome": Col("str", nullable=True, enum=APPEAL_OUTCOMES, doc="known from decision_date"),
                "decision_date": Col("date", nullable=True),
                "recovered_amount": _money(nullable=True),
            },
            event_time="submitted_date",
            references=(Ref("claim_id", "claims", "claim_id"),),
            doc="Appeals of denied claims.",
        ),
        Table(
            "activities", ("activity_id",),
            {
                "activity_id": Col("str"),
                "account_id": Col("str"),
                "activity_date": Col("date"),
                "activity_type": Col("str", enum=ACTIVITY_TYPES),
            },
            event_time="activity_date",
            references=(Ref("account_id", "accounts", "account_id"),),
            doc="Statements, calls, letters, plans and other collection events.",
        ),
        Table(
            "remit_lines", ("remit_id", "line_number"),
            {
                "remit_id": Col("str"),
                "line_number": Col("int", non_negative=True, maximum=MAX_COUNT),
                "procedure_code": Col("str"),
                "line_charge": Col("signed_money"),
                "line_paid": Col("signed_money"),
            },
            time_from=("remit_id", "remittances", "received_date"),
            references=(Ref("remit_id", "remittances", "remit_id"),),
            optional=True,
            doc="835 service payment lines (SVC); filled by X12 ingestion.",
        ),
        Table(
            "provider_adjustments", ("payer_id", "received_date", "reason_code"),
            {
                "payer_id": Col("str"),
                "received_date": Col("date"),
                "reason_code": Col("str"),
                "amount": Col("signed_money"),
            },
            event_time="received_date",
            optional=True,
            unique_key=False,
            doc="835 provider-level adjustments (PLB); they belong to no claim.",
        ),
        Table(
            "claim_acks", ("ack_id",),
            {
                "ack_id": Col("str"),
                "claim_id": Col("str"),
                "received_date": Col("date"),
                "source": Col("str", enum=ACK_SOURCES),
                "status": Col("str", enum=ACK_STATUSES),
                "category_code": Col("str", nullable=True, doc="277CA STC01-1"),
                "status_code": Col("str", nullable=True, doc="277CA STC01-2 (999: IK501)"),
            },
            event_time="received_date",
            references=(Ref("claim_id", "claims", "claim_id"),),
            optional=True,
            doc="Claim acknowledgements (X12 277CA, 999): accepted, rejected or pended at the front door.",
        ),
        Table(
            "work", ("work_id",),
            {
                "work_id": Col("str"),
                "account_id": Col("str"),
                "claim_id": Col("str", nullable=True, required=False, doc="work on one claim or denial"),
                "worked_date": Col("date"),
                "action": Col("str", enum=WORK_ACTIONS),
                "minutes": Col("float", non_negative=True, maximum=MAX_MINUTES),
                "propensity": Col("float", non_negative=True,
                                  doc="the probability that the policy which chose this work chose it; 1.0 for a "
                                      "deterministic rule"),
                "is_exploration": Col("int", enum=(0, 1), doc="1: drawn by the policy's random share"),
                "run_id": Col("str", nullable=True, required=False, doc="the worklist run that suggested it"),
                "suggested_action": Col("str", nullable=True, required=False),
                "collector": Col("str", nullable=True, required=False, doc="an opaque id, never a name"),
            },
            event_time="worked_date",
            references=(
                Ref("account_id", "accounts", "account_id"),
                Ref("claim_id", "claims", "claim_id"),
            ),
            optional=True,
            doc="The office's decision log (what collectors did), as contextual-bandit logs keep one.",
        ),
    ]
}

REQUIRED_TABLES = tuple(n for n, t in TABLES.items() if not t.optional)


def columns_of(table: str) -> list[str]:
    return list(TABLES[table].columns)


@dataclass
class Violation:
    """One broken rule of the contract, with where it is."""

    table: str
    column: str | None
    problem: str
    count: int = 0
    ids: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        text = f"{where}: {self.problem}"
        if self.count:
            id_col = "/".join(TABLES[self.table].key) if self.table in TABLES else "row"
            shown = ", ".join(self.ids[:5])
            more = f", … {self.count - 5} more" if self.count > 5 else ""
            text += f" ({self.count} row{'s' if self.count != 1 else ''}; {id_col}: {shown}{more})"
        return text


class ContractError(ValueError):
    """The dataset breaks the contract; `violations` says where."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"the dataset breaks the data contract in {len(violations)} place(s):\n{lines}")
