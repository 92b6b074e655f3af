"""Population stability: the training reference stored with the model (aggregates only: bin edges
and shares, never rows) and the PSI report each scoring run writes."""

from __future__ import annotations

import numpy as np
import pandas as pd

EPS = 1e-4
WARN_PSI = 0.2


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.array([])
    return np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))


def _numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of the bins (-inf, e1], (e1, e2], ..., (ek, inf) and a last bin for missing values."""
    finite = np.isfinite(values)
    idx = np.searchsorted(edges, values[finite], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, (~finite).sum())
    return counts / max(len(values), 1)


def build_reference(frame: pd.DataFrame, numeric: list[str], categorical: dict[str, list[str]],
                    scores: dict[str, np.ndarray], bins: int = 10) -> dict:
    ref: dict = {"numeric": {}, "categorical": {}, "scores": {}, "rows": int(len(frame))}
    for col in numeric:
        v = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        e = _edges(v, bins)
        ref["numeric"][col] = {"edges": e.tolist(), "shares": _numeric_shares(v, e).tolist()}
    for col, vocab in categorical.items():
        ref["categorical"][col] = {"vocab": list(vocab), "shares": _cat_shares(frame[col], vocab).tolist()}
    for name, v in scores.items():
        e = _edges(np.asarray(v, float), bins)
        ref["scores"][name] = {"edges": e.tolist(), "shares": _numeric_shares(np.asarray(v, float), e).tolist()}
    return ref


def _cat_shares(values: pd.Series, vocab: list[str]) -> np.ndarray:
    codes = pd.Categorical(values.astype(object).where(values.notna(), None), categories=vocab).codes
    counts = np.bincount(np.where(codes < 0, len(vocab), codes), minlength=len(vocab) + 1).astype(float)
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e, a = np.clip(np.asarray(expected, float), EPS, None), np.clip(np.asarray(actual, float), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(reference: dict, frame: pd.DataFrame, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """PSI of every reference feature and score against this run's rows (one row per item)."""
    rows = []
    for col, r in reference["numeric"].items():
        if col in frame:
            v = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            rows.append(("feature", col, psi(r["shares"], _numeric_shares(v, np.array(r["edges"])))))
    for col, r in reference["categorical"].items():
        if col in frame:
            rows.append(("feature", col, psi(r["shares"], _cat_shares(frame[col], r["vocab"]))))
    for name, r in reference["scores"].items():
        if name in scores:
            v = np.asarray(scores[name], float)
            rows.append(("score", name, psi(r["shares"], _numeric_shares(v, np.array(r["edges"])))))
    out = pd.DataFrame(rows, columns=["kind", "name", "psi"])
    out["warn"] = out["psi"] > WARN_PSI
    return out.sort_values(["kind", "psi"], ascending=[True, False]).reset_index(drop=True)
