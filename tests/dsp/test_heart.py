"""Acceptance tests of stimloop.dsp.heart on MIT-BIH record 100 and the ECG simulator."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import wfdb
from scipy.signal import butter, resample_poly, sosfilt

from stimloop.dsp.heart import (
    FLAG_IBI_JUMP,
    FLAG_IBI_RANGE,
    FLAG_NO_BEAT,
    FLAG_NO_IBI,
    FLAG_NOISY,
    FLAG_SIGNAL_BAD,
    HeartMonitor,
    HeartRate,
    RPeakDetector,
    SignalError,
    detect_rpeaks,
    hrv_rmssd_sdnn,
    resample_hr,
)

FS_MITBIH = 360.0
# Beat annotation codes of the MIT-BIH Arrhythmia Database (PhysioNet "ecgpuwave/annotation
# codes"); everything else ('+' rhythm change, '~' noise, '|' artefact, ...) is not a beat.
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


@functools.cache
def _load_mitbih(base: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rec = wfdb.rdrecord(base)
    ann = wfdb.rdann(base, "atr")
    keep = np.array([s in BEAT_SYMBOLS for s in ann.symbol])
    samples = np.asarray(ann.sample).astype(np.int64)
    return rec.p_signal.astype(np.float64), samples[keep], samples, np.asarray(ann.symbol)


@pytest.fixture
def mitbih(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """MIT-BIH 100: (signal (n, 2) in mV, reference beat sample indices)."""
    x, beats, _, _ = _load_mitbih(str(shared_data / "mitbih" / "100"))
    return x, beats


@pytest.fixture
def mitbih_annotations(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """All annotations of MIT-BIH 100: (sample indices, symbols)."""
    _, _, samples, symbols = _load_mitbih(str(shared_data / "mitbih" / "100"))
    return samples, symbols


def match(det: np.ndarray, ref: np.ndarray, tol: int) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching within ``tol`` samples (nearest unused detection per reference).

    Returns the indices into ``ref`` and into ``det`` of the matched pairs.
    """
    used = np.zeros(det.size, bool)
    ri, di = [], []
    for k, r in enumerate(ref):
        lo = np.searchsorted(det, r - tol)
        hi = np.searchsorted(det, r + tol, side="right")
        free = [m for m in range(lo, hi) if not used[m]]
        if free:
            m = min(free, key=lambda m: abs(int(det[m]) - int(r)))
            used[m] = True
            ri.append(k)
            di.append(m)
    return np.asarray(ri, np.int64), np.asarray(di, np.int64)


def scores(det: np.ndarray, ref: np.ndarray, tol: int) -> dict[str, float]:
    ri, _ = match(det, ref, tol)
    tp = ri.size
    return {
        "tp": tp,
        "fn": ref.size - tp,
        "fp": det.size - tp,
        "se": tp / ref.size,
        "ppv": tp / det.size if det.size else 0.0,
        "f1": 2 * tp / (ref.size + det.size),
    }


def feed(det_or_mon, x: np.ndarray, sizes: np.ndarray | int):
    """Feed ``x`` in chunks; returns the list of per-chunk outputs and chunk end indices."""
    outs, ends = [], []
    i = 0
    k = 0
    while i < x.size:
        n = sizes if np.isscalar(sizes) else int(sizes[k % len(sizes)])
        outs.append(det_or_mon.update(x[i : i + n]))
        i += n
        ends.append(min(i, x.size))
        k += 1
    return outs, np.asarray(ends)


# --- accuracy on real data ----------------------------------------------------------


@pytest.mark.parametrize("lead", [0, 1], ids=["MLII", "V5"])
def test_mitbih_100_f1_causal(mitbih, lead):
    x, ref = mitbih
    peaks = detect_rpeaks(x[:, lead], FS_MITBIH)
    s = scores(peaks, ref, round(0.05 * FS_MITBIH))
    assert s["f1"] >= 0.999, s
    assert s["se"] >= 0.999 and s["ppv"] >= 0.999, s


