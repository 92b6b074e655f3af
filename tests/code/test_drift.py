"""Population stability index (training.drift): known shifts give known PSI, identical
distributions give 0, and the report bins new values like the reference did."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.drift import WARN_PSI, build_reference, drift_report, psi


def test_identical_distributions_give_zero():
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    assert psi(shares, shares) == 0.0


def test_a_known_shift_gives_the_known_psi():
    # sum of (a - e) * ln(a / e) over the bins, by hand
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected, rel=1e-12)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(psi([0.9, 0.1], [0.5, 0.5]), rel=1e-12)  # symmetric


def test_an_empty_bin_is_floored_not_infinite():
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))


def test_report_warns_on_a_shifted_column_only():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=5000), "y": rng.normal(size=5000),
                          "c": rng.choice(["a", "b"], size=5000)})
    ref = build_reference(frame, ["x", "y"], {"c": ["a", "b"]}, {"s": frame["x"].to_numpy()})
    same = drift_report(ref, frame, {"s": frame["x"].to_numpy()}).set_index("name")
    assert (same["psi"] == 0).all() and not same["warn"].any()
    moved = frame.assign(x=frame["x"] + 1.0, c="a")
    report = drift_report(ref, moved, {"s": moved["x"].to_numpy()}).set_index("name")
    assert report.loc["x", "psi"] > WARN_PSI and report.loc["c", "psi"] > WARN_PSI
    assert report.loc["y", "psi"] == 0 and not report.loc["y", "warn"]
