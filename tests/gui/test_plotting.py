"""Decimation and the reader's block envelope: what is drawn keeps every extreme."""

from __future__ import annotations

import numpy as np

from stimloop.gui.feed import BlockEnvelope
from stimloop.gui.plotting import merge_envelope, minmax_decimate, stack_channels


def test_minmax_decimate_keeps_every_extreme():
    rng = np.random.default_rng(1)
    t = np.arange(10_000) / 1000.0
    y = rng.normal(size=(10_000, 4))
    y[1234, 2] = 50.0  # a one-sample spike must survive on screen
    td, yd = minmax_decimate(t, y, 300)
    assert len(td) == 600 and yd.shape == (600, 4)
    assert yd[:, 2].max() == 50.0
    np.testing.assert_array_equal(yd.max(axis=0), y[-len(y) // 300 * 300 :].max(axis=0))
    assert np.all(np.diff(td) >= 0)
    # short traces pass through unchanged
    t2, _ = minmax_decimate(t[:100], y[:100], 300)
    assert t2 is t[:100].base or np.array_equal(t2, t[:100])


def test_block_envelope_chunked_equals_whole_and_matches_raw():
    rng = np.random.default_rng(2)
    n, ch, block = 5003, 3, 8
    x = rng.normal(size=(n, ch))
    x[100:103, 1] = np.nan
    t = np.arange(n) / 1000.0
    whole = BlockEnvelope(block, ch, 10_000)
    whole.write(x, t)
    chunked = BlockEnvelope(block, ch, 10_000)
    i = 0
    while i < n:
        k = int(rng.integers(1, 1000))
        chunked.write(x[i : i + k], t[i : i + k])
        i += k
    tw, lw, hw = whole.latest(10_000)
    tc, lc, hc = chunked.latest(10_000)
    np.testing.assert_array_equal(tw, tc)
    np.testing.assert_array_equal(lw, lc)
    np.testing.assert_array_equal(hw, hc)
    m = n // block
    assert len(tw) == m  # the partial last block is not shown yet
    raw = x[: m * block].reshape(m, block, ch).astype(np.float32)
    np.testing.assert_array_equal(lw, raw.min(axis=1))
    np.testing.assert_array_equal(hw, raw.max(axis=1))
    assert np.isnan(lw[100 // block, 1])  # NaN in, NaN (a break) out
    # merging blocks gives the same envelope as decimating the raw samples
    tm, ym = merge_envelope(tw, lw, hw, 125)
    assert len(tm) == len(ym)
    k = m // 125
    _, yd = minmax_decimate(t[: m * block], x[: m * block].astype(np.float32), m // k)
    np.testing.assert_array_equal(ym[:, 0], yd[:, 0])


def test_stack_channels_breaks_at_nan_and_between_rows():
    t = np.arange(5.0)
    y = np.ones((5, 2))
    y[2, 0] = np.nan
    x, yy, conn = stack_channels(t, y, np.ones(2))
    assert x.shape == yy.shape == conn.shape == (10,)
    assert np.isfinite(yy).all()
    assert not conn[4] and not conn[9]  # rows are not joined
    assert not conn[1] and not conn[2]  # no line into or out of the NaN sample
