"""The arrhythmia test generator's truth is what its signal contains."""

from __future__ import annotations

import numpy as np
import pytest

from stimloop.devices.sim.arrhythmia import (
    CLASS_APC,
    CLASS_NORMAL,
    CLASS_PVC,
    simulate_arrhythmia,
    tms_artifacts,
    train_pulses,
)


def _clean(fs: float, seed: int, **kw):
    return simulate_arrhythmia(
        120.0, fs, seed=seed, noise_mv=0.0, wander_mv=0.0, pvc_per_min=6, apc_per_min=6, **kw
    )


@pytest.mark.parametrize("invert", [False, True], ids=["upright", "inverted"])
def test_truth_is_the_extremum_of_the_dominant_deflection(invert):
    fs = 500.0
    x, tr = _clean(fs, 1, invert=invert)
    assert {CLASS_NORMAL, CLASS_APC, CLASS_PVC} <= set(tr.beat_class)
    w = round(0.06 * fs)
    for r, pol in zip(tr.r_index, tr.polarity, strict=True):
        seg = x[r - w : r + w + 1]
        # the marked sample is the extremum in the beat's own polarity ...
        assert pol * x[r] >= (pol * seg).max()
        # ... and that deflection dominates the QRS (from the level 100 ms before R)
        base = x[r - round(0.1 * fs)]
        dev = seg - base
        assert abs(x[r] - base) >= 0.9 * np.abs(dev).max()


def test_pvcs_have_a_full_compensatory_pause_and_apcs_do_not():
    fs = 360.0
    _, tr = _clean(fs, 2)
    rr = np.diff(tr.r_index) / fs
    for cls, lo, hi in ((CLASS_PVC, 1.9, 2.1), (CLASS_APC, 1.4, 1.95)):
        k = np.flatnonzero(tr.beat_class == cls)
        k = k[(k > 0) & (k < tr.r_index.size - 1)]
        assert k.size >= 5
        pair = (rr[k - 1] + rr[k]) / tr.sinus_rr_s[k]
        assert np.all((pair > lo) & (pair < hi)), pair
        assert np.all(rr[k - 1] / tr.sinus_rr_s[k] < 0.82)  # premature


def test_pvcs_are_wide_and_tall():
    fs = 1000.0
    x, tr = _clean(fs, 3)

    def half_width(r: int, pol: int) -> float:
        seg = pol * x[r - 200 : r + 200]
        base = np.median(pol * x[r - 400 : r - 300])
        above = np.flatnonzero(seg - base >= 0.5 * (seg[200] - base))
        return (above.max() - above.min()) / fs

    w = {c: [half_width(r, p) for r, p, k in zip(tr.r_index, tr.polarity, tr.beat_class,
                                                  strict=True) if k == c][:8]
         for c in (CLASS_NORMAL, CLASS_PVC)}  # fmt: skip
    assert np.median(w[CLASS_PVC]) > 2.0 * np.median(w[CLASS_NORMAL])
    height = np.abs(x[tr.r_index] - x[tr.r_index - 150])
    assert np.median(height[tr.beat_class == CLASS_PVC]) > 1.2 * np.median(
        height[tr.beat_class == CLASS_NORMAL]
    )


def test_is_deterministic_and_checks_its_arguments():
    a, ta = simulate_arrhythmia(30.0, 250.0, seed=7, steps_per_min=4, motion_per_min=2)
    b, tb = simulate_arrhythmia(30.0, 250.0, seed=7, steps_per_min=4, motion_per_min=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta.r_index, tb.r_index)
    assert ta.step_index.size and ta.motion.shape[1] == 2
    with pytest.raises(ValueError, match="fs"):
        simulate_arrhythmia(10.0, 50.0)
    with pytest.raises(ValueError, match="hr_bpm"):
        simulate_arrhythmia(10.0, 250.0, hr_bpm=200.0)


def test_steps_are_placed_away_from_beats_with_their_size():
    fs = 500.0
    x, tr = simulate_arrhythmia(
        120.0, fs, seed=4, steps_per_min=6, noise_mv=0.0, wander_mv=0.0, motion_per_min=0
    )
    assert tr.step_index.size >= 6
    for s, size in zip(tr.step_index, tr.step_mv, strict=True):
        assert np.min(np.abs(tr.r_index - s)) >= 0.12 * fs
        jump = x[s + round(0.012 * fs)] - x[s - 2]
        assert abs(jump - size) < 0.25 * abs(size) + 0.3  # the beat's own waves add a bit


def test_tms_trains_and_artifacts():
    fs = 1000.0
    n = int(40 * fs)
    p = train_pulses(fs, n, rate_hz=10.0, on_s=5.0, off_s=11.0, start_s=2.0)
    assert p.size == 2 * 50 + 50  # trains at 2, 18 and 34 s (the last one complete)
    assert np.allclose(np.diff(p[:50]), 100)
    assert p[50] - p[0] == 16000
    art = tms_artifacts(n, fs, p, seed=1, spike_mv=8.0)
    peak = np.abs(art[p[0] : p[0] + 5]).max()
    assert 0.7 * 8.0 <= peak <= 1.3 * 8.0
    quiet = art[p[0] + 60 : p[1] - 1]
    assert np.abs(quiet).max() < 1e-3  # decayed long before the next pulse
