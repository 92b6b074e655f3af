"""A small builder of valid contract datasets for tests (a few accounts, hand-made histories)."""

from __future__ import annotations

import itertools

import pandas as pd

from features.contract import REQUIRED_TABLES, Dataset, coerce_table, columns_of, latest_date


class Builder:
    """Add rows with readable defaults; `build()` types them like `read_dataset` does."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {t: [] for t in REQUIRED_TABLES}
        self._ids = itertools.count(1)

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):05d}"

    def payer(
        self, payer_id="P1", financial_class="commercial", timely_filing_days=90, appeal_window_days=60, **kw
    ) -> str:
        self.rows["payers"].append(
            dict(
                payer_id=payer_id,
                payer_name=f"payer {payer_id}",
                financial_class=financial_class,
                timely_filing_days=timely_filing_days,
                appeal_window_days=appeal_window_days,
                **kw,
            )
        )
        return payer_id

    def account(
        self,
        account_id=None,
        service_date="2024-01-01",
        primary_payer_id="P1",
        total_charges=1000.0,
        discharge_date=None,
        encounter_type="outpatient",
        patient_age=50,
        charge=True,
        **kw,
    ) -> str:
        account_id = account_id or self._id("A")
        self.rows["accounts"].append(
            dict(
                account_id=account_id,
                patient_id="PT" + account_id,
                facility_id="F1",
                encounter_type=encounter_type,
                service_date=service_date,
                discharge_date=discharge_date,
                primary_payer_id=primary_payer_id,
                patient_age=patient_age,
                patient_state="NY",
                total_charges=total_charges,
                **kw,
            )
        )
        if charge:
            self.txn(account_id, service_date, "charge", total_charges)
        return account_id

    def claim(
        self,
        account_id,
        submitted_date,
        payer_id="P1",
        billed_amount=1000.0,
        frequency="original",
        original_claim_id=None,
        payer_sequence=1,
        procedure_code="99213",
        claim_id=None,
    ) -> str:
        claim_id = claim_id or self._id("C")
        self.rows["claims"].append(
            dict(
                claim_id=claim_id,
                account_id=account_id,
                payer_id=payer_id,
                payer_sequence=payer_sequence,
                claim_type="professional",
                frequency=frequency,
                submitted_date=submitted_date,
                billed_amount=billed_amount,
                principal_dx="J45.909",
                dx_version=10,
                original_claim_id=original_claim_id,
            )
        )
        self.rows["claim_lines"].append(
            dict(
                claim_id=claim_id,
                line_number=1,
                procedure_code=procedure_code,
                modifiers=None,
                units=1.0,
                line_charge=billed_amount,
                revenue_code=None,
            )
        )
        return claim_id

    def remit(
        self,
        claim_id,
        received_date,
        claim_status="processed_primary",
        paid_amount=0.0,
        patient_responsibility=0.0,
        adjustments=(),
        post=True,
    ) -> str:
        """adjustments: (group, reason, amount[, line_number[, remark_codes]]) tuples."""
        remit_id = self._id("R")
        self.rows["remittances"].append(
            dict(
                remit_id=remit_id,
                claim_id=claim_id,
                received_date=received_date,
                claim_status=claim_status,
                paid_amount=paid_amount,
                patient_responsibility=patient_responsibility,
            )
        )
        for a in adjustments:
            group, reason, amount, *rest = a
            self.rows["adjustments"].append(
                dict(
                    remit_id=remit_id,
                    line_number=rest[0] if rest else None,
                    group_code=group,
                    reason_code=reason,
                    amount=amount,
                    remark_codes=rest[1] if len(rest) > 1 else None,
                )
            )
        account_id = next(c["account_id"] for c in self.rows["claims"] if c["claim_id"] == claim_id)
        payer_id = next(c["payer_id"] for c in self.rows["claims"] if c["claim_id"] == claim_id)
        if post and paid_amount > 0:
            self.txn(account_id, received_date, "insurance_payment", paid_amount, payer_id)
        if post and paid_amount < 0:
            self.txn(account_id, received_date, "payment_reversal", -paid_amount, payer_id)
        if post:
            co = sum(
                -x[2] if x[2] < 0 else x[2] for x in adjustments if x[0] == "CO" and x[1] in ("45", "253")
            )
            if co > 0 and claim_status != "reversal":
                self.txn(account_id, received_date, "contractual_adjustment", co, payer_id)
        return remit_id

    def txn(self, account_id, posted_date, txn_type, amount, payer_id=None) -> str:
        txn_id = self._id("T")
        self.rows["transactions"].append(
            dict(
                txn_id=txn_id,
                account_id=account_id,
                posted_date=posted_date,
                txn_type=txn_type,
                amount=amount,
                payer_id=payer_id,
            )
        )
        return txn_id

    def appeal(
        self, claim_id, submitted_date, level=1, outcome=None, decision_date=None, recovered_amount=None
    ) -> str:
        appeal_id = self._id("AP")
        self.rows["appeals"].append(
            dict(
                appeal_id=appeal_id,
                claim_id=claim_id,
                level=level,
                submitted_date=submitted_date,
                outcome=outcome,
                decision_date=decision_date,
                recovered_amount=recovered_amount,
            )
        )
        return appeal_id

    def activity(self, account_id, activity_date, activity_type) -> str:
        activity_id = self._id("V")
        self.rows["activities"].append(
            dict(
                activity_id=activity_id,
                account_id=account_id,
                activity_date=activity_date,
                activity_type=activity_type,
            )
        )
        return activity_id

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            t: pd.DataFrame(rows, columns=None if rows else columns_of(t)) for t, rows in self.rows.items()
        }

    def build(self, extract_date: str | None = None) -> Dataset:
        return dataset_from_frames(self.frames(), extract_date)


def dataset_from_frames(frames: dict[str, pd.DataFrame], extract_date=None) -> Dataset:
    typed = {}
    for name, df in frames.items():
        if df.empty:
            df = pd.DataFrame({c: [] for c in columns_of(name)})
        frame, problems = coerce_table(name, df)
        assert not problems, problems
        typed[name] = frame
    ds = Dataset(typed)
    ds.extract_date = pd.Timestamp(extract_date) if extract_date else latest_date(ds)
    return ds


def random_history(seed: int, n_accounts: int = 6, start: str = "2024-01-01") -> Builder:
    """A random but causal A/R history (children dated on/after their parents) exercising every
    path the features read: paid, denied, partial and pended remits, reversals, appeals, corrected
    and void claims, secondary claims, patient payments, activities and write-offs."""
    import random

    rnd = random.Random(seed)
    # guarantors from their own stream (the histories stay those of the seed): households of a few
    # accounts, and some accounts with none (the patient is the guarantor)
    who = random.Random(seed + 7919)
    b = Builder()
    b.payer("P1", "commercial", 90, 60)
    b.payer("P2", "medicare", None, 120)
    b.payer("SP", "self_pay", None, None)
    t0 = pd.Timestamp(start)

    def day(base: pd.Timestamp, lo: int, hi: int) -> pd.Timestamp:
        return base + pd.Timedelta(days=rnd.randint(lo, hi))

    def d(x: pd.Timestamp) -> str:
        return x.strftime("%Y-%m-%d")

    for _ in range(n_accounts):
        svc = day(t0, 0, 150)
        payer = rnd.choice(["P1", "P2", None])
        charges = round(rnd.uniform(50, 3000), 2)
        disch = d(day(svc, 0, 10)) if rnd.random() < 0.5 else None
        a = b.account(
            service_date=d(svc),
            primary_payer_id=payer,
            total_charges=charges,
            discharge_date=disch,
            encounter_type=rnd.choice(["inpatient", "outpatient", "emergency", "professional"]),
            guarantor_id=f"G{who.randint(1, max(1, n_accounts // 3))}" if who.random() < 0.8 else None,
        )
        last = svc
        if payer is not None and rnd.random() < 0.9:
            sub = day(svc, 0, 30)
            c = b.claim(
                a, d(sub), payer, charges, procedure_code=rnd.choice(["99213", "71046", "J1100", "27447"])
            )
            kind = rnd.choice(["paid", "paid", "denied", "partial", "pended", "none", "co_only"])
            rday = day(sub, 1, 40)
            last = max(last, rday)
            if kind == "paid":
                paid = round(charges * rnd.uniform(0.3, 0.8), 2)
                pr = round(charges * rnd.uniform(0, 0.2), 2)
                b.remit(
                    c,
                    d(rday),
                    "processed_primary",
                    paid,
                    pr,
                    [("CO", "45", round(charges - paid - pr, 2)), ("PR", rnd.choice(["1", "2", "3"]), pr)],
                )
                if rnd.random() < 0.3:
                    rv = day(rday, 1, 30)
                    b.remit(c, d(rv), "reversal", -paid, -pr, [("CR", "129", -paid)])
                    last = max(last, rv)
                if rnd.random() < 0.3:
                    c2 = b.claim(
                        a, d(day(rday, 0, 10)), "P2" if payer == "P1" else "P1", pr, payer_sequence=2
                    )
                    r2 = day(rday, 11, 40)
                    b.remit(
                        c2, d(r2), "processed_secondary", round(pr * 0.8, 2), 0.0, [("OA", "23", pr * 0.2)]
                    )
                    last = max(last, r2)
                if pr > 0 and rnd.random() < 0.5:
                    pp = day(rday, 5, 90)
                    b.txn(a, d(pp), "patient_payment", round(pr * rnd.uniform(0.2, 1), 2))
                    last = max(last, pp)
            elif kind in ("denied", "co_only"):
                carc = rnd.choice(["16", "197", "50", "29", "97", "18", "27"])
                status = "denied" if kind == "denied" else "processed_primary"
                rem = ("RARC", "N130") if rnd.random() < 0.5 else ()
                adj = [("CO", carc, charges, *((None, rem[1]) if rem else ()))]
                b.remit(c, d(rday), status, 0.0, 0.0, adj)
                fix = rnd.choice(["appeal", "corrected", "void", "writeoff", "nothing"])
                if fix == "appeal":
                    ad = day(rday, 0, 30)
                    dec = day(ad, 5, 60)
                    outcome = rnd.choice(["overturned", "partially_overturned", "upheld"])
                    b.appeal(
                        c,
                        d(ad),
                        rnd.choice([1, 2]),
                        outcome,
                        d(dec),
                        charges * 0.5 if outcome != "upheld" else 0.0,
                    )
                    last = max(last, dec)
                    if outcome != "upheld":
                        b.remit(c, d(day(dec, 0, 20)), "processed_primary", round(charges * 0.5, 2), 0.0)
                elif fix in ("corrected", "void"):
                    cd = day(rday, 0, 40)
                    c2 = b.claim(
                        a,
                        d(cd),
                        payer,
                        charges,
                        frequency="corrected" if fix == "corrected" else "void",
                        original_claim_id=c,
                    )
                    last = max(last, cd)
                    if fix == "corrected" and rnd.random() < 0.7:
                        r2 = day(cd, 3, 60)
                        b.remit(
                            c2,
                            d(r2),
                            "processed_primary",
                            round(charges * 0.6, 2),
                            0.0,
                            [("CO", "45", round(charges * 0.4, 2))],
                        )
                        last = max(last, r2)
                elif fix == "writeoff":
                    wd = day(rday, 10, 90)
                    b.txn(a, d(wd), "denial_writeoff", charges)
                    last = max(last, wd)
            elif kind == "partial":
                paid = round(charges * 0.5, 2)
                b.remit(
                    c,
                    d(rday),
                    "processed_primary",
                    paid,
                    0.0,
                    [("CO", "45", round(charges * 0.2, 2), 1), ("CO", "97", round(charges * 0.3, 2), 2)],
                )
            elif kind == "pended":
                b.remit(c, d(rday), "pended", 0.0, 0.0)
        for _ in range(rnd.randint(0, 6)):
            ad = day(svc, 0, 200)
            b.activity(
                a,
                d(ad),
                rnd.choice(
                    [
                        "statement",
                        "statement",
                        "call_attempt",
                        "call_contact",
                        "letter",
                        "payment_plan_start",
                        "payment_plan_default",
                        "dispute",
                        "financial_assistance_application",
                        "bankruptcy_notice",
                        "agency_placement",
                        "promise_to_pay",
                    ]
                ),
            )
        for _ in range(rnd.randint(0, 2)):
            pp = day(svc, 0, 200)
            b.txn(
                a,
                d(pp),
                rnd.choice(
                    [
                        "patient_payment",
                        "patient_payment",
                        "refund",
                        "charity_adjustment",
                        "bad_debt_writeoff",
                        "administrative_adjustment",
                    ]
                ),
                round(rnd.uniform(5, 300), 2),
            )
    return b
