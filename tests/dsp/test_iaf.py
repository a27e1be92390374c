"""Individual alpha frequency: 1/f-removed peak, offline and rolling, on real EEG."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from stimloop.dsp.iaf import (
    IAFTracker,
    choose_alpha_peak,
    estimate_iaf,
    fit_alpha_peak,
    welch_psd,
)
from stimloop.dsp.spatial import hjorth


def _load(shared_data, name):
    raw = mne.io.read_raw_edf(shared_data / "eeg" / name, preload=True, verbose=False)
    return raw.info["sfreq"], raw.get_data().T * 1e6, raw.ch_names


def test_eegmat_posterior_alpha_peak(shared_data):
    fs, data, labels = _load(shared_data, "eegmat_subject00_rest.edf")
    for ch in ("O2", "Pz"):
        pk = estimate_iaf(hjorth(data, labels, ch), fs)
        assert pk.reliable, pk
        assert pk.iaf_hz == pytest.approx(10.5, abs=0.5)  # README: about 10.5 Hz
        assert pk.power_db > 10.0
        assert 1.0 < pk.bandwidth_hz < 5.0


def test_eyes_open_has_no_reliable_occipital_peak(shared_data):
    fs, data, labels = _load(shared_data, "eegmmidb_s001r01_eyes_open.edf")
    pk = estimate_iaf(hjorth(data, labels, "O2"), fs)
    assert not pk.reliable and pk.reason
    assert pk.power_db < 3.0


def test_synthetic_peak_recovered_above_1_over_f():
    fs = 250.0
    rng = np.random.default_rng(1)
    n = int(120 * fs)
    white = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    pink = np.fft.irfft(white / np.sqrt(np.maximum(f, 0.5)), n)
    t = np.arange(n) / fs
    for iaf in (8.3, 11.2):
        x = pink / pink.std() + 0.6 * np.sin(2 * np.pi * iaf * t)
        pk = estimate_iaf(x, fs)
        assert pk.reliable and pk.iaf_hz == pytest.approx(iaf, abs=0.25), pk
    pk = estimate_iaf(pink, fs)
    assert not pk.reliable


def test_tracker_chunk_invariant_and_matches_offline(shared_data):
    fs, data, labels = _load(shared_data, "eegmat_subject00_rest.edf")
    x = hjorth(data, labels, "O2")[: int(60 * fs)]
    a = IAFTracker(fs, forget_s=None)
    a.update(x)
    b = IAFTracker(fs, forget_s=None)
    rng = np.random.default_rng(2)
    i = 0
    while i < x.size:
        n = int(rng.integers(1, 1001))
        b.update(x[i : i + n])
        i += n
    assert a.peak == b.peak
    off = estimate_iaf(x, fs)
    assert a.peak.iaf_hz == pytest.approx(off.iaf_hz, abs=0.1)


def test_bad_input():
    with pytest.raises(ValueError, match="search_hz"):
        fit_alpha_peak(np.arange(10.0), np.ones(10), search_hz=(14, 7))
    with pytest.raises(ValueError, match="differ"):
        fit_alpha_peak(np.arange(10.0), np.ones(9))
    f, p = welch_psd(np.full(1000, np.nan), 100.0)
    assert not fit_alpha_peak(f, p).reliable


@pytest.mark.parametrize(("channel", "iaf"), [("C3", 9.5), ("O2", 10.5), ("Pz", 10.5)])
def test_tracker_finds_the_readme_iaf_on_each_derivation(shared_data, channel, iaf):
    """The causal tracker as PhaseEstimator runs it (2 s segments, 120 s forgetting)."""
    fs, data, labels = _load(shared_data, "eegmat_subject00_rest.edf")
    tr = IAFTracker(fs, forget_s=120.0)
    x = hjorth(data, labels, channel)
    seen = []
    for i in range(0, x.size, int(10 * fs)):
        seen.append(tr.update(x[i : i + int(10 * fs)]).iaf_hz)
    # Before: C3 locked to the neighbours' 11.7 Hz peak (T3 and P3 have their IAF there).
    assert tr.peak.reliable and tr.peak.iaf_hz == pytest.approx(iaf, abs=0.3), tr.peak
    # From 80 s on it stays there. (Before that, Pz follows its 11.3 Hz peak: tied with
    # 10.5 Hz early on, and kept by the hysteresis until 10.5 Hz is clearly taller.)
    assert np.all(np.abs(np.array(seen[8:]) - iaf) < 0.3), seen


def _spectrum(peaks, chi=1.7, df=0.25, fmax=60.0):
    """Second generator: an analytic PSD, 1/f^chi times (1 + Gaussian peaks)."""
    f = np.arange(0.0, fmax + df, df)
    p = np.ones_like(f)
    for f0, gain_db, sd in peaks:
        p += (10 ** (gain_db / 10) - 1) * np.exp(-((f - f0) ** 2) / (2 * sd**2))
    return f, p / np.maximum(f, df) ** chi


def test_choose_alpha_peak_rules():
    hz = np.array([8.0, 9.6, 11.8, 13.0])
    assert choose_alpha_peak(hz, np.array([3.0, 7.0, 8.5, 2.0])) == 1  # tie: nearer 10 Hz
    assert choose_alpha_peak(hz, np.array([3.0, 5.0, 8.5, 2.0])) == 2  # clear winner
    assert choose_alpha_peak(hz, np.array([3.0, 5.0, 5.5, 12.0])) == 3  # far from 10, clear
    assert choose_alpha_peak(hz, np.array([3.0, 7.0, 8.5, 2.0]), tie_db=1.0) == 2


def test_fit_alpha_peak_second_generator():
    # A clear single peak near the edge of the search band stays where it is.
    f, p = _spectrum([(12.9, 10.0, 0.6), (10.0, 4.0, 0.5)])
    pk = fit_alpha_peak(f, p)
    assert pk.reliable and pk.iaf_hz == pytest.approx(12.9, abs=0.1) and not pk.ambiguous
    # A stronger beta peak at twice the IAF is outside the search band and never taken.
    f, p = _spectrum([(9.0, 6.0, 0.7), (18.0, 12.0, 1.5)])
    pk = fit_alpha_peak(f, p)
    assert pk.iaf_hz == pytest.approx(9.0, abs=0.1), pk
    # Split peaks within 2 dB: the one nearer 10 Hz, flagged ambiguous.
    f, p = _spectrum([(9.4, 7.0, 0.6), (11.8, 8.0, 0.6)])
    pk = fit_alpha_peak(f, p)
    assert pk.ambiguous and pk.iaf_hz == pytest.approx(9.4, abs=0.1), pk
    # Hysteresis: a tied peak the tracker already follows is kept ...
    f, p = _spectrum([(9.9, 7.0, 0.6), (11.8, 8.0, 0.6)])
    assert fit_alpha_peak(f, p, previous_hz=11.7).iaf_hz == pytest.approx(11.8, abs=0.1)
    assert fit_alpha_peak(f, p).iaf_hz == pytest.approx(9.9, abs=0.1)
    # ... but not against a clearly taller one.
    f, p = _spectrum([(9.9, 4.0, 0.6), (11.8, 9.0, 0.6)])
    assert fit_alpha_peak(f, p, previous_hz=9.9).iaf_hz == pytest.approx(11.8, abs=0.1)
    # Bumps that are not prominent are not peaks: noise does not get locked onto.
    f, p = _spectrum([(10.0, 1.5, 0.3)])
    assert not fit_alpha_peak(f, p).reliable