@pytest.mark.parametrize("lead", [0, 1], ids=["MLII", "V5"])
def test_mitbih_peak_is_r_wave_maximum(mitbih, lead):
    """Indices sit on the R-wave maximum: close to the annotation, and a local maximum."""
    x, ref = mitbih
    sig = x[:, lead]
    peaks = detect_rpeaks(sig, FS_MITBIH)
    ri, di = match(peaks, ref, round(0.05 * FS_MITBIH))
    off = peaks[di] - ref[ri]
    # the cardiologists' fiducial marks sit on the R peak of MLII; V5 peaks ~1-3 samples earlier
    assert np.percentile(np.abs(off), 99) <= 4, np.percentile(off, [1, 50, 99])
    # a maximum of the raw ECG within +-10 ms (1% slack: baseline slope can shift it by 1)
    h = round(0.01 * FS_MITBIH)
    inner = peaks[(peaks > h) & (peaks < sig.size - h)]
    win = np.stack([sig[inner + j] for j in range(-h, h + 1)])
    at_max = np.abs(sig[inner] - win.max(axis=0)) <= 0.011  # within 1 ADC step (5 µV) x 2
    assert at_max.mean() >= 0.99


def test_mitbih_inverted_lead_gives_minima(mitbih):
    x, ref = mitbih
    det = RPeakDetector(FS_MITBIH)
    peaks = det.update(-x[:, 0])
    assert det.polarity == -1
    assert scores(peaks, ref, round(0.05 * FS_MITBIH))["f1"] >= 0.999
    upright = detect_rpeaks(x[:, 0], FS_MITBIH)
    ri, _di = match(peaks, upright, 2)
    assert ri.size >= 0.999 * upright.size


def test_mitbih_pvc_is_marked_at_its_dominant_deflection(mitbih, mitbih_annotations):
    """The single PVC of record 100 is negative in an upright lead: mark its minimum."""
    x, _ = mitbih
    samples, symbols = mitbih_annotations
    pvc = int(samples[symbols == "V"][0])
    for lead in (0, 1):
        peaks = detect_rpeaks(x[:, lead], FS_MITBIH)
        near = peaks[np.abs(peaks - pvc) <= round(0.05 * FS_MITBIH)]
        assert near.size == 1
        assert abs(int(near[0]) - pvc) <= 3


@pytest.mark.parametrize("fs_out", [100, 250, 1000, 2048])
def test_mitbih_resampled_rates(mitbih, fs_out):
    """Filters are designed per rate: the same record resampled to 100-2048 Hz."""
    x, ref = mitbih
    n = 120 * int(FS_MITBIH)  # 2 min keep this fast at 2048 Hz
    g = np.gcd(int(fs_out), 360)
    y = resample_poly(x[:n, 0], fs_out // g, 360 // g)
    ref_out = np.rint(ref[ref < n] * fs_out / FS_MITBIH).astype(np.int64)
    peaks = detect_rpeaks(y, fs_out)
    s = scores(peaks, ref_out, round(0.05 * fs_out))
    assert s["f1"] >= 0.995, s


def _nk_reference(x: np.ndarray, fs: float) -> np.ndarray:
    """NeuroKit2's offline default (clean + peaks) as a reference where no annotation exists."""
    import warnings

    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=int(fs)), sampling_rate=int(fs))
    return np.asarray(info["ECG_R_Peaks"], np.int64)


def test_systole_ecg_1000hz_agrees_with_offline_reference(shared_data):
    """25 min of a different amplifier at 1 kHz (no annotations): agree with NeuroKit2."""
    d = np.load(shared_data / "eda" / "systole_task1_1000hz.npz")
    x, fs = d["ecg"].astype(np.float64), float(d["fs"])
    up = HeartMonitor(fs).update(x)
    s = scores(up.peaks, _nk_reference(x, fs), round(0.05 * fs))
    assert s["f1"] >= 0.999, s
    assert np.mean(up.beats["flags"] == 0) >= 0.99
    assert 50.0 < np.nanmedian(up.beats["hr_bpm"]) < 100.0


