"""Individual alpha frequency: 1/f-removed peak, offline and rolling, on real EEG."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from stimloop.dsp.iaf import IAFTracker, estimate_iaf, fit_alpha_peak, welch_psd
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
