"""The lift evaluation on a small simulated office with a trained model: recoup's lift order brings more
true lift within 20% of the minutes than working at random, the oracle is the ceiling, the numbers do
not change from run to run, and `evaluate_model` reports it where the data has `_truth/actions`."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def reports(small_model, small_data):
    from training.train import evaluate_model

    model, snaps, ds, settings = small_model
    return evaluate_model(model, snaps, settings, small_data, ds)


def _lift_report(reports):
    found = [r for r in reports if "lift_captured_at_20" in r.metrics]
    assert len(found) == 1, "evaluate_model gives one lift report where the data has _truth/actions"
    return found[0]


def test_lift_order_captures_more_true_lift_than_random(reports):
    m = _lift_report(reports).metrics
    assert m["lift_test_dates"] == 3 and m["lift_truth_coverage"] == 1.0
    assert m["lift_captured_at_20"] > 0
    assert m["lift_captured_at_20"] > 1.5 * m["lift_captured_at_20_random"]
    assert m["lift_share_of_oracle_at_20"] > m["lift_share_of_oracle_at_20_random"]
    # issue 13: at most 2% of the capacity-cut list works a claim inside its normal adjudication time
    assert m["premature_claim_work_share_at_20"] <= 0.02
    assert m["premature_claim_work_share_at_20"] < m["premature_claim_work_share_at_20_expected_recovery"]


def test_oracle_is_the_ceiling(reports, small_model):
    rep = _lift_report(reports)
    m = rep.metrics
    for k in small_model.settings.evaluation.top_k_percent:
        assert m[f"lift_share_of_oracle_at_{k}_oracle"] == 1.0  # by construction
        assert m[f"lift_captured_at_{k}_oracle"] <= m["lift_oracle_total"] + 1e-6
    at20 = rep.tables["lift_at_k"].query("top_percent_minutes == 20")
    # greedy by true lift per minute: only the last piece of work at the budget's edge could let another
    # order past it
    assert (at20["share_of_oracle"] <= 1.02).all(), at20
    assert (at20["minutes_used"] <= at20["budget_minutes"] + 1e-6).all()


def test_numbers_are_deterministic(reports, small_model):
    from serving.ranking import load_ranking_config
    from training.evaluate import evaluate_lift
    from training.train import read_truth, read_truth_actions

    model, snaps, ds, settings = small_model
    first = _lift_report(reports)
    again = evaluate_lift(model, snaps.part("test"), snaps.test_open_denials, load_ranking_config(),
                          read_truth_actions(ds.source), read_truth(ds.source)[0], settings, ds.tables.get("work"))
    assert again.metrics == first.metrics
    for name, table in first.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], table)


def test_offpolicy_says_why_it_is_not_estimated(reports):
    rep = _lift_report(reports)
    assert rep.metrics["offpolicy_available"] == 0.0
    assert "idle" in rep.notes["offpolicy"] and "propensity" in rep.notes["offpolicy"]
