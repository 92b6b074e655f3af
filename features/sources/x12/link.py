"""Which claim is which: final claim ids, and the claim each remittance and acknowledgement belongs to.

Ids are never built from control numbers. A claim's id is its base id (claim.py) unless a different
claim (another content hash) already holds it, when the content hash tells them apart; the same claim
sent again (same content) is one claim. A remittance or 277CA names its claim by the patient control
number only (CLP01, TRN02), so it goes to one of that account's claims: an 837 claim before one built
from an 835 or 277CA; then the same payer, the same payer sequence, the same billed amount, and the
latest submitted on or before its date, each preferred when some candidate has it. Nothing is ever
matched across accounts. A remittance for an account with no 837 claim goes to a claim built from its
CLP segment, one per (account, payer, payer sequence): `CLP01` (`CLP01/P2` for a secondary).
"""

from __future__ import annotations

import pandas as pd

from features.sources.x12.values import short_hash

# a candidate claim: (claim_id, payer_id, payer_sequence, billed_amount, submitted ISO date, x12_source)
_ID, _PAYER, _SEQ, _BILLED, _SUBMITTED, _SOURCE = range(6)


def _iso(values: pd.Series) -> list:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%d").where(values.notna(), None).tolist()
    return values.tolist()


def assign_claim_ids(base: pd.Series, content: pd.Series, old: pd.DataFrame | None) -> tuple[list, list]:
    """(claim id, kept) for each new 837 claim: kept is False for a claim already known (same content),
    whose id is then the known claim's (its lines are the same lines)."""
    holders: dict[str, tuple[str | None, str]] = {}  # claim_id -> (content, source)
    by_content: dict[str, str] = {}
    if old is not None and len(old):
        contents = old["x12_content"] if "x12_content" in old else pd.Series([None] * len(old))
        sources = old["x12_source"] if "x12_source" in old else pd.Series(["837"] * len(old))
        for cid, ct, src in zip(old["claim_id"], contents, sources.fillna("837"), strict=True):
            ct = ct if isinstance(ct, str) else None
            holders[cid] = (ct, src)
            if ct:
                by_content[ct] = cid
    ids, kept = [], []
    for b, ct in zip(base, content, strict=True):
        known = by_content.get(ct)
        if known is not None:  # the same claim sent again
            ids.append(known)
            kept.append(False)
            continue
        cid = b
        h = holders.get(cid)
        # a holder built from an 835/277CA is replaced; a legacy row without content too (as before)
        if h is not None and h[1] == "837" and h[0] is not None:
            cid = f"{b}-{ct[:8]}"
            if cid in holders:  # (two contents sharing 8 hex digits)
                cid = f"{b}-{ct}"
        holders[cid] = (ct, "837")
        by_content[ct] = cid
        ids.append(cid)
        kept.append(True)
    return ids, kept


class ClaimIndex:
    """Claims by account (existing and new), to match remittances and acknowledgements to."""

    def __init__(self, frames: list[pd.DataFrame]):
        self.by_account: dict[str, list[tuple]] = {}
        self.taken: set[str] = set()
        self.account_of: dict[str, str] = {}
        self.source_of: dict[str, str] = {}
        for df in frames:
            if df is None or not len(df):
                continue
            sources = df["x12_source"].fillna("837") if "x12_source" in df else ["837"] * len(df)
            for t in zip(df["claim_id"], df["account_id"], df["payer_id"], df["payer_sequence"],
                         df["billed_amount"], _iso(df["submitted_date"]), sources, strict=True):
                self.add(t[1], (t[0], t[2], int(t[3]), float(t[4]), t[5], t[6]))

    def add(self, account: str, claim: tuple) -> None:
        if claim[_ID] in self.taken:  # (a stub replaced by an 837 claim of the same id)
            self.by_account[account] = [c for c in self.by_account.get(account, []) if c[_ID] != claim[_ID]]
        self.by_account.setdefault(account, []).append(claim)
        self.taken.add(claim[_ID])
        self.account_of[claim[_ID]] = account
        self.source_of[claim[_ID]] = claim[_SOURCE]

    def match(self, account: str, payer: str | None, seq: int | None, billed: float | None,
              when: str | None, any_stub: bool = False) -> str | None:
        """The claim of `account` this remittance or ack belongs to; None: build one from it."""
        cands = self.by_account.get(account)
        if not cands:
            return None
        pool = [c for c in cands if c[_SOURCE] == "837"]
        if not pool:  # only claims built from remits/acks: one per payer and payer sequence
            pool = [c for c in cands if c[_PAYER] == payer and (seq is None or c[_SEQ] == seq)]
            if not pool:
                if not any_stub:
                    return None
                pool = cands
        pool = [c for c in pool if c[_PAYER] == payer] or pool
        if seq is not None:
            pool = [c for c in pool if c[_SEQ] == seq] or pool
        if billed is not None and len(pool) > 1:
            pool = [c for c in pool if abs(c[_BILLED] - billed) < 0.005] or pool
        if when is not None and len(pool) > 1:
            before = [c for c in pool if c[_SUBMITTED] is not None and c[_SUBMITTED] <= when] or pool
            return max(before, key=lambda c: c[_SUBMITTED] or "")[_ID]
        return pool[0][_ID]

    def stub_id(self, account: str, payer: str, seq: int) -> str:
        """A free id for a claim built from a remittance or ack (CLP01, CLP01/P2, ...)."""
        base = account + (f"/P{seq}" if seq > 1 else "")
        cid, n = base, 1
        while cid in self.taken:
            cid = f"{base}-{short_hash(payer, n=8)}" + (f"-{n}" if n > 1 else "")
            n += 1
        return cid


def link_originals(claims: pd.DataFrame, remits: pd.DataFrame) -> None:
    """original_claim_id of a corrected, replacement or void claim, in place: the claim of its account
    whose remittance carried the payer claim number its REF*F8 names, else the account's primary
    original claim (id = CLM01) when it is known."""
    if "x12_original_ref" not in claims:
        claims["x12_original_ref"] = None
    out = claims["original_claim_id"].copy() if "original_claim_id" in claims else pd.Series(
        [None] * len(claims), index=claims.index, dtype=object)
    todo = claims["frequency"].isin(("corrected", "replacement", "void")).to_numpy() & out.isna().to_numpy()
    if todo.any():
        account_of = dict(zip(claims["claim_id"], claims["account_id"], strict=True))
        icn = {(account_of.get(cid), pcn): cid
               for pcn, cid in zip(remits["payer_claim_number"], remits["claim_id"], strict=True)
               if isinstance(pcn, str)}
        for i in claims.index[todo]:
            acct, ref, me = claims.at[i, "account_id"], claims.at[i, "x12_original_ref"], claims.at[i, "claim_id"]
            cand = icn.get((acct, ref)) if isinstance(ref, str) else None
            if cand is None and acct in account_of and account_of[acct] == acct:
                cand = acct
            if cand is not None and cand != me:
                out.at[i] = cand
    claims["original_claim_id"] = out.astype(object).where(out.notna(), None)
