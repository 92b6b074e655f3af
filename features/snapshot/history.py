"""`History`: a dataset's account histories as NumPy arrays, prepared once and shared by every
as-of date (the account block, the denial block, the pooled statistics and `features.explore`).

Every table becomes integer codes (account, claim, payer: positions in the sorted id arrays; -1 for
an id that is not known) and day numbers (`features.dates`; `NEVER` for a date that is not known).
A child row takes its parent's time and is never known before its parent (a claim before its
account's service date, a remittance before its claim). Denial events (DESIGN.md's definition) and
the days each was later paid, worked and closed are computed here over the whole history; the
blocks compare them with the as-of day, so nothing is looked up ahead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.catalogue import CARC_GROUP_NAMES, PROC_FAMILIES, carc_group, proc_family, routine_carcs
from features.contract import (
    ACK_STATUSES,
    ACTIVITY_TYPES,
    CLAIM_FREQUENCIES,
    CLAIM_STATUSES,
    TXN_TYPES,
    WORK_ACTIONS,
    Dataset,
    latest_date,
    person_of_accounts,
)
from features.dates import NEVER, dates_of, day_number, day_numbers
from features.snapshot.arrays import (
    Keys,
    count_by,
    enum_codes,
    isin,
    last_by,
    min_by,
    next_day,
    notna,
    numbers,
    objects,
    sum_by,
    take,
    take_rows,
    text,
)

# enum value -> code, as the arrays hold them
TXN_CODE = {t: i for i, t in enumerate(TXN_TYPES)}
ACTIVITY_CODE = {t: i for i, t in enumerate(ACTIVITY_TYPES)}
STATUS_CODE = {t: i for i, t in enumerate(CLAIM_STATUSES)}
FREQUENCY_CODE = {t: i for i, t in enumerate(CLAIM_FREQUENCIES)}
ACK_CODE = {t: i for i, t in enumerate(ACK_STATUSES)}
WORK_CODE = {t: i for i, t in enumerate(WORK_ACTIONS)}
GROUP_CODE = {g: i for i, g in enumerate(CARC_GROUP_NAMES)}
FAMILY_CODE = {f: i for i, f in enumerate(PROC_FAMILIES)}
PROCESSED_STATUSES = np.array(
    [STATUS_CODE["processed_primary"], STATUS_CODE["processed_secondary"], STATUS_CODE["processed_tertiary"]])


@dataclass
class History:
    """The dataset as arrays (build it with `History.from_dataset`).

    Prefixes name the table a field is a column of, one entry per row: `acct_` accounts (sorted by
    account_id, so outputs come sorted), `pay_` payers (sorted by payer_id), `c_` claims, `r_`
    remittances, `d_` denial events (one per denying remittance), `a_` appeals, `t_` ledger
    transactions, `v_` activities. `*_acct`, `*_claim`, `*_payer` are codes into `acct_ids`, `c_ids`,
    `pay_ids`; `*_day` are day numbers."""

    n: int  # accounts
    acct_ids: np.ndarray
    acct_day: np.ndarray  # service date
    disch_day: np.ndarray  # discharge date (never before service)
    acct_payer: np.ndarray  # primary payer (-1: self-pay or unknown)
    age: np.ndarray
    charges: np.ndarray
    enc: np.ndarray  # encounter type
    pay_ids: np.ndarray
    pay_class: np.ndarray  # financial class
    tfd: np.ndarray  # timely filing days (NaN: none)
    awd: np.ndarray  # appeal window days (NaN: none)
    c_ids: np.ndarray
    c_acct: np.ndarray
    c_day: np.ndarray  # known from: submission, not before the account's service date
    c_payer: np.ndarray
    c_seq: np.ndarray  # payer sequence (1 when missing)
    c_freq: np.ndarray  # frequency code (FREQUENCY_CODE)
    c_billed: np.ndarray
    c_fam: np.ndarray  # claim family: the first claim of its original_claim_id chain
    c_proc: np.ndarray  # procedure family (FAMILY_CODE) of its highest-charge line
    r_claim: np.ndarray
    r_acct: np.ndarray
    r_day: np.ndarray  # known from: receipt, not before its claim
    r_status: np.ndarray  # claim status code (STATUS_CODE)
    r_paid: np.ndarray
    r_pr: np.ndarray  # patient responsibility (0 when missing)
    d_claim: np.ndarray
    d_acct: np.ndarray
    d_day: np.ndarray  # its remittance's day
    d_carc: np.ndarray  # the largest non-routine CARC (None when none)
    d_carc_rank: np.ndarray  # that CARC's rank in sorted order (a deterministic tie-break)
    d_group: np.ndarray  # its CARC group (GROUP_CODE)
    d_rarc: np.ndarray  # a remark code came with it
    d_amount: np.ndarray  # denied dollars (billed; the denied lines' adjustments when partial)
    d_partial: np.ndarray  # a line-level denial on an otherwise paid claim
    d_paid_day: np.ndarray  # first day after it that its claim family was paid or overturned
    d_worked_day: np.ndarray  # first day on/after it of an appeal or a corrected/replacement claim
    d_corrected: np.ndarray  # that first work was a corrected or replacement claim (not an appeal)
    d_close_day: np.ndarray  # first day on/after it of a void claim or a write-off of the account
    a_acct: np.ndarray
    a_fam: np.ndarray  # the appealed claim's family
    a_day: np.ndarray  # known from: submission, not before its claim
    a_dec_day: np.ndarray  # the outcome is known from the decision date
    a_over: np.ndarray  # overturned or partially overturned
    a_level: np.ndarray
    t_acct: np.ndarray
    t_day: np.ndarray
    t_type: np.ndarray  # transaction type code (TXN_CODE)
    t_amt: np.ndarray
    v_acct: np.ndarray
    v_day: np.ndarray
    v_type: np.ndarray  # activity type code (ACTIVITY_CODE)
    acct_guarantor: np.ndarray  # the person responsible for the patient balance (the patient when absent)
    acct_gcode: np.ndarray  # the guarantor as a code from 0 (the guarantor features' group)
    k_claim: np.ndarray  # claim acknowledgements (277CA, 999): the acknowledged claim
    k_day: np.ndarray
    k_status: np.ndarray  # ACK_CODE
    w_acct: np.ndarray  # the office's work log
    w_day: np.ndarray
    w_action: np.ndarray  # WORK_CODE
    extract: int  # the extract date's day number

    @classmethod
    def from_dataset(cls, ds: Dataset) -> History:
        """Prepare the arrays of `ds` (a dataset of DataFrames or of `ColumnTable`s; absent tables are
        empty)."""
        return _prepare(ds)

    # -- derived per as-of day T (each is the one definition of what it computes)

    def known_denials(self, T: int) -> np.ndarray:
        """Mask of the denial events received by day T (of a known account)."""
        return (self.d_day <= T) & (self.d_acct >= 0)

    def open_denials(self, T: int, known: np.ndarray) -> np.ndarray:
        """Mask of the denials open at T among `known` (`known_denials(T)`): the latest of their claim
        family, not paid, written off or voided by T."""
        if not len(self.d_claim):
            return known
        fam = self.c_fam[self.d_claim]
        latest = last_by(fam, len(self.c_ids), known, self.d_carc_rank, self.d_day)
        is_latest = np.zeros(len(self.d_claim), bool)
        is_latest[latest[latest >= 0]] = True
        return known & is_latest & (self.d_paid_day > T) & (self.d_close_day > T)

    def denial_outcomes(self, T: int, horizon_days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(resolved, worked, overturned) masks over the denial events, as known at T: resolved when
        the denial's `horizon_days` window closed by T; worked when an appeal or a corrected claim
        followed within the window; overturned when worked and its claim family was paid within it
        (the overturn label, point-in-time)."""
        end = self.d_day + horizon_days
        resolved = end <= T
        worked = resolved & (self.d_worked_day <= end)
        return resolved, worked, worked & (self.d_paid_day <= end)

    def first_payment_day(self, T: int) -> np.ndarray:
        """Per claim: the day of its first processed remittance paying more than zero, received by T
        (`NEVER` when none)."""
        paid = (self.r_day <= T) & (self.r_claim >= 0) & np.isin(self.r_status, PROCESSED_STATUSES) & (self.r_paid > 0)
        return min_by(self.r_claim, self.r_day, len(self.c_ids), paid)

    def denial_dates(self, rows: np.ndarray) -> np.ndarray:
        """The dates (datetime64[ns]) of these denial events."""
        return dates_of(self.d_day[rows])

    def denial_carcs(self, rows: np.ndarray) -> np.ndarray:
        """The CARC of these denial events, "none" when no adjustment names one."""
        return np.where(pd.isna(self.d_carc[rows]), "none", self.d_carc[rows]).astype(object)


