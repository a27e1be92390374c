"""Causal alpha phase: accuracy on real EEG against the field's ground truth, causality,
chunking, bad input, low-alpha confidence, forecasting and the simulator's known phase."""

from __future__ import annotations

import mne
import numpy as np
import pytest
import scipy.signal

from stimloop.dsp.phase import PhaseEstimator, causal_phase
from stimloop.dsp.spatial import hjorth

# IAFs of the reference phastimate figures (../shared/data/README.md): 9.5 Hz at C3,
# 10.5 Hz over O2 and Pz. Targets are 0.85 x phastimate's circular SD (all / top-50 %).
REFERENCE = {
    "C3": (9.5, 55.7, 38.3),
    "O2": (10.5, 30.8, 17.6),
    "Pz": (10.5, 39.1, 22.8),
}


def circ_stats_deg(err: np.ndarray) -> tuple[float, float]:
    """Circular SD sqrt(-2 ln R) and circular mean of an angle array, in degrees."""
    m = np.mean(np.exp(1j * err))
    return float(np.degrees(np.sqrt(-2 * np.log(np.abs(m))))), float(np.degrees(np.angle(m)))


def true_phase(x: np.ndarray, fs: float, iaf: float) -> tuple[np.ndarray, np.ndarray]:
    """The README's convention: Butterworth 4 at IAF ± 2 Hz, sosfiltfilt, Hilbert."""
    sos = scipy.signal.butter(4, [iaf - 2, iaf + 2], "bandpass", fs=fs, output="sos")
    a = scipy.signal.hilbert(scipy.signal.sosfiltfilt(sos, x))
    return np.angle(a), np.abs(a)


@pytest.fixture(scope="module")
def eegmat():
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "shared" / "data" / "eeg"
    path = path / "eegmat_subject00_rest.edf"
    if not path.is_file():
        pytest.fail(f"real recording missing: {path}")
    raw = mne.io.read_raw_edf(path, preload=True, verbose=False)
    return raw.info["sfreq"], raw.get_data().T * 1e6, raw.ch_names


@pytest.mark.parametrize("channel", ["C3", "O2", "Pz"])
def test_accuracy_beats_phastimate_on_real_eeg(eegmat, channel):
    fs, data, labels = eegmat
    iaf, ref_all, ref_top = REFERENCE[channel]
    x = hjorth(data, labels, channel)
    ph, amp = true_phase(x, fs, iaf)
    out = PhaseEstimator(fs, (iaf - 2, iaf + 2)).update(x)
    idx = np.arange(int(2 * fs), x.size - int(2 * fs))
    assert np.isfinite(out.phase_rad[idx]).all(), "estimator must be calibrated after 2 s"
    err = np.angle(np.exp(1j * (out.phase_rad[idx] - ph[idx])))
    top = amp[idx] >= np.median(amp[idx])
    sd_all, mean_all = circ_stats_deg(err)
    sd_top, mean_top = circ_stats_deg(err[top])
    assert sd_all <= 0.85 * ref_all, f"{channel}: circular SD {sd_all:.1f} deg (all)"
    assert sd_top <= 0.85 * ref_top, f"{channel}: circular SD {sd_top:.1f} deg (top 50 %)"
    assert abs(mean_all) <= 5.0 and abs(mean_top) <= 5.0, (mean_all, mean_top)


def _score(x, fs, iaf, phase):
    ph, amp = true_phase(x, fs, iaf)
    idx = np.arange(int(2 * fs), x.size - int(2 * fs))
    err = np.angle(np.exp(1j * (phase[idx] - ph[idx])))
    ok = np.isfinite(err)
    top = amp[idx] >= np.median(amp[idx])
    return circ_stats_deg(err[ok]), circ_stats_deg(err[ok & top])


@pytest.mark.parametrize("channel", ["C3", "O2", "Pz"])
def test_default_auto_iaf_beats_phastimate_on_real_eeg(eegmat, channel):
    """Issue #18: default settings, no band. C3 was 61.5 / 44.9 deg with +18 deg bias
    (locked to 11.7 Hz); measured now 46.4 / 28.4 (C3), 24.2 / 11.2 (O2), 32.4 / 16.3 (Pz)."""
    fs, data, labels = eegmat
    iaf, ref_all, ref_top = REFERENCE[channel]
    x = hjorth(data, labels, channel)
    (sd_all, mean_all), (sd_top, mean_top) = _score(x, fs, iaf, causal_phase(x, fs))
    assert sd_all <= 0.85 * ref_all, f"{channel}: circular SD {sd_all:.1f} deg (all)"
    assert sd_top <= 0.85 * ref_top, f"{channel}: circular SD {sd_top:.1f} deg (top 50 %)"
    assert abs(mean_all) <= 5.0 and abs(mean_top) <= 5.0, (mean_all, mean_top)


