"""The rows the mappings collect (tuples or lists, laid out as the column lists below) before they
become contract tables. Rows of a transaction that fails are truncated back."""

from __future__ import annotations

from dataclasses import dataclass, field

# One 837 claim with its account facts (accounts are derived from claims at the end). `base_id` is the
# claim id before a repeat of it by a different claim is told apart; `x12_content` is the hash of
# what the claim says (its lines link to it); `x12_transaction` names its 837 for a 999.
CLAIM_COLUMNS = [
    "base_id", "account_id", "payer_id", "payer_sequence", "claim_type", "frequency", "frequency_code",
    "submitted_date", "billed_amount", "principal_dx", "dx_version", "x12_original_ref", "patient_id",
    "facility_id", "encounter_type", "service_date", "patient_age", "patient_state", "guarantor_id",
    "x12_content", "x12_transaction",
]
LINE_COLUMNS = [
    "x12_content", "line_number", "procedure_code", "modifiers", "units", "line_charge", "revenue_code",
]
# One 835 claim payment (CLP) with what a claim built from it needs.
REMIT_COLUMNS = [
    "remit_id", "account_id", "received_date", "claim_status", "status_code", "forwarded", "paid_amount",
    "patient_responsibility", "payer_claim_number", "payer_id", "billed", "claim_date", "patient_id",
    "facility_id", "encounter_type", "payer_sequence",
]
ADJUSTMENT_COLUMNS = ["remit_id", "line_number", "group_code", "reason_code", "amount", "remark_codes"]
REMIT_LINE_COLUMNS = ["remit_id", "line_number", "procedure_code", "line_charge", "line_paid"]
PLB_COLUMNS = ["payer_id", "received_date", "reason_code", "amount", "x12_txn"]
PAYER_COLUMNS = ["payer_id", "payer_name", "financial_class", "x12_source"]
# One claim acknowledgement: a 277CA claim status (account_id = TRN02, the patient control number), or
# a 999 transaction-set response (x12_transaction = the acknowledged 837, account_id None).
ACK_COLUMNS = [
    "ack_id", "account_id", "received_date", "source", "status", "category_code", "status_code", "payer_id",
    "billed", "claim_date", "patient_id", "facility_id", "x12_transaction",
]


@dataclass
class Rows:
    claims: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    remits: list = field(default_factory=list)
    adjustments: list = field(default_factory=list)
    remit_lines: list = field(default_factory=list)
    plb: list = field(default_factory=list)
    payers: list = field(default_factory=list)
    acks: list = field(default_factory=list)

    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.__dict__.values())

    def truncate(self, sizes: tuple[int, ...]) -> None:
        for lst, n in zip(self.__dict__.values(), sizes, strict=True):
            del lst[n:]

    def extend(self, other: Rows) -> None:
        for mine, theirs in zip(self.__dict__.values(), other.__dict__.values(), strict=True):
            mine.extend(theirs)
