"""value_at (dsp/series.py): nearest-sample lookup of pulse times on a series."""

from __future__ import annotations

import numpy as np

from stimloop.dsp.series import value_at


def test_value_at_equals_brute_force_nearest_and_is_nan_outside():
    rng = np.random.default_rng(7)
    stamps = np.cumsum(rng.uniform(0.001, 0.01, 500))
    values = rng.uniform(-np.pi, np.pi, 500)
    t = rng.uniform(stamps[0] - 0.5, stamps[-1] + 0.5, 2000)
    got = value_at(stamps, values, t)
    dist = np.abs(t[:, None] - stamps[None, :])
    want = values[np.argmin(dist, axis=1)]
    inside = (t >= stamps[0]) & (t <= stamps[-1])
    assert inside.sum() > 1000 and (~inside).sum() > 50
    np.testing.assert_array_equal(got[inside], want[inside])
    assert np.isnan(got[~inside]).all()


def test_value_at_exact_stamps_ties_and_empty_series():
    stamps = np.array([0.0, 1.0, 2.0])
    values = np.array([10.0, 11.0, 12.0])
    np.testing.assert_array_equal(value_at(stamps, values, stamps), values)
    assert value_at(stamps, values, np.array([0.5]))[0] == 11.0  # a tie goes to the later
    assert np.isnan(value_at(np.empty(0), np.empty(0), np.array([1.0]))).all()
    single = value_at(np.array([1.0]), np.array([5.0]), np.array([1.0, 1.5]))
    assert single[0] == 5.0 and np.isnan(single[1])
