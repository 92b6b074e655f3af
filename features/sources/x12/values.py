"""Values inside X12 elements: the reader's canonical separators, dates, amounts, hashes, code lists."""

from __future__ import annotations

import hashlib
from datetime import date
from functools import lru_cache

from features.sources.x12.report import X12Error

# The reader rewrites every interchange with these separators, whatever the sender used (ISA), so
# that the mapping never needs to know them: control characters that X12 data cannot contain.
ELEMENT = "\x1d"
COMPONENT = "\x1f"
REPETITION = "\x1e"
SEGMENT = "\n"

# SBR09 / CLP06 claim filing indicator -> financial class.
FINANCIAL_CLASS_FROM_FILING = {
    "MA": "medicare", "MB": "medicare", "16": "medicare",
    "MC": "medicaid",
    "CI": "commercial", "BL": "commercial", "15": "commercial", "FI": "commercial",
    "HM": "managed_care", "12": "managed_care", "13": "managed_care", "14": "managed_care",
    "WC": "workers_comp",
    "09": "self_pay",
}
SEQUENCE_FROM_SBR = {"P": 1, "S": 2, "T": 3}
SEQUENCE_FROM_STATUS = {"1": 1, "2": 2, "3": 3, "19": 1, "20": 2, "21": 3}


@lru_cache(maxsize=65536)
def d8(v: str) -> str | None:
    """CCYYMMDD (or the start of an RD8 range or a DT date-time) -> ISO date; None when not a date."""
    v = v[:8]
    if len(v) != 8 or not v.isdigit():
        return None
    try:
        return date(int(v[:4]), int(v[4:6]), int(v[6:])).isoformat()
    except ValueError:
        return None


def yymmdd(v: str | None) -> str | None:
    """ISA09 (YYMMDD) -> ISO date: 20YY, or 19YY when that would be in the future."""
    if not v or len(v) != 6 or not v.isdigit():
        return None
    century = "20" if int(v[:2]) <= date.today().year % 100 + 1 else "19"
    return d8(century + v)


def money(v: str, segment: int, what: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise X12Error(segment, f"{what} is not a number") from None


def element(s: list[str], i: int) -> str:
    return s[i] if len(s) > i else ""


def short_hash(*parts: object, n: int = 16) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()[:n]


def text_hash(text: str) -> str:
    """16 hex characters of a content hash (ids built from what a segment loop says)."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def age(birth: str | None, at: str | None) -> int | None:
    if not birth or not at:
        return None
    b, a = date.fromisoformat(birth), date.fromisoformat(at)
    years = a.year - b.year - ((a.month, a.day) < (b.month, b.day))
    return years if years >= 0 else None
