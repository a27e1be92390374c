"""RR correction (stimloop.dsp.rr): the rule, live equals offline, and NeuroKit2's Kubios."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import wfdb

from stimloop.devices.sim.arrhythmia import simulate_arrhythmia
from stimloop.dsp.heart import (
    BEAT_ARTIFACT,
    BEAT_ECTOPIC,
    BEAT_NORMAL,
    FLAG_NO_IBI,
    HeartMonitor,
    SignalError,
)
from stimloop.dsp.rr import NNCorrector, correct_rr, resample_corrected_hr

N, E, A = BEAT_NORMAL, BEAT_ECTOPIC, BEAT_ARTIFACT


def _push_all(nnc: NNCorrector, idx, cls):
    return [nnc.push(i, c) for i, c in zip(idx, cls, strict=True)]


def test_pvc_apc_artifact_and_missed_beat_rules():
    nnc = NNCorrector()
    beats = list(range(0, 10_001, 1000))  # a 1000-sample rhythm, 11 beats
    _push_all(nnc, beats, [N] * len(beats))
    assert nnc.reference() == 1000
    # PVC with a full compensatory pause: two NN intervals of the reference
    out = _push_all(nnc, [10_600, 12_000], [E, N])
    assert out[0] is None
    assert (out[1].k, out[1].nn, out[1].n_ectopic, out[1].corrected) == (2, 1000, 1, True)
    # APC that resets the sinus node (span 1.6 x): still the reference, not span / 2
    out = _push_all(nnc, [12_650, 13_600], [E, N])[1]
    assert (out.k, out.nn) == (2, 1000)
    # an artifact between two beats is ignored (the extra detection is removed)
    out = _push_all(nnc, [13_900, 14_600], [A, N])[1]
    assert (out.k, out.nn, out.corrected) == (1, 1000, False)
    # one missed beat: inserted at the midpoint
    out = nnc.push(16_620, N)
    assert (out.k, out.nn, out.corrected) == (2, 1010, True)
    # a second long interval in a row is believed (a real change of rhythm)
    out = nnc.push(18_620, N)
    assert (out.k, out.nn, out.corrected) == (1, 2000, False)
    # a pause of 3 intervals is never filled
    nnc2 = NNCorrector()
    _push_all(nnc2, beats, [N] * len(beats))
    out = nnc2.push(13_000, N)
    assert (out.k, out.nn) == (1, 3000)
    # after restart() no interval spans the break
    nnc2.restart()
    assert nnc2.push(14_000, N) is None
    assert nnc2.push(15_000, N).nn == 1000


def test_correct_rr_places_and_counts_the_corrections():
    idx = np.array([0, 1000, 2000, 2600, 4000, 5000, 5300, 6000, 8000, 9000])
    cls = np.array([N, N, N, E, N, N, A, N, N, N])
    cor = correct_rr(idx, cls, fs=1000.0)
    assert (cor.n_ectopic, cor.n_artifact, cor.n_missed) == (1, 1, 1)
    # the ectopic beat moved to the midpoint, the missed beat inserted at 7000
    np.testing.assert_allclose(cor.index, [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000])
    assert np.isnan(cor.nn_ms[0]) and np.allclose(cor.nn_ms[1:], 1000.0)
    assert list(np.flatnonzero(cor.corrected)) == [3, 4, 7, 8]
    grid, hr = resample_corrected_hr(idx, cls, fs=1000.0, rate_hz=4.0, n_samples=9500)
    assert np.array_equal(grid, np.arange(38) * 250)
    assert np.all(np.isnan(hr[grid < 1000]))
    assert np.allclose(hr[(grid >= 1000) & (grid <= 9000)], 60)
    # a break: no interval ends at the first beat after it, and none is interpolated over
    brk = np.zeros(idx.size, bool)
    brk[5] = True
    grid, hr = resample_corrected_hr(idx, cls, fs=1000.0, no_interval=brk, n_samples=9500)
    assert np.all(np.isnan(hr[(grid > 4000) & (grid <= 5000)]))


def test_live_heart_rate_equals_the_offline_correction():
    """The NN intervals the live HeartRate reports are those correct_rr gives for the
    recorded beats (class and FLAG_NO_IBI as the beats stream carries them)."""
    fs = 500.0
    x, _ = simulate_arrhythmia(180.0, fs, seed=8, pvc_per_min=6, apc_per_min=6, steps_per_min=4)
    x[int(60 * fs) : int(62 * fs)] = np.nan
    b = HeartMonitor(fs).update(x).beats
    normal = b["beat_class"] == BEAT_NORMAL
    assert np.sum(b["beat_class"] == BEAT_ECTOPIC) > 20 and np.any(b["beat_class"] == A)
    cor = correct_rr(b["index"], b["beat_class"], fs, no_interval=(b["flags"] & FLAG_NO_IBI) != 0)
    # the corrected series holds every normal beat, with the live beat's NN interval
    at = np.searchsorted(cor.index, b["index"][normal])
    np.testing.assert_allclose(cor.index[at], b["index"][normal])
    np.testing.assert_allclose(cor.nn_ms[at], b["nn_ms"][normal], equal_nan=True)


def test_agrees_with_neurokit2_kubios_where_nothing_needs_correcting(shared_data):
    """MIT-BIH 100 annotations, A and V as ectopic: NeuroKit2's signal_fixpeaks
    (method="Kubios", Lipponen & Tarvainen 2019) keeps the normal intervals we keep."""
    import neurokit2 as nk

    ann = wfdb.rdann(str(shared_data / "mitbih" / "100"), "atr")
    sym = np.asarray(ann.symbol)
    keep = sym != "+"
    idx, sym = np.asarray(ann.sample)[keep], sym[keep]
    cls = np.where(np.isin(sym, ["A", "V"]), E, N)
    cor = correct_rr(idx, cls, 360.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, fixed = nk.signal_fixpeaks(idx, sampling_rate=360, method="Kubios", iterative=False)
    nk_nn = np.diff(fixed) / 360.0 * 1e3
    # every interval we keep uncorrected ends at a beat NeuroKit2 keeps too, with the
    # same length (>= 95 %; Kubios's thresholds also move a few normal beats)
    plain = ~cor.corrected & np.isfinite(cor.nn_ms)
    end = np.rint(cor.index[plain]).astype(np.int64)
    k = np.searchsorted(fixed, end)
    k = np.minimum(k, fixed.size - 1)
    same = (fixed[k] == end) & (k > 0)
    same &= np.abs(nk_nn[np.maximum(k - 1, 0)] - cor.nn_ms[plain]) < 1e-6
    assert same.mean() >= 0.95, same.mean()
    # and both remove the ectopic short-long pairs: no interval below 75 % of the median
    for nn in (cor.nn_ms[1:], nk_nn):
        assert np.min(nn) > 0.75 * np.median(nn)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(SignalError, match="equal length"):
        correct_rr(np.arange(3), np.zeros(2), 250.0)
    with pytest.raises(SignalError, match="increasing"):
        correct_rr(np.array([3, 2, 1]), np.zeros(3), 250.0)
    with pytest.raises(SignalError, match="0, 1 or 2"):
        correct_rr(np.arange(3), np.array([0, 5, 0]), 250.0)
    with pytest.raises(SignalError, match="fs"):
        correct_rr(np.arange(3), np.zeros(3), 0.0)
    with pytest.raises(SignalError, match="tolerance"):
        NNCorrector(tolerance=0.9)