def test_eegmat_ecg_channel_and_its_saturated_tail(shared_data):
    """The ECG channel of the EEGMAT recording (500 Hz) ends in a rail-saturated stretch:
    beats agree with NeuroKit2 before it; inside it there are no beats and no HR."""
    import mne

    raw = mne.io.read_raw_edf(
        shared_data / "eeg" / "eegmat_subject00_rest.edf", preload=True, verbose=False
    )
    x = raw.get_data(picks=["ECG ECG"])[0] * 1e3  # V -> mV
    fs = float(raw.info["sfreq"])
    up = HeartMonitor(fs).update(x)
    flat = np.flatnonzero(up.bad)
    assert flat.size and flat[0] > 0.9 * x.size  # only the tail is bad
    ref = _nk_reference(x, fs)
    good = round(0.05 * fs)
    s = scores(up.peaks, ref[ref < flat[0] - good], round(0.05 * fs))
    assert s["f1"] >= 0.995, s
    assert not np.any(up.peaks > flat[0])
    tail = up.series[up.series["index"] > flat[0]]
    assert tail.size and np.all(np.isnan(tail["hr_bpm"]))
    assert np.all(tail["flags"] & FLAG_SIGNAL_BAD)


# --- latency, causality and chunking ----------------------------------------------


@pytest.mark.parametrize("lead", [0, 1], ids=["MLII", "V5"])
def test_detection_delay_p95_10ms_chunks(mitbih, lead):
    x, ref = mitbih
    chunk = round(0.01 * FS_MITBIH)
    outs, ends = feed(RPeakDetector(FS_MITBIH), x[:, lead], chunk)
    peaks = np.concatenate(outs)
    reported_at = np.concatenate([np.full(o.size, e) for o, e in zip(outs, ends, strict=True)])
    ri, di = match(peaks, ref, round(0.05 * FS_MITBIH))
    delay_ms = (reported_at[di] - ref[ri]) / FS_MITBIH * 1000.0
    assert np.all(delay_ms > 0)
    assert np.percentile(delay_ms, 95) <= 100.0, np.percentile(delay_ms, [50, 95, 99])


def _with_artefacts(x: np.ndarray, fs: float) -> np.ndarray:
    y = x.copy()
    y[int(20 * fs) : int(23 * fs)] = np.nan  # dropout
    y[int(40 * fs) : int(44 * fs)] = y[int(40 * fs)]  # lead-off flatline
    y[int(60 * fs) : int(60.004 * fs)] = np.nan  # one-sample glitch
    return y


def test_chunking_random_sizes_identical(mitbih):
    x = _with_artefacts(mitbih[0][: int(90 * FS_MITBIH), 0], FS_MITBIH)
    whole = RPeakDetector(FS_MITBIH)
    p_whole = whole.update(x)
    c_whole, b_whole = whole.last_confirmed, whole.last_bad
    rng = np.random.default_rng(7)
    for trial in range(3):
        sizes = rng.integers(1, 1001, size=4000) if trial else np.array([1])
        det = RPeakDetector(FS_MITBIH)
        outs, _ = feed(det, x, sizes)
        assert np.array_equal(np.concatenate(outs), p_whole)
    # confirmation indices and quality codes too
    det = RPeakDetector(FS_MITBIH)
    sizes = rng.integers(1, 1001, size=4000)
    peaks, conf, bad = [], [], []
    i = 0
    for n in sizes:
        if i >= x.size:
            break
        peaks.append(det.update(x[i : i + n]))
        conf.append(det.last_confirmed)
        bad.append(det.last_bad)
        i += n
    assert np.array_equal(np.concatenate(conf), c_whole)
    assert np.array_equal(np.concatenate(bad), b_whole)
    assert np.array_equal(detect_rpeaks(x, FS_MITBIH), p_whole)


def test_heart_monitor_chunking_identical(mitbih):
    x = _with_artefacts(mitbih[0][: int(90 * FS_MITBIH), 1], FS_MITBIH)
    whole = HeartMonitor(FS_MITBIH).update(x)
    mon = HeartMonitor(FS_MITBIH)
    outs, _ = feed(mon, x, np.random.default_rng(3).integers(1, 1001, size=2000))
    beats = np.concatenate([o.beats for o in outs])
    series = np.concatenate([o.series for o in outs])
    assert beats.tobytes() == whole.beats.tobytes()
    assert series.tobytes() == whole.series.tobytes()