# ------------------------------------------------------------------ preparation


def _empty(name: str, ds: Dataset):
    return ds.tables[name] if name in ds.tables else _no_rows(name)


@functools.cache
def _no_rows(name: str):
    """An absent optional table: its columns with no rows (built once: the API meets it on every request)."""
    from features.contract import ColumnTable, columns_of

    return ColumnTable({c: np.zeros(0, dtype=object) for c in columns_of(name)})


def _prepare(ds: Dataset) -> History:
    acc = _empty("accounts", ds)
    ids = objects(acc["account_id"])
    order = np.argsort(ids, kind="stable")  # account codes follow account_id order: sorted output
    acct_index = Keys(ids[order])
    n = len(acc)

    def acol(name: str):
        col = acc[name]
        return col if n <= 1 else col.take(order) if isinstance(col, pd.Series) else np.asarray(col)[order]

    pay = _empty("payers", ds)
    pay = take_rows(pay, np.argsort(objects(pay["payer_id"]), kind="stable")) if len(pay) > 1 else pay
    pay_ids = objects(pay["payer_id"])
    pay_index = Keys(pay_ids)
    acct_day = day_numbers(acol("service_date"))
    acct_payer = pay_index.codes(acol("primary_payer_id"))

    # claims: a claim is known from its submission, never before its account's service date
    cl = _empty("claims", ds)
    c_ids = objects(cl["claim_id"])
    claim_index = Keys(c_ids)
    c_acct = acct_index.codes(cl["account_id"])
    c_day = np.where(c_acct >= 0, np.maximum(day_numbers(cl["submitted_date"]), acct_day[c_acct]), NEVER)
    c_freq = enum_codes(cl["frequency"], FREQUENCY_CODE)
    nc = len(cl)
    # claim family: follow original_claim_id to the first claim of the chain
    parent = claim_index.codes(cl["original_claim_id"]) if "original_claim_id" in cl else np.full(nc, -1, np.int64)
    fam = np.arange(nc, dtype=np.int64)
    for _ in range(32):
        p = parent[fam]
        move = p >= 0
        if not move.any():
            break
        fam = np.where(move, p, fam)

    # procedure family of each claim: its highest-charge line (ties: lowest line number)
    cline = _empty("claim_lines", ds)
    l_claim = claim_index.codes(cline["claim_id"])
    ok = l_claim >= 0
    best = last_by(l_claim, nc, ok, -numbers(cline["line_number"]), numbers(cline["line_charge"]))
    codes, uniq = pd.factorize(objects(cline["procedure_code"]))
    fam_of_uniq = np.array([FAMILY_CODE[proc_family(c)] for c in uniq], dtype=np.int64)
    line_fam = np.where(codes >= 0, fam_of_uniq[np.maximum(codes, 0)] if len(uniq) else 0, FAMILY_CODE["unknown"])
    c_proc = np.where(best >= 0, line_fam[np.maximum(best, 0)] if len(line_fam) else 0, FAMILY_CODE["unknown"])

    # remittances: known from receipt, never before their claim
    rem = _empty("remittances", ds)
    r_claim = claim_index.codes(rem["claim_id"])
    rok = r_claim >= 0
    r_acct = np.where(rok, c_acct[np.maximum(r_claim, 0)], -1)
    r_day = np.where(rok, np.maximum(day_numbers(rem["received_date"]), c_day[np.maximum(r_claim, 0)]), NEVER)
    r_status = enum_codes(rem["claim_status"], STATUS_CODE)
    r_paid = numbers(rem["paid_amount"])
    r_pr = np.nan_to_num(numbers(rem["patient_responsibility"]))

    d = _denials(ds, rem, r_claim, r_day, r_status, r_paid, c_acct, cl)

    ap = _empty("appeals", ds)
    a_claim = claim_index.codes(ap["claim_id"])
    aok = a_claim >= 0
    a_c = np.maximum(a_claim, 0)
    a_acct = np.where(aok, c_acct[a_c], -1)
    a_fam = np.where(aok, fam[a_c], -1)
    a_day = np.where(aok, np.maximum(day_numbers(ap["submitted_date"]), c_day[a_c]), NEVER)
    a_dec_day = np.maximum(day_numbers(ap["decision_date"]), a_day)  # outcome known from its decision date
    a_over = isin(ap["outcome"], ["overturned", "partially_overturned"])
    a_level = np.nan_to_num(numbers(ap["level"])).astype(np.int64)

    tx = _empty("transactions", ds)
    t_acct = acct_index.codes(tx["account_id"])
    t_day = np.where(t_acct >= 0, day_numbers(tx["posted_date"]), NEVER)
    t_type = enum_codes(tx["txn_type"], TXN_CODE)
    t_amt = numbers(tx["amount"])

    act = _empty("activities", ds)
    v_acct = acct_index.codes(act["account_id"])
    v_day = np.where(v_acct >= 0, day_numbers(act["activity_date"]), NEVER)
    v_type = enum_codes(act["activity_type"], ACTIVITY_CODE)

    # claim acknowledgements and the work log (optional tables: empty when absent)
    ka = _empty("claim_acks", ds)
    k_claim = claim_index.codes(ka["claim_id"])
    k_day = np.where(k_claim >= 0, np.maximum(day_numbers(ka["received_date"]), c_day[np.maximum(k_claim, 0)]), NEVER)
    wk = _empty("work", ds)
    work_acct = acct_index.codes(wk["account_id"])
    work_day = np.where(work_acct >= 0, day_numbers(wk["worked_date"]), NEVER)
    guarantor = person_of_accounts(acc)
    guarantor = guarantor[order] if n > 1 else guarantor  # in account order, as `acol` gives columns

    # denial resolution days (all history; compared with T later, so no look-ahead)
    c_sub = c_day
    paid_r = rok & np.isin(r_status, PROCESSED_STATUSES) & (r_paid > 0) & (r_day < NEVER)
    over_a = aok & a_over & (a_dec_day < NEVER)
    ev_fam = np.r_[fam[r_claim[paid_r]], a_fam[over_a]]
    ev_day = np.r_[r_day[paid_r], a_dec_day[over_a]]
    d_fam = fam[d["claim"]] if len(d["claim"]) else np.zeros(0, dtype=np.int64)
    d_paid_day = next_day(ev_fam, ev_day, d_fam, d["day"], strict=True)
    fixes = (c_freq == FREQUENCY_CODE["corrected"]) | (c_freq == FREQUENCY_CODE["replacement"])
    fixes &= (parent >= 0) & (c_sub < NEVER)
    known_a = aok & (a_day < NEVER)
    w_fam = np.r_[fam[fixes], a_fam[known_a]]
    w_day = np.r_[c_sub[fixes], a_day[known_a]]
    d_worked_day = next_day(w_fam, w_day, d_fam, d["day"], strict=False)
    # the kind of work that came first: a corrected or replacement claim, or an appeal
    d_fixed_day = next_day(fam[fixes], c_sub[fixes], d_fam, d["day"], strict=False)
    voids = (c_freq == FREQUENCY_CODE["void"]) & (c_sub < NEVER)
    close_void = next_day(fam[voids], c_sub[voids], d_fam, d["day"], strict=False)
    wo = (t_type == TXN_CODE["denial_writeoff"]) | (t_type == TXN_CODE["bad_debt_writeoff"])
    wo &= t_acct >= 0
    close_wo = next_day(t_acct[wo], t_day[wo], d["acct"], d["day"], strict=False)

    return History(
        n=n,
        acct_ids=acct_index.ids,
        acct_day=acct_day,
        disch_day=np.maximum(day_numbers(acol("discharge_date")), acct_day),
        acct_payer=acct_payer,
        age=numbers(acol("patient_age")),
        charges=numbers(acol("total_charges")),
        enc=objects(acol("encounter_type")),
        pay_ids=pay_ids,
        pay_class=objects(pay["financial_class"]),
        tfd=numbers(pay["timely_filing_days"]),
        awd=numbers(pay["appeal_window_days"]),
        c_ids=c_ids,
        c_acct=c_acct,
        c_day=c_day,
        c_payer=pay_index.codes(cl["payer_id"]),
        c_seq=np.nan_to_num(numbers(cl["payer_sequence"]), nan=1).astype(np.int64),
        c_freq=c_freq,
        c_billed=numbers(cl["billed_amount"]),
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
        d_corrected=(d_fixed_day <= d_worked_day) & (d_worked_day < NEVER),
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
        acct_guarantor=guarantor.astype(object),
        acct_gcode=pd.factorize(guarantor)[0].astype(np.int64) if n else np.zeros(0, np.int64),
        k_claim=k_claim,
        k_day=k_day,
        k_status=enum_codes(ka["status"], ACK_CODE),
        w_acct=work_acct,
        w_day=work_day,
        w_action=enum_codes(wk["action"], WORK_CODE),
        extract=day_number(ds.extract_date if ds.extract_date is not None else (latest_date(ds) or "2262-01-01")),
    )


