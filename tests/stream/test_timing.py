"""The shared timing rule (gaps and clock jumps between consecutive stamps)."""

import numpy as np

from stimloop.stream.timing import GAP_PERIODS, timing_breaks


def test_one_stamp_follows_the_same_rule_as_a_longer_chunk():
    """A 1-sample pull (the real-time case) takes a scalar path; it must find the same
    breaks as the general path finds before the first of two stamps."""
    rng = np.random.default_rng(7)
    rate, tol = 1000.0, 0.005
    period = 1.0 / rate
    steps = np.concatenate(
        [
            [period, GAP_PERIODS * period, 1.51 * period, 2 * period, 0.3, -tol, -0.0051, -2.0],
            rng.uniform(-0.02, 0.02, 200),
        ]
    )
    n_breaks = 0
    for prev in (np.nan, 100.0):
        for step in steps:
            one = np.array([100.0 + step])
            rows1, jumps1 = timing_breaks(prev, one, rate, tol)
            rows2, jumps2 = timing_breaks(prev, np.append(one, one[0] + period), rate, tol)
            first = rows2 == 0
            np.testing.assert_array_equal(rows1, rows2[first])
            np.testing.assert_array_equal(jumps1, jumps2[first])
            n_breaks += rows1.size
    # Both kinds of break occur in the cases above (forward gaps and steps back).
    assert n_breaks > 50


def test_breaks_name_the_row_and_the_jump():
    stamps = 10.0 + np.array([0.0, 0.001, 0.002, 0.010, 0.011, 0.005])
    rows, jumps = timing_breaks(9.999, stamps, 1000.0, 0.002)
    np.testing.assert_array_equal(rows, [3, 5])
    np.testing.assert_allclose(jumps, [0.008, -0.006])