def test_causality_future_samples_never_change_the_past(mitbih):
    x = mitbih[0][: int(120 * FS_MITBIH), 0]
    det = RPeakDetector(FS_MITBIH)
    p_ref = det.update(x)
    c_ref = det.last_confirmed
    rng = np.random.default_rng(11)
    for t in rng.integers(int(5 * FS_MITBIH), x.size - 1000, size=6):
        y = x.copy()
        y[t + 1 :] = rng.normal(0, 2.0, y.size - t - 1)  # anything at all after t
        y[t + 1000 :: 97] = np.nan
        d2 = RPeakDetector(FS_MITBIH)
        p2 = d2.update(y)
        c2 = d2.last_confirmed
        assert np.array_equal(p2[c2 <= t], p_ref[c_ref <= t])
        assert np.array_equal(c2[c2 <= t], c_ref[c_ref <= t])


def test_causality_of_heart_rate_outputs(mitbih):
    """Beats and the 4 Hz series known at t are the same whatever follows t."""
    x = mitbih[0][: int(90 * FS_MITBIH), 1]
    ref = HeartMonitor(FS_MITBIH).update(x)
    rng = np.random.default_rng(12)
    for t in (int(20 * FS_MITBIH), int(47.3 * FS_MITBIH), int(71 * FS_MITBIH)):
        y = x.copy()
        y[t + 1 :] = np.where(rng.random(y.size - t - 1) < 0.1, np.nan, -3.0 * y[t + 1 :])
        up = HeartMonitor(FS_MITBIH).update(y)
        assert up.beats[up.beats["confirmed"] <= t].tobytes() == (
            ref.beats[ref.beats["confirmed"] <= t].tobytes()
        )
        assert up.series[up.series["index"] <= t].tobytes() == (
            ref.series[ref.series["index"] <= t].tobytes()
        )


# --- simulated ECG -------------------------------------------------------------------


def _sim(fs, hr, snr, seed=0, **kw):
    from stimloop.devices.sim.ecg import ECGGenerator

    gen = ECGGenerator(fs=fs, hr_bpm=hr, seed=seed, snr_db=snr, **kw)
    return gen.generate(int(60 * fs))


@pytest.mark.parametrize("snr", [None, 20.0, 10.0], ids=["clean", "20dB", "10dB"])
@pytest.mark.parametrize("hr", [40, 60, 90, 120, 150, 180])
def test_simulated_ecg_hr_and_snr(hr, snr):
    fs = 500.0
    x, truth = _sim(fs, hr, snr, seed=hr, baseline_wander_mv=0.2)
    mon = HeartMonitor(fs)
    up = mon.update(x)
    s = scores(up.peaks, truth, round(0.05 * fs))
    assert s["f1"] >= 0.995, s
    # beat-by-beat HR against the simulator's truth for the matched, unflagged beats
    true_hr = 60.0 * fs / np.diff(truth)
    ri, di = match(up.peaks, truth, round(0.05 * fs))
    ok = (ri > 0) & (up.beats["flags"][di] == 0)
    err = np.abs(up.beats["hr_bpm"][di][ok] - true_hr[ri[ok] - 1])
    assert np.median(err) < 0.02 * hr


@pytest.mark.parametrize(
    ("fs", "kw"),
    [
        (100.0, {"powerline_hz": 50.0}),
        (250.0, {"invert": True, "baseline_wander_mv": 0.5}),
        (1000.0, {"powerline_hz": 60.0, "invert": True}),
        (2048.0, {"baseline_wander_mv": 1.0, "powerline_hz": 50.0}),
    ],
    ids=[
        "100Hz-50Hz-mains",
        "250Hz-inverted-wander",
        "1000Hz-60Hz-inverted",
        "2048Hz-wander-mains",
    ],
)
def test_simulated_ecg_rates_and_artefacts(fs, kw):
    x, truth = _sim(fs, 75, 15.0, seed=int(fs), **kw)
    det = RPeakDetector(fs)
    peaks = det.update(x)
    assert scores(peaks, truth, round(0.05 * fs))["f1"] >= 0.995
    assert det.polarity == (-1 if kw.get("invert") else 1)
    ri, di = match(peaks, truth, round(0.05 * fs))
    assert np.percentile(np.abs(peaks[di] - truth[ri]), 95) <= max(2, round(0.006 * fs))


