"""The simulators' ground truth is what the generated signals actually contain."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, hilbert, sosfiltfilt, welch

from stimloop.devices.sim.ecg import ECGGenerator
from stimloop.devices.sim.eda import EDAGenerator
from stimloop.devices.sim.eeg import EEGGenerator


def _in_chunks(gen, total: int, seed: int):
    rng = np.random.default_rng(seed)
    outs, n = [], 0
    while n < total:
        k = int(min(rng.integers(1, 700), total - n))
        outs.append(gen.generate(k))
        n += k
    return outs


@pytest.mark.parametrize("hr", [40.0, 70.0, 180.0], ids=lambda h: f"{h:.0f}bpm")
def test_ecg_rpeaks_are_r_wave_maxima_at_the_set_rate(hr):
    fs = 500.0
    ecg, peaks = ECGGenerator(fs, hr, seed=3).generate(int(60 * fs))
    assert abs(60.0 * fs / np.diff(peaks).mean() - hr) < 0.05 * hr
    half = int(0.03 * fs)
    for p in peaks[1:-1]:
        assert abs(np.argmax(ecg[p - half : p + half]) - half) <= 1


def test_ecg_is_deterministic_and_chunk_independent():
    whole, peaks = ECGGenerator(360.0, 75.0, seed=5, snr_db=15).generate(36000)
    parts = _in_chunks(ECGGenerator(360.0, 75.0, seed=5, snr_db=15), 36000, 1)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), peaks)


def test_ecg_heart_rate_follows_a_new_target():
    gen = ECGGenerator(500.0, 60.0, seed=1, rsa_bpm=0.0, hrv_sd_ms=0.0)
    gen.generate(5000)
    gen.set_heart_rate(120.0)
    _, peaks = gen.generate(15000)
    late = peaks[peaks > 5000 + 10 * 500]
    assert 60.0 * 500 / np.diff(late).mean() == pytest.approx(120.0, rel=0.03)
    with pytest.raises(ValueError, match=r"30\.\.220 bpm"):
        gen.set_heart_rate(400.0)


def test_ecg_snr_is_as_requested():
    clean, _ = ECGGenerator(500.0, 70.0, seed=2).generate(30000)
    noisy, _ = ECGGenerator(500.0, 70.0, seed=2, snr_db=10.0).generate(30000)
    snr = 10 * np.log10(np.var(clean) / np.var(noisy - clean))
    assert snr == pytest.approx(10.0, abs=1.0)


def test_eda_truth_matches_the_signal_and_events_evoke_scrs():
    fs = 50.0
    gen = EDAGenerator(fs, seed=4, spontaneous_per_min=0.0, noise_us=0.0)
    gen.generate(int(5 * fs))
    event = gen.trigger_event()
    eda, scrs = gen.generate(int(30 * fs))
    assert len(scrs) == 1 and scrs["evoked"][0]
    s = scrs[0]
    assert 1.0 <= (s["onset"] - event) / fs <= 3.0
    x = eda[s["onset"] - int(5 * fs) - 1 :]
    rise = x[s["peak"] - s["onset"] + int(5 * fs) + 1] - x[int(5 * fs)]
    tonic_change = abs(eda[0] - eda[int(5 * fs)])  # slow drift over 5 s, small
    assert rise == pytest.approx(s["amplitude"], abs=0.02 * s["amplitude"] + tonic_change)
    assert 0.5 <= (s["peak"] - s["onset"]) / fs <= 5.0


def test_eda_is_chunk_independent_and_plausible():
    whole, scrs = EDAGenerator(100.0, seed=9).generate(60000)
    parts = _in_chunks(EDAGenerator(100.0, seed=9), 60000, 2)
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), whole, atol=1e-12)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), scrs)
    assert 0.5 < whole.min() and whole.max() < 100.0
    assert 10 <= len(scrs) <= 40  # 2/min over 10 min
    assert (scrs["amplitude"] >= 0.02).all()


@pytest.mark.parametrize("iaf", [8.0, 10.5, 13.0], ids=lambda f: f"{f}Hz")
def test_eeg_alpha_peak_and_known_phase(iaf):
    fs = 500.0
    gen = EEGGenerator(fs, 32, iaf_hz=iaf, target="O2", seed=1, alpha_snr_db=10.0)
    eeg, truth = gen.generate(int(60 * fs))
    o2 = eeg[:, gen.labels.index("O2")]
    f, p = welch(o2, fs, nperseg=int(4 * fs))
    band = (f > 6) & (f < 16)
    assert abs(f[band][np.argmax(p[band])] - iaf) <= 0.5
    # The truth phase is the phase of the band-limited signal at the target.
    sos = butter(4, [iaf - 2, iaf + 2], "bandpass", fs=fs, output="sos")
    est = np.angle(hilbert(sosfiltfilt(sos, o2)))
    err = np.angle(np.exp(1j * (est - truth[:, 0])))[int(2 * fs) : -int(2 * fs)]
    strong = truth[int(2 * fs) : -int(2 * fs), 1] > np.median(truth[:, 1])
    assert np.degrees(np.sqrt(-2 * np.log(np.abs(np.mean(np.exp(1j * err[strong])))))) < 25


def test_eeg_alpha_is_focal_and_artifacts_are_optional():
    gen = EEGGenerator(250.0, 64, target="C3", seed=2, alpha_snr_db=10.0)
    assert gen.weights[gen.labels.index("C3")] == 1.0
    assert gen.weights[gen.labels.index("O2")] < 0.01
    noisy = EEGGenerator(250.0, 64, seed=2, blinks_per_min=30, line_noise_uv=20).generate(15000)[0]
    assert np.abs(noisy[:, gen.labels.index("Fp1")]).max() > 100.0
    with pytest.raises(ValueError, match="not among"):
        EEGGenerator(250.0, 4, target="O2")