def test_band_from_calibration_as_good_as_the_readme_band(eegmat):
    """The calibration's band (first 2 min) gives the README-band accuracy within 1 deg."""
    from stimloop.dsp.calibration import calibrate

    fs, data, labels = eegmat
    for channel, (iaf, _, _) in REFERENCE.items():
        x = hjorth(data, labels, channel)
        band = calibrate(x[: int(120 * fs)], fs).band_hz
        (sd_cal, m_cal), _ = _score(x, fs, iaf, causal_phase(x, fs, band))
        (sd_ref, _), _ = _score(x, fs, iaf, causal_phase(x, fs, (iaf - 2, iaf + 2)))
        assert sd_cal <= sd_ref + 1.0 and abs(m_cal) <= 5.0, (channel, sd_cal, sd_ref, m_cal)


def test_low_alpha_confidence_markedly_lower(eegmat, shared_data):
    fs, data, labels = eegmat
    rest = PhaseEstimator(fs).update(hjorth(data, labels, "O2"))
    raw = mne.io.read_raw_edf(
        shared_data / "eeg" / "eegmmidb_s001r01_eyes_open.edf", preload=True, verbose=False
    )
    eo = PhaseEstimator(raw.info["sfreq"]).update(
        hjorth(raw.get_data().T * 1e6, raw.ch_names, "O2")
    )
    c_rest = rest.confidence[np.isfinite(rest.phase_rad)]
    c_eo = eo.confidence[np.isfinite(eo.phase_rad)]
    # Measured: 0.76 (eegmat O2) vs 0.14 (eyes-open O2).
    assert np.mean(c_eo) < 0.5 * np.mean(c_rest), (np.mean(c_eo), np.mean(c_rest))
    assert np.mean(c_eo > 0.5) < 0.1 < 0.5 < np.mean(c_rest > 0.5)


def test_chunked_equals_whole_random_sizes(eegmat):
    fs, data, labels = eegmat
    x = hjorth(data, labels, "C3")[: int(30 * fs)]
    whole = PhaseEstimator(fs).update(x)
    assert np.array_equal(whole.phase_rad, causal_phase(x, fs), equal_nan=True)
    rng = np.random.default_rng(7)
    est = PhaseEstimator(fs)
    parts = []
    i = 0
    while i < x.size:
        n = int(rng.integers(1, 1001))
        parts.append(est.update(x[i : i + n]))
        i += n
    for k, name in enumerate(("phase_rad", "amplitude", "confidence")):
        chunked = np.concatenate([p[k] for p in parts])
        assert np.array_equal(chunked, whole[k], equal_nan=True), name


def test_chunk_size_one_equals_whole(eegmat):
    fs, data, labels = eegmat
    x = hjorth(data, labels, "Pz")[: int(6 * fs)]
    whole = causal_phase(x, fs, (8.5, 12.5))
    est = PhaseEstimator(fs, (8.5, 12.5))
    one = np.concatenate([est.update(x[i : i + 1]).phase_rad for i in range(x.size)])
    assert np.array_equal(one, whole, equal_nan=True)


def test_causal_future_never_changes_past(eegmat):
    fs, data, labels = eegmat
    x = hjorth(data, labels, "O2")[: int(20 * fs)]
    t = int(12.3 * fs)
    base = causal_phase(x, fs)
    y = x.copy()
    y[t + 1 :] = np.random.default_rng(0).standard_normal(y.size - t - 1) * 100.0
    changed = causal_phase(y, fs)
    assert np.array_equal(base[: t + 1], changed[: t + 1], equal_nan=True)
    assert not np.allclose(base[t + 1 :], changed[t + 1 :])