# --- bad input -----------------------------------------------------------------------


def _series_ok_after(series, idx):
    return series[series["index"] >= idx][0]


@pytest.mark.parametrize("kind", ["nan", "flatline", "saturation"])
def test_bad_input_invalidates_hr_then_recovers_within_3_beats(mitbih, kind):
    fs = FS_MITBIH
    x, ref = mitbih
    sig = x[: int(120 * fs), 0].copy()
    a, b = int(50 * fs), int(57.3 * fs)
    if kind == "nan":
        sig[a:b] = np.nan
    elif kind == "flatline":
        sig[a:b] = 0.0  # electrode off: amplifier reads a constant
    else:
        sig[a:b] += 8.0  # baseline jump drives the amplifier into its rail ...
        sig = np.clip(sig, -5.0, 5.0)  # ... where it reads its full-scale value
    mon = HeartMonitor(fs)
    outs, _ = feed(mon, sig, round(0.01 * fs))
    series = np.concatenate([o.series for o in outs])
    beats = np.concatenate([o.beats for o in outs])
    # no beats, and HR NaN + flagged, for the whole bad stretch (flat needs 100 ms to be seen)
    seen = a + (round(0.1 * fs) if kind != "nan" else 0)
    during = series[(series["index"] >= seen) & (series["index"] < b)]
    assert during.size > 20
    assert np.all(np.isnan(during["hr_bpm"]))
    assert np.all(during["flags"] & FLAG_SIGNAL_BAD)
    assert not np.any((beats["index"] > seen) & (beats["index"] < b))
    # valid again by the third true beat after the signal returns, and right
    after = ref[ref >= b]
    third = after[2]
    rec = series[(series["index"] >= third + round(0.1 * fs))][0]
    assert rec["flags"] == 0, rec
    true_hr = 60.0 * fs / (after[2] - after[1])
    assert abs(rec["hr_bpm"] - true_hr) < 0.05 * true_hr
    # the first interval after the gap never spans it
    first_after = beats[beats["index"] >= b][0]
    assert np.isnan(first_after["ibi_ms"]) and first_after["flags"] & FLAG_NO_IBI


@pytest.mark.parametrize("kind", ["nan", "flatline"])
@pytest.mark.parametrize(("fs", "hr"), [(100.0, 45.0), (2048.0, 170.0), (250.0, 170.0)])
def test_bad_input_recovery_on_simulator(fs, hr, kind):
    x, truth = _sim(fs, hr, 15.0, seed=3, baseline_wander_mv=0.3)
    x = x[: int(40 * fs)]
    a, b = int(15 * fs), int(21.37 * fs)
    x[a:b] = np.nan if kind == "nan" else 0.0
    outs, _ = feed(HeartMonitor(fs), x, max(1, round(0.01 * fs)))
    series = np.concatenate([o.series for o in outs])
    seen = a + (0 if kind == "nan" else round(0.1 * fs))
    during = series[(series["index"] >= seen) & (series["index"] < b)]
    assert np.all(np.isnan(during["hr_bpm"])) and np.all(during["flags"] & FLAG_SIGNAL_BAD)
    after = truth[truth >= b]
    rec = series[series["index"] >= after[2] + round(0.1 * fs)][0]
    assert rec["flags"] == 0, rec
    assert abs(rec["hr_bpm"] - 60.0 * fs / (after[2] - after[1])) < 0.05 * hr