def _denials(ds, rem, r_claim, r_day, r_status, r_paid, c_acct, cl) -> dict[str, np.ndarray]:
    """Denial events, one per remittance that denies (DESIGN.md: a claim with status denied, or a
    claim or line paid nothing with a non-routine CO/PI/OA CARC; a line on a paid claim = partial)."""
    adj = _empty("adjustments", ds)
    nr = len(rem)
    a_remit = Keys(objects(rem["remit_id"])).codes(adj["remit_id"])
    reason = text(adj["reason_code"])
    carc_codes, carc_uniq = pd.factorize(reason, sort=True)  # sorted: the rank is a deterministic tie-break
    routine = np.array([c in routine_carcs() for c in carc_uniq], dtype=bool)
    groups = objects(adj["group_code"])
    denying = (a_remit >= 0) & np.isin(groups, ["CO", "PI", "OA"]) & (carc_codes >= 0)
    if len(routine):
        denying &= ~routine[np.maximum(carc_codes, 0)]
    has_line = notna(adj["line_number"]) if "line_number" in adj else np.zeros(len(adj), bool)
    amt = np.abs(np.nan_to_num(numbers(adj["amount"])))
    rarc = notna(adj["remark_codes"]) if "remark_codes" in adj else np.zeros(len(adj), bool)

    n_claim_level = count_by(a_remit, nr, denying & ~has_line) if nr else np.zeros(0, np.int64)
    n_line_level = count_by(a_remit, nr, denying & has_line) if nr else np.zeros(0, np.int64)
    den_amt = sum_by(a_remit, amt, nr, denying) if nr else np.zeros(0)
    any_rarc = count_by(a_remit, nr, denying & rarc) > 0 if nr else np.zeros(0, bool)
    # the denial's CARC: its largest non-routine adjustment (ties: the lowest code)
    main = last_by(a_remit, nr, denying, -carc_codes, amt) if nr else np.zeros(0, np.int64)

    ok = (r_claim >= 0) & (r_day < NEVER)
    st_denied = r_status == STATUS_CODE["denied"]
    adjudicated = ~np.isin(r_status, [STATUS_CODE["reversal"], STATUS_CODE["pended"]])
    paid = np.nan_to_num(r_paid) > 0
    nonroutine = (n_claim_level + n_line_level) > 0
    full = st_denied | (adjudicated & ~paid & nonroutine)
    partial = adjudicated & paid & ~st_denied & (n_line_level > 0)
    is_d = ok & (full | partial)
    rows = np.flatnonzero(is_d)
    claim = r_claim[rows]
    mi = main[rows]
    carc_rank = np.where(mi >= 0, carc_codes[np.maximum(mi, 0)] if len(carc_codes) else -1, -1)
    carc = take(np.asarray(carc_uniq, dtype=object), carc_rank)
    billed = numbers(cl["billed_amount"])
    amount = np.where(partial[rows], den_amt[rows], billed[claim])
    return {
        "claim": claim,
        "acct": c_acct[claim],
        "day": r_day[rows],
        "carc": carc,
        "carc_rank": carc_rank,
        "group": np.array([GROUP_CODE[carc_group(c)] for c in carc], dtype=np.int64),
        "rarc": any_rarc[rows],
        "amount": np.round(amount, 2),
        "partial": partial[rows],
    }