def test_nan_until_calibrated_and_nan_input_flagged(eegmat):
    fs, data, labels = eegmat
    x = hjorth(data, labels, "O2")[: int(10 * fs)].copy()
    est = PhaseEstimator(fs, calib_s=2.0)
    out = est.update(x[: int(2 * fs)])
    assert np.isnan(out.phase_rad).all() and (out.confidence == 0).all()
    x[int(5 * fs)] = np.nan
    out = est.update(x[int(2 * fs) :])
    ph = out.phase_rad
    k = int(5 * fs) - int(2 * fs)
    assert np.isfinite(ph[:k]).all()
    # NaN in → NaN out for the whole FIR window after it, then valid again.
    assert np.isnan(ph[k : k + est.n_taps]).all()
    assert np.isfinite(ph[k + est.n_taps :]).all()


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="fs must be"):
        PhaseEstimator(30.0)
    with pytest.raises(ValueError, match="band must satisfy"):
        PhaseEstimator(500.0, (12.0, 8.0))
    est = PhaseEstimator(500.0)
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        est.update(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="timestamps"):
        est.update(np.zeros(10), timestamps=np.zeros(9))


def test_phase_convention_zero_at_peak():
    fs = 500.0
    t = np.arange(int(20 * fs)) / fs
    rng = np.random.default_rng(3)
    x = np.cos(2 * np.pi * 10.0 * t) * 10 + rng.standard_normal(t.size)
    ph = causal_phase(x, fs, (8.0, 12.0))
    s = slice(int(5 * fs), None)
    sd, mean = circ_stats_deg(ph[s] - 2 * np.pi * 10.0 * t[s])
    assert sd < 5.0 and abs(mean) < 3.0, (sd, mean)


def test_forecast_hits_target_phase(eegmat):
    """On real O2, forecasts 20-100 ms ahead land near the target phase."""
    fs, data, labels = eegmat
    x = hjorth(data, labels, "O2")
    ph, _ = true_phase(x, fs, 10.5)
    ts = 1000.0 + np.arange(x.size) / fs  # an arbitrary LSL clock offset
    est = PhaseEstimator(fs, (8.5, 12.5))
    step = int(0.01 * fs)
    hits = {0.0: [], np.pi: []}
    uncs = []
    for i in range(0, x.size - int(2 * fs), step):
        est.update(x[i : i + step], ts[i : i + step])
        if i < 5 * fs:
            continue
        for target in hits:
            t_hit, unc = est.next_target_time(target, min_lead_s=0.02)
            if np.isfinite(t_hit) and t_hit - ts[i + step - 1] <= 0.1:
                j = (t_hit - 1000.0) * fs
                j0 = int(np.floor(j))
                a = np.interp(j, [j0, j0 + 1], np.unwrap(ph[j0 : j0 + 2]))
                hits[target].append(a - target)
                uncs.append(unc)
    for target, errs in hits.items():
        sd, mean = circ_stats_deg(np.array(errs))
        assert len(errs) > 1000
        assert sd < 45.0 and abs(mean) < 10.0, (target, sd, mean)
    assert 0.0 < np.median(uncs) < 0.05


@pytest.mark.parametrize("iaf", [8.0, 10.0, 13.0])
def test_simulated_known_phase_across_iaf_and_snr(iaf):
    from stimloop.devices.sim.eeg import EEGGenerator

    sds = []
    for snr in (-5.0, 0.0, 10.0):
        gen = EEGGenerator(
            fs=500.0, n_channels=19, iaf_hz=iaf, target="C3", seed=1, alpha_snr_db=snr
        )
        eeg, truth = gen.generate(500 * 40)
        x = hjorth(eeg, gen.labels, "C3")
        out = PhaseEstimator(500.0).update(x)  # IAF tracked causally
        s = slice(500 * 10, None)
        sd, mean = circ_stats_deg(out.phase_rad[s] - truth[s, 0])
        assert abs(mean) < 5.0, (snr, mean)
        sds.append(sd)
    # Error falls with SNR; measured ~35-41 deg at -5 dB, ~10-12 deg at 10 dB.
    assert sds[0] > sds[1] > sds[2], sds
    assert sds[2] < 15.0 and sds[0] < 50.0, sds


def test_flat_or_missing_input_never_crashes():
    fs = 500.0
    for x in (np.zeros(int(6 * fs)), np.full(int(6 * fs), 3.0), np.full(int(6 * fs), np.nan)):
        est = PhaseEstimator(fs)
        out = est.update(x)
        assert np.isnan(out.phase_rad).all() and (out.confidence == 0).all()
        assert est.next_target_time(0.0) == (pytest.approx(np.nan, nan_ok=True), np.inf)