def test_clipped_r_tops_are_still_detected(mitbih):
    x, ref = mitbih
    sig = np.clip(x[:, 0], -1.0, 0.7)  # R waves (~1.2 mV above baseline) lose their tops
    peaks = detect_rpeaks(sig, FS_MITBIH)
    assert scores(peaks, ref, round(0.05 * FS_MITBIH))["f1"] >= 0.998


def _noise(kind: str, n: int, fs: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, n)
    if kind == "brown":  # drifting electrode: integrated noise, 1 s mean removed
        x = np.cumsum(x) / np.sqrt(fs)
        x -= np.convolve(x, np.ones(int(fs)) / fs, "same")
    elif kind == "emg":  # muscle noise overlapping the QRS band
        x = sosfilt(butter(2, [5.0, 40.0], "bandpass", fs=fs, output="sos"), x)
    return x


@pytest.mark.parametrize("kind", ["white", "brown", "emg"])
@pytest.mark.parametrize("fs", [100.0, 250.0, 1000.0])
def test_noise_only_never_gives_a_heart_rate(kind, fs):
    """Detections in noise are not beats: HR NaN with FLAG_NOISY, never a wrong number."""
    up = HeartMonitor(fs).update(_noise(kind, int(60 * fs), fs, seed=int(fs)))
    assert up.peaks.size > 60  # the detector does fire on noise ...
    late = up.series[up.series["index"] > 5 * fs]
    assert np.all(np.isnan(late["hr_bpm"]))  # ... but no HR comes out of it
    assert np.all(late["flags"] & (FLAG_NOISY | FLAG_NO_BEAT | FLAG_NO_IBI))


def test_noise_burst_in_real_ecg(mitbih):
    fs = FS_MITBIH
    x, ref = mitbih
    sig = x[: int(150 * fs), 0].copy()
    a, b = int(60 * fs), int(90 * fs)
    sig[a:b] = _noise("emg", b - a, fs, seed=1)  # electrode replaced by muscle noise
    mon = HeartMonitor(fs)
    outs, _ = feed(mon, sig, round(0.01 * fs))
    series = np.concatenate([o.series for o in outs])
    during = series[(series["index"] > a + 5 * fs) & (series["index"] < b)]
    assert np.mean(np.isnan(during["hr_bpm"])) >= 0.95
    assert np.all(np.isnan(during["hr_bpm"]) | (during["flags"] != 0))
    before = series[(series["index"] > 10 * fs) & (series["index"] < a)]
    assert np.all(before["flags"] == 0)
    after = series[series["index"] > b + 10 * fs]
    assert np.all(after["flags"] == 0)
    true_hr = 60.0 * fs / np.diff(ref)
    k = np.searchsorted(ref, after["index"], side="right") - 1
    assert np.median(np.abs(after["hr_bpm"] - true_hr[k - 1])) < 1.0


# --- heart rate, flags and HRV --------------------------------------------------------


def test_implausible_ibis_are_flagged_and_kept():
    fs = 250.0
    r = np.cumsum([250] * 8 + [125] + [250] * 4 + [700] + [250] * 4)  # 1 s rhythm
    hr = HeartRate(fs)
    beats, _ = hr.update(r, r + 10, np.zeros(int(r[-1] + 100), np.uint8))
    early = beats[8]
    assert early["flags"] & FLAG_IBI_JUMP and not early["flags"] & FLAG_IBI_RANGE
    assert early["ibi_ms"] == pytest.approx(500.0) and early["hr_bpm"] == pytest.approx(120.0)
    long_ = beats[13]
    assert long_["flags"] & FLAG_IBI_RANGE and long_["ibi_ms"] == pytest.approx(2800.0)
    assert beats[0]["flags"] & FLAG_NO_IBI and np.isnan(beats[0]["hr_bpm"])
    assert np.all(beats["flags"][2:8] == 0)
    assert np.all(beats["hr_bpm"][2:8] == pytest.approx(60.0))


