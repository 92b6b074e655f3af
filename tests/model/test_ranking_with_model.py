"""The ranking with a real model: order-invariant and reproducible, its next actions follow each
account's state, and the API's NumPy-column path gives the batch's DataFrame worklist."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from features.reasons import ACTION_SENTENCES
from serving.ranking import load_ranking_config, rank


@pytest.mark.slow
def test_two_runs_agree_with_a_real_model(small_model):
    from features.snapshot import account_features, denial_features

    model, _, ds, _ = small_model
    acc = account_features(ds, "2025-05-01", stats=model.stats_, with_labels=False)
    den = denial_features(ds, "2025-05-01", stats=model.stats_, with_labels=False)
    a = rank(model, acc, den, load_ranking_config(), "m/1", "r1", reasons_rows=50)
    b = rank(model, acc.sample(frac=1, random_state=1), den.sample(frac=1, random_state=2), load_ranking_config(),
             "m/1", "r1", reasons_rows=50)
    pd.testing.assert_frame_equal(a.accounts, b.accounts)
    pd.testing.assert_frame_equal(a.denials, b.denials)
    assert a.accounts["is_exploration"].any()
    # each next action follows the account's state
    wl = a.accounts.merge(acc[["account_id", "balance_patient"]], on="account_id")
    assert wl["next_action"].nunique() >= 3
    held = wl["next_action"] == "hold"
    assert (held == wl["hold_reason"].notna()).all()
    denial_work = wl["next_action"].isin(["appeal", "correct_and_resubmit"])
    assert wl.loc[denial_work, "account_id"].isin(den["account_id"]).all()
    # a denial is worked the way the office's history shows for its CARC (mostly corrected: corrected), and
    # by its CARC group where that history is thin
    cfg = load_ranking_config()
    d = den.set_index("claim_id").reindex(a.denials["claim_id"])
    thin = (d["carc_worked"] < cfg["denial_work"]["min_worked"]).to_numpy()
    by_group = d["carc_group"].isin(cfg["correct_and_resubmit_groups"]).to_numpy()
    share = d["carc_corrected_share"].fillna(0).to_numpy()
    one_way = ~thin & (np.minimum(share, 1 - share) * d["carc_worked"].to_numpy() < cfg["denial_work"]["min_each_way"])
    fix = a.denials["next_action"].to_numpy() == "correct_and_resubmit"
    assert (~thin).any() and fix.any() and (~fix).any()
    assert (fix[thin] == by_group[thin]).all()
    assert (fix[one_way] == (share[one_way] >= 0.5)).all()
    patient_work = wl["next_action"].isin(["bill_patient", "send_to_agency"])
    assert (wl.loc[patient_work, "balance_patient"] > 0).all()
    # reasons for the top 50 rows, in words: the action's sentence first, no raw float or nan anywhere
    raw = re.compile(r"\d\.\d|\d{5,}|\b(nan|NaN|inf|None|NaT)\b")
    top = a.accounts[a.accounts["rank"] <= 50]
    assert (a.accounts.loc[a.accounts["rank"] > 50, "reasons"].map(len) == 0).all()
    assert top["reasons"].map(len).between(2, 3).mean() > 0.9  # most rows have features that speak
    for rs, action in zip(top["reasons"], top["next_action"], strict=True):
        assert 1 <= len(rs) <= 3 and not any(raw.search(s) for s in rs), rs
        work = {"wait": "nothing to do", "hold": "on hold", "send_to_agency": "send to the collection agency",
                "write_off": "write off", "covered": "covered by the"}.get(action) or ACTION_SENTENCES[action].work
        assert rs[0].startswith(work), (action, rs[0])


@pytest.mark.slow
def test_numpy_columns_rank_as_the_dataframes_do(small_model):
    """The API's form (features and worklist as dicts of NumPy arrays) and the batch's (DataFrames)
    go through the same functions and give the same worklist, value for value."""
    from features.snapshot import snapshot_features

    model, _, ds, _ = small_model
    cfg_ = load_ranking_config(overrides={"exploration_share": 0.1})
    for capacity in (None, 600.0):
        acc, den = snapshot_features(ds, "2025-05-01", stats=model.stats_, with_labels=False)
        frames = rank(model, acc, den, cfg_, "m/1", "r1", reasons_rows=40, capacity_minutes=capacity)
        cols_acc, cols_den = snapshot_features(ds, "2025-05-01", stats=model.stats_, with_labels=False, frames=False)
        cols = rank(model, cols_acc, cols_den, cfg_, "m/1", "r1", reasons_rows=40, capacity_minutes=capacity,
                    frames=False)
        assert len(frames.accounts) > 50 and len(frames.denials) > 5
        for got, want in ((cols.accounts, frames.accounts), (cols.denials, frames.denials)):
            assert list(got) == list(want.columns)
            for c in want.columns:
                w = want[c].to_numpy()
                g = got[c]
                assert len(g) == len(w), c
                if w.dtype.kind in "fM":
                    np.testing.assert_array_equal(g.astype(w.dtype), w, err_msg=c)
                else:
                    assert [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in g.tolist()] == [
                        None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in w.tolist()], c