def test_resampled_series_is_a_causal_hold_with_flags():
    fs = 200.0
    r = np.arange(1, 31) * 200  # 60 bpm, beats at 1, 2, ... 30 s
    conf = r + 14  # confirmed 70 ms later
    hr = HeartRate(fs, rate_hz=4.0)
    n = int(32 * fs)
    bad = np.zeros(n, np.uint8)
    beats, series = hr.update(r, conf, bad)
    assert series.size == 32 * 4
    assert np.array_equal(series["index"], np.arange(128) * 50)
    # each sample uses the last beat confirmed at or before it
    for row in series:
        known = beats[beats["confirmed"] <= row["index"]]
        if known.size >= 2 and row["index"] - known[-1]["index"] <= 2.5 * fs:
            assert row["flags"] == 0 and row["hr_bpm"] == pytest.approx(60.0)
        else:
            assert np.isnan(row["hr_bpm"]) and row["flags"] & (FLAG_NO_IBI | FLAG_NO_BEAT)


def test_hrv_matches_definitions():
    rng = np.random.default_rng(5)
    ibi = 800 + rng.normal(0, 40, 50)
    rmssd, sdnn = hrv_rmssd_sdnn(ibi)
    assert rmssd == pytest.approx(np.sqrt(np.mean(np.diff(ibi) ** 2)))
    assert sdnn == pytest.approx(np.std(ibi, ddof=1))
    valid = np.ones(50, bool)
    valid[20] = False
    rmssd2, sdnn2 = hrv_rmssd_sdnn(ibi, valid)
    d = np.diff(ibi)
    keep = np.ones(49, bool)
    keep[[19, 20]] = False
    assert rmssd2 == pytest.approx(np.sqrt(np.mean(d[keep] ** 2)))
    assert sdnn2 == pytest.approx(np.std(np.delete(ibi, 20), ddof=1))
    assert np.isnan(hrv_rmssd_sdnn(ibi[:2])[1])


def test_streaming_hrv_matches_truth_on_simulated_ecg():
    fs = 500.0
    x, truth = _sim(fs, 70, 20.0, seed=3)
    mon = HeartMonitor(fs, hrv_window_s=30.0)
    up = mon.update(x)
    last = up.beats[-1]
    win = truth[truth > last["index"] - 30 * fs]
    win = truth[
        max(0, np.searchsorted(truth, win[0]) - 1) : np.searchsorted(truth, last["index"]) + 1
    ]
    true_ibi = np.diff(win) * 1000.0 / fs
    rmssd, sdnn = hrv_rmssd_sdnn(true_ibi)
    assert last["rmssd_ms"] == pytest.approx(rmssd, rel=0.1)
    assert last["sdnn_ms"] == pytest.approx(sdnn, rel=0.1)


def test_resample_hr_methods():
    bi = np.array([100, 300, 500])
    hr = np.array([60.0, 70.0, 80.0])
    grid, prev = resample_hr(bi, hr, fs=100.0, rate_hz=10.0, method="previous", n_samples=600)
    assert np.array_equal(grid, np.arange(60) * 10)
    assert np.isnan(prev[grid < 100]).all() and (prev[(grid >= 300) & (grid < 500)] == 70).all()
    _, lin = resample_hr(bi, hr, fs=100.0, rate_hz=10.0, method="linear", n_samples=600)
    assert lin[grid == 200][0] == pytest.approx(65.0)
    assert np.isnan(lin[grid > 500]).all()


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("fs", [50.0, 4096.0, "fast"])
def test_bad_rate_is_a_clear_error(fs):
    with pytest.raises(SignalError, match="fs"):
        RPeakDetector(fs)


def test_bad_chunk_is_a_clear_error():
    det = RPeakDetector(250.0)
    with pytest.raises(SignalError, match=r"shape \(10, 2\)"):
        det.update(np.zeros((10, 2)))
    with pytest.raises(SignalError, match="dtype"):
        det.update(np.array(["a", "b"]))
    assert det.update(np.zeros((0,))).size == 0
    assert det.update(np.zeros((10, 1))).size == 0  # one column is accepted


def test_all_nan_and_inf_never_crash():
    det = RPeakDetector(500.0)
    assert det.update(np.full(5000, np.nan)).size == 0
    assert np.all(det.last_bad == 1)
    det.update(np.full(100, np.inf))
    assert np.all(det.last_bad == 1)
