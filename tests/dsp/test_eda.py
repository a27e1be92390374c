"""Causal SCR detection and SCL/phasic split: accuracy, causality, chunking, bad input.

Simulated EDA comes from ``stimloop.devices.sim.eda.EDAGenerator`` (bi-exponential SCRs,
spontaneous and evoked, overlapping) and from the independently written
``stimloop.devices.sim.wearable_eda`` (canonical SCRF and Bateman shapes, bursts, pink
noise, motion steps and spikes, wearable quantisation, 4 Hz to 1 kHz). The real recording
is the systole picture task (72 events), compared with NeuroKit2 on the same events.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from stimloop.devices.sim import wearable_eda as W
from stimloop.devices.sim.eda import EDAGenerator, simulate_labelled_eda
from stimloop.dsp.eda import (
    FLAG_INVALID,
    FLAG_MOTION,
    FLAG_NAN,
    FLAG_OFF,
    FLAG_RANGE,
    SCR_DTYPE,
    EDAInputError,
    EDAParams,
    EventRelatedSCR,
    SCRDetector,
    decompose_eda,
    detect_scr,
    event_related_scr,
    scr_rate,
    to_microsiemens,
)
from stimloop.dsp.eda_score import score_artifacts, score_scrs


def score(scrs: np.ndarray, truth: np.ndarray, fs: float):
    return score_scrs(
        scrs["onset"] / fs, scrs["amplitude"], truth["onset"] / fs, truth["amplitude"]
    )


@pytest.fixture(scope="module")
def sim100():
    return simulate_labelled_eda(100.0, 20.0, seed=11)


# ---------------------------------------------------------------- accuracy (simulated)


def test_simulated_accuracy_meets_acceptance():
    """F1 ≥ 0.95 (SCRs ≥ 0.02 µS, onset within 0.5 s), median amplitude error ≤ 10 %."""
    fs = 100.0
    on_d, amp_d, on_t, amp_t = [], [], [], []
    offset = 0.0
    for seed in (1, 2, 3):
        x, truth, _ = simulate_labelled_eda(fs, 20.0, seed)
        scrs = detect_scr(x, fs)
        on_d.append(scrs["onset"] / fs + offset)
        amp_d.append(scrs["amplitude"])
        on_t.append(truth["onset"] / fs + offset)
        amp_t.append(truth["amplitude"])
        offset += 10_000.0
    s = score_scrs(
        np.concatenate(on_d), np.concatenate(amp_d), np.concatenate(on_t), np.concatenate(amp_t)
    )
    print(f"\nsimulated, 3 x 20 min at 100 Hz: {s.as_dict()}")
    assert s.n_truth > 300
    assert s.f1 >= 0.95
    assert s.amp_err_median <= 0.10
    assert abs(s.onset_bias_s) < 0.25


@pytest.mark.parametrize("fs", [4.0, 2048.0], ids=["4Hz", "2048Hz"])
def test_sampling_rate_extremes(fs):
    x, truth, _ = simulate_labelled_eda(fs, 8.0, seed=5)
    s = score(detect_scr(x, fs), truth, fs)
    print(f"\n{fs:g} Hz: {s.as_dict()}")
    # At 4 Hz one sample is 0.25 s, half the onset tolerance, and the white sensor noise
    # fills the whole 0-2 Hz band the SCRs live in: allow a lower F1 (measured 0.92).
    assert s.f1 >= (0.85 if fs < 10 else 0.93)
    assert s.amp_err_median <= 0.15


def _bateman(t, onset, amp, tr=0.75, td=3.0):
    """A Bateman SCR (rise tr, decay td, s) of peak ``amp`` µS starting at ``onset`` s."""
    tp = tr * td / (td - tr) * np.log(td / tr)
    norm = np.exp(-tp / td) - np.exp(-tp / tr)
    d = np.clip(t - onset, 0, None)
    return amp / norm * (np.exp(-d / td) - np.exp(-d / tr))


def test_overlapping_scrs_are_separated():
    """Two SCRs 4 s apart, the second on the first one's recovery limb: two SCRs."""
    fs = 50.0
    t = np.arange(int(30 * fs)) / fs

    def scr(onset, amp, tr=0.75, td=3.0):
        return _bateman(t, onset, amp, tr, td)

    x = 4.0 + scr(10.0, 0.5) + scr(14.0, 0.3)
    scrs = detect_scr(x, fs)
    assert len(scrs) == 2, scrs
    assert np.allclose(scrs["onset"] / fs, [10.0, 14.0], atol=0.3)
    # Trough-to-peak alone would give ~0.2 µS for the second; the projected recovery
    # limb recovers most of its true 0.3 µS.
    assert scrs["amplitude"][0] == pytest.approx(0.5, rel=0.05)
    assert scrs["amplitude"][1] == pytest.approx(0.3, rel=0.12)
    trough = detect_scr(x, fs, params=_params(baseline="trough"))
    assert trough["amplitude"][1] < scrs["amplitude"][1]
    # Half-recovery of the first is not seen (the second starts before); the second's is.
    assert np.isnan(scrs["half_recovery"][0])
    assert 1.0 < scrs["half_recovery"][1] < 5.0


def test_scr_hidden_in_a_recovery_limb_is_found_by_the_knee_rule():
    """A 0.1 µS SCR 3.5 s after a 1 µS one: the signal never turns upward (no trough-to-
    peak rise), but the slope rebounds faster than any recovery; the knee rule finds it."""
    fs = 50.0
    t = np.arange(int(30 * fs)) / fs

    def scr(onset, amp, tr=0.75, td=3.0):
        return _bateman(t, onset, amp, tr, td)

    x = 4.0 + scr(10.0, 1.0) + scr(13.5, 0.1)
    with_knee = detect_scr(x, fs)
    without = detect_scr(x, fs, params=_params(knee_fraction=0.0))
    assert len(without) == 1
    assert len(with_knee) == 2
    assert with_knee["onset"][1] / fs == pytest.approx(13.5, abs=0.3)
    # Measured from the extrapolated recovery; the composite hides part of it.
    assert 0.05 < with_knee["amplitude"][1] < 0.12


@pytest.mark.parametrize("fs", [4.0, 100.0])
def test_scr_on_a_recovery_limb_starts_against_the_trend_not_the_scl_slope(fs):
    """A 0.1 µS SCR (Bateman, τ1 = 1.4 s) 4 s after a 0.5 µS one, knee rule off: the plain
    start test finds it. After an SCR the SCL relaxes up toward the recovery limb; its
    slope, taken for a tonic drift, used to raise the start threshold there."""
    t = np.arange(int(30 * fs)) / fs
    x = 4.0 + _bateman(t, 10.0, 0.5) + _bateman(t, 14.0, 0.1, tr=1.4)
    scrs = detect_scr(x, fs, params=_params(knee_fraction=0.0))
    assert len(scrs) == 2, scrs
    assert scrs["onset"][1] / fs == pytest.approx(14.0, abs=0.5)


def _gaussian_driven_scr(t, onset, amp, sigma, tr=0.75, td=3.0):
    """An SCR whose sudomotor burst is a Gaussian of width ``sigma`` s (the SCRF idea of
    Bach et al. 2010) through a Bateman response; ``amp`` µS at its peak. Returns the
    signal and its onset (where it reaches 2 % of its amplitude, as the scorer does)."""
    dt = t[1] - t[0]
    burst = np.exp(-0.5 * ((t - onset - 2.0 * sigma) / sigma) ** 2)
    y = np.convolve(burst, _bateman(t, 0.0, 1.0, tr, td))[: len(t)] * dt
    y *= amp / y.max()
    return y, float(t[np.argmax(y >= 0.02 * amp)])


@pytest.mark.parametrize("fs", [4.0, 100.0])
def test_gradual_scr_on_early_recovery_is_kept_after_the_knee_turns_up(fs):
    """A gradual 0.2 µS SCR (Gaussian burst, σ = 0.7 s) starting 0.6 s after the peak of a
    0.6 µS one: the knee rule starts a rise on the recovery limb, which then turns upward.
    Its peak must be the highest value since then, not the (higher) value where the knee
    fired, which confirmed and rejected the rise while the SCR was still rising."""
    t = np.arange(int(30 * fs)) / fs
    second, onset2 = _gaussian_driven_scr(t, 12.0, 0.2, 0.7)
    x = 4.0 + _bateman(t, 10.0, 0.6) + second
    scrs = detect_scr(x, fs)
    assert len(scrs) == 2, scrs
    assert scrs["onset"][1] / fs == pytest.approx(onset2, abs=0.5)


@pytest.mark.parametrize("fs", [50.0, 1000.0], ids=["50Hz", "1kHz"])
def test_scr_at_the_peak_of_a_larger_one_is_measured_from_its_modelled_recovery(fs):
    """A 0.25 µS SCR starting 0.5-1 s after the peak of a 0.5 µS one: the slope there shows
    little of the recovery still to come, so plain projection from it leaves the second
    SCR 30-50 % short. The recovery template (a fixed Bateman shape scaled by the first
    SCR's amplitude) measures it within 12 %, whatever the second one's own shape, and
    also when the first one recovers more slowly than the template; the rise counts as an
    SCR by what is seen, so without the template the same SCRs are found. Chunked
    streaming gives the same SCRs."""
    t = np.arange(int(40 * fs)) / fs

    def scr(onset, amp, tr=0.75, td=3.0):
        return _bateman(t, onset, amp, tr, td)

    first_peak = 10.0 + 0.75 * 3.0 / 2.25 * np.log(4.0)
    for gap in (0.5, 1.0):
        for tr2, td2 in ((0.75, 3.0), (0.5, 5.0), (1.2, 2.0)):
            x = 4.0 + scr(10.0, 0.5) + scr(first_peak + gap, 0.25, tr2, td2)
            scrs = detect_scr(x, fs)
            plain = detect_scr(x, fs, params=_params(recovery_tau_s=(0.0, 0.0)))
            assert len(scrs) == len(plain) == 2, (gap, tr2, td2, scrs)
            np.testing.assert_array_equal(scrs["onset"], plain["onset"])
            assert scrs["onset"][1] / fs == pytest.approx(first_peak + gap, abs=0.3)
            assert scrs["amplitude"][0] == pytest.approx(0.5, rel=0.05)
            assert scrs["amplitude"][1] == pytest.approx(0.25, rel=0.12), (gap, tr2, td2)
            assert plain["amplitude"][1] < 0.8 * 0.25
    sizes = np.random.default_rng(5).integers(1, int(3 * fs), size=len(x))
    det = _stream(x, fs, sizes)[0]
    for name in SCR_DTYPE.names:
        np.testing.assert_array_equal(det.scrs[name], scrs[name])
    with pytest.raises(EDAInputError, match="recovery_tau_s"):
        detect_scr(x, fs, params=_params(recovery_tau_s=(3.0, 0.75)))
    with pytest.raises(EDAInputError, match="recovery_tau_s"):
        detect_scr(x, fs, params=_params(recovery_tau_s=(0.0, 3.0)))  # half disabled
    # A previous SCR that recovers more slowly than the template (tau2 6 or 10 s against
    # 3 s): the template is scaled to the fall seen by the onset, so the second SCR is not
    # inflated (unscaled, it would come out 20-35 % too large).
    for td1 in (6.0, 10.0):
        tp1 = 0.75 * td1 / (td1 - 0.75) * np.log(td1 / 0.75)
        for gap in (1.0, 1.5, 2.0):
            x = 4.0 + scr(10.0, 0.5, 0.75, td1) + scr(10.0 + tp1 + gap, 0.25)
            scrs = detect_scr(x, fs)
            assert len(scrs) == 2
            assert scrs["amplitude"][1] == pytest.approx(0.25, rel=0.12), (td1, gap)


def _params(**kw):
    return EDAParams(**kw)


def test_thresholds_adapt_to_sensor_noise():
    """With 5x the default white noise, the noise-scaled thresholds cut false SCRs.

    The remaining false ones are 0.01-0.02 µS noise bumps in the SCR band (measured: 12 vs
    68 in 15 min); a noisy sensor also needs a higher ``min_amplitude``.
    """
    fs = 100.0
    gen = EDAGenerator(fs=fs, seed=7, noise_us=0.01)
    x, truth = gen.generate(int(15 * 60 * fs))
    adaptive = score(detect_scr(x, fs), truth, fs)
    fixed = score(detect_scr(x, fs, params=_params(noise_k=0.0)), truth, fs)
    print(f"\nnoise 0.01 µS: adaptive {adaptive.as_dict()}\n  fixed {fixed.as_dict()}")
    assert adaptive.fp * 3 <= fixed.fp
    assert adaptive.tp >= fixed.tp - 1
    assert adaptive.f1 > fixed.f1
    high = score(detect_scr(x, fs, min_amplitude=0.02), truth, fs)
    print(f"  adaptive, min_amplitude 0.02 µS: {high.as_dict()}")
    assert high.f1 >= 0.85


def test_min_amplitude_is_configurable(sim100):
    x, _, _ = sim100
    low = detect_scr(x, 100.0, min_amplitude=0.01)
    high = detect_scr(x, 100.0, min_amplitude=0.1)
    assert low["amplitude"].min() >= 0.01
    assert high["amplitude"].min() >= 0.1
    assert len(high) < len(low)
    assert low.dtype == SCR_DTYPE
    assert np.all((low["rise_time"] >= 0.5) & (low["rise_time"] <= 5.0))


# ---------------------------------------------------------------- chunking and causality


def _stream(x: np.ndarray, fs: float, sizes: np.ndarray, unit: str = "uS"):
    det = SCRDetector(fs, unit=unit)
    parts, scl, ph, fl = [], [], [], []
    i = 0
    for k in sizes:
        if i >= len(x):
            break
        new = det.update(x[i : i + k])
        parts.append(new)
        scl.append(det.last_scl)
        ph.append(det.last_phasic)
        fl.append(det.last_flags)
        i += k
    assert i >= len(x)
    return det, np.concatenate(parts), np.concatenate(scl), np.concatenate(ph), np.concatenate(fl)


def _with_bad_segments(x: np.ndarray, fs: float) -> np.ndarray:
    x = x.copy()
    n = len(x)
    x[n // 5 : n // 5 + int(3 * fs)] = np.nan
    x[n // 2 : n // 2 + int(5 * fs)] = 0.01  # electrode off
    k = int(0.7 * n)
    x[k : k + int(0.05 * fs) + 1] += 1.5  # motion spike
    return x


@pytest.mark.parametrize("seed", [0, 1])
def test_random_chunks_equal_one_pass(sim100, seed):
    x, _, _ = sim100
    fs = 100.0
    x = _with_bad_segments(x[: int(8 * 60 * fs)], fs)
    whole = decompose_eda(x, fs, strict=False)
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 1001, size=len(x))
    det, new, scl, ph, fl = _stream(x, fs, sizes)
    assert len(whole.scrs) > 10
    for name in ("onset", "peak", "amplitude", "rise_time"):
        np.testing.assert_array_equal(new[name], whole.scrs[name])
    for name in SCR_DTYPE.names:
        np.testing.assert_array_equal(det.scrs[name], whole.scrs[name])
    np.testing.assert_array_equal(scl, whole.scl)
    np.testing.assert_array_equal(ph, whole.phasic)
    np.testing.assert_array_equal(fl, whole.flags)


def test_single_sample_chunks_equal_one_pass(sim100):
    x, _, _ = sim100
    fs = 100.0
    x = x[: int(3 * 60 * fs)]
    whole = detect_scr(x, fs)
    det, _new, *_ = _stream(x, fs, np.ones(len(x), dtype=int))
    assert len(whole) > 3
    for name in SCR_DTYPE.names:
        np.testing.assert_array_equal(det.scrs[name], whole[name])


def test_real_data_chunked_equals_one_pass(shared_data):
    d = np.load(shared_data / "eda" / "systole_task1_1000hz.npz")
    fs = float(d["fs"])
    x = d["eda"][: int(240 * fs)].astype(np.float64)
    whole = detect_scr(x, fs)
    sizes = np.random.default_rng(7).integers(1, 1001, size=len(x))
    det, _new, *_ = _stream(x, fs, sizes)
    assert len(whole) > 5
    for name in SCR_DTYPE.names:
        np.testing.assert_array_equal(det.scrs[name], whole[name])


def test_real_data_streaming_event_related_equals_offline(shared_data):
    """The 72 systole events resolved live (0.5 s chunks) give the offline answers."""
    d = np.load(shared_data / "eda" / "systole_task1_1000hz.npz")
    fs = float(d["fs"])
    x = d["eda"].astype(np.float64)
    events = np.flatnonzero(d["stim"])
    offline = event_related_scr(detect_scr(x, fs), events, fs)
    det, ers = SCRDetector(fs), EventRelatedSCR(fs)
    parts, k, step = [], 0, 500
    for i in range(0, x.size, step):
        while k < events.size and events[k] < i + step:
            ers.add_event(int(events[k]))
            k += 1
        parts.append(ers.update(det.update(x[i : i + step]), det.n_samples))
    parts.append(ers.update(det.scrs[:0], 10**12))
    live = np.concatenate(parts)
    live = live[np.argsort(live["event"])]
    assert len(live) == 72
    for name in offline.dtype.names:
        np.testing.assert_array_equal(live[name], offline[name])


@pytest.mark.parametrize("cut_s", [61.3, 185.0, 333.33])
def test_future_samples_never_change_past_outputs(sim100, cut_s):
    x, _, _ = sim100
    fs = 100.0
    x = x[: int(8 * 60 * fs)]
    t = int(cut_s * fs)
    rng = np.random.default_rng(3)
    y = x.copy()
    y[t:] = y[t:] * 1.3 + rng.normal(0, 0.05, len(y) - t)  # a different future
    y[t + 500 : t + 900] = np.nan
    a, b = SCRDetector(fs), SCRDetector(fs)
    a.update(x)
    b.update(y)
    sa = a.scrs[a.scrs["confirmed"] < t]
    sb = b.scrs[b.scrs["confirmed"] < t]
    assert len(sa) > 3
    for name in ("onset", "peak", "amplitude", "rise_time", "confirmed"):
        np.testing.assert_array_equal(sa[name], sb[name])
    # Half-recoveries seen before t are the same too.
    seen_a = sa["peak"] + sa["half_recovery"] * fs < t - 100
    np.testing.assert_array_equal(sa["half_recovery"][seen_a], sb["half_recovery"][seen_a])
    ra, rb = decompose_eda(x, fs), decompose_eda(y, fs, strict=False)
    np.testing.assert_array_equal(ra.scl[:t], rb.scl[:t])
    np.testing.assert_array_equal(ra.phasic[:t], rb.phasic[:t])
    np.testing.assert_array_equal(ra.flags[:t], rb.flags[:t])


# ---------------------------------------------------------------- bad input


def test_bad_input_flagged_and_recovers():
    fs = 32.0
    x, truth, _ = simulate_labelled_eda(fs, 14.0, seed=21)
    bad = x.copy()
    n = len(x)
    nan_run = slice(int(100 * fs), int(110 * fs))
    off_run = slice(int(250 * fs), int(262 * fs))
    kohm_run = slice(int(400 * fs), int(430 * fs))
    bad[nan_run] = np.nan
    bad[off_run] = 0.02  # electrode lifted: conductance near zero
    bad[kohm_run] = 1000.0 / x[kohm_run]  # a unit mistake: kΩ sent as µS (~200)
    det, new, scl, _ph, fl = _stream(bad, fs, np.random.default_rng(1).integers(1, 300, size=n))
    assert np.all(fl[nan_run] & FLAG_NAN)
    assert np.all(fl[off_run] & FLAG_OFF)
    assert np.all(fl[kohm_run] & FLAG_RANGE)
    assert np.all(np.isnan(scl[fl & FLAG_INVALID > 0]))
    assert np.all(np.isfinite(scl[fl == 0]))
    text = " | ".join(det.issues)
    print("\n" + "\n".join(det.issues))
    assert "NaN" in text and "electrode off" in text and "kohm" in text
    # Recovery: after the last bad segment (+ settling) detection is as good as on clean data.
    after = int(435 * fs)
    tr = truth[truth["onset"] > after + 2 * fs]
    got = new[new["onset"] > after + 2 * fs]
    s = score_scrs(got["onset"] / fs, got["amplitude"], tr["onset"] / fs, tr["amplitude"])
    print(f"after recovery: {s.as_dict()}")
    assert s.n_truth >= 20
    assert s.f1 >= 0.9
    # Nothing is reported inside a bad segment.
    for run in (nan_run, off_run, kohm_run):
        assert not np.any((new["onset"] >= run.start) & (new["onset"] < run.stop))


def test_offline_rejects_implausible_values():
    x = np.full(1000, 5.0)
    with pytest.raises(EDAInputError, match="kohm"):
        detect_scr(np.full(1000, 250.0), 100.0)  # kΩ given as µS
    x[10] = -0.5
    with pytest.raises(EDAInputError, match="negative"):
        detect_scr(x, 100.0)
    with pytest.raises(EDAInputError, match="4-2048 Hz"):
        detect_scr(np.full(100, 5.0), 2.0)
    with pytest.raises(EDAInputError, match="unit"):
        SCRDetector(100.0, unit="ohm")


def test_unit_conversion():
    r_kohm = np.array([200.0, 100.0, 50.0, np.nan])
    np.testing.assert_allclose(to_microsiemens(r_kohm, "kohm"), [5.0, 10.0, 20.0, np.nan])
    np.testing.assert_allclose(to_microsiemens(r_kohm[:3] / 100, "µmho"), [2.0, 1.0, 0.5])
    x, _truth, _ = simulate_labelled_eda(50.0, 5.0, seed=4)
    a = detect_scr(x, 50.0)
    b = detect_scr(1000.0 / x, 50.0, unit="kΩ")
    np.testing.assert_array_equal(a["onset"], b["onset"])
    np.testing.assert_allclose(a["amplitude"], b["amplitude"], rtol=1e-9)


def test_motion_artifacts_are_flagged_not_counted():
    fs = 100.0
    x, truth, _ = simulate_labelled_eda(fs, 6.0, seed=8)
    rng = np.random.default_rng(2)
    # Spikes away from true SCRs (>= 6 s from any onset), so any SCR near one is spurious.
    cand = np.arange(int(30 * fs), len(x) - int(30 * fs), int(fs))
    far = np.min(np.abs(cand[:, None] - truth["onset"][None, :]), axis=1) >= 6 * fs
    spikes = np.sort(rng.choice(cand[far], 8, replace=False))
    bad = x.copy()
    for k in spikes:
        bad[k : k + 8] += rng.uniform(0.5, 2.0)  # 80 ms transients: faster than any SCR
    r = decompose_eda(bad, fs)
    for k in spikes:
        assert (r.flags[k : k + 20] & FLAG_MOTION).any()
    near = np.zeros(len(r.scrs), bool)
    for k in spikes:
        near |= (r.scrs["onset"] > k - 3 * fs) & (r.scrs["onset"] < k + 4 * fs)
    assert not near.any(), r.scrs[near]
    clean = score(r.scrs, truth, fs)
    print(f"\nwith 8 motion spikes: {clean.as_dict()}")
    assert clean.fp == 0
    # The clean recording raises no motion flag.
    assert not (decompose_eda(x, fs).flags & FLAG_MOTION).any()


# ---------------------------------------------------------------- event-related and rate


def test_event_related_scrs_offline_and_streaming():
    fs = 50.0
    x, truth, events = simulate_labelled_eda(fs, 15.0, seed=9)
    scrs = detect_scr(x, fs)
    er = event_related_scr(scrs, events, fs)
    evoked = truth[truth["evoked"]]
    # Every event evokes an SCR 1-3 s later in the simulator.
    print(f"\nresponse rate {er['responded'].mean():.3f} over {len(er)} events")
    # Misses are evoked SCRs merged with a spontaneous one that started < 1 s earlier.
    assert er["responded"].mean() >= 0.85
    ok = er["responded"]
    assert np.all((er["latency"][ok] >= 1.0) & (er["latency"][ok] <= 4.0))
    assert np.all(er["onset"][~ok] == -1) and np.all(np.isnan(er["amplitude"][~ok]))
    # Amplitudes agree with the evoked truth.
    match = np.array([np.argmin(np.abs(evoked["onset"] - o)) for o in er["onset"][ok]])
    rel = np.abs(er["amplitude"][ok] - evoked["amplitude"][match]) / evoked["amplitude"][match]
    assert np.median(rel) <= 0.15
    # A window that cannot contain responses gives "no response" everywhere.
    none = event_related_scr(scrs, events, fs, window=(30.0, 30.5))
    assert none["responded"].sum() <= 0.3 * len(events)
    # Streaming: resolve events as chunks arrive; same answers as offline.
    det = SCRDetector(fs)
    ers = EventRelatedSCR(fs)
    resolved = []
    ev_iter = iter(events)
    next_ev = next(ev_iter, None)
    for i in range(0, len(x), 37):
        while next_ev is not None and next_ev < i + 37:
            ers.add_event(next_ev)
            next_ev = next(ev_iter, None)
        new = det.update(x[i : i + 37])
        resolved.append(ers.update(new, det.n_samples))
    resolved.append(ers.update(det.scrs[:0], 10**12))
    res = np.concatenate(resolved)
    res = res[np.argsort(res["event"])]
    for name in er.dtype.names:
        np.testing.assert_array_equal(res[name], er[name])


def test_nonspecific_rate():
    fs = 10.0
    scrs = np.zeros(6, dtype=SCR_DTYPE)
    scrs["onset"] = np.array([5, 100, 200, 300, 640, 900]) * 1  # samples
    rate = scr_rate(scrs, np.array([599, 650, 1000]), fs, window_s=60.0)
    # Windows (at - 60 s, at]: {5, 100, 200, 300}, {100, 200, 300, 640}, {640, 900}.
    np.testing.assert_allclose(rate, [4.0, 4.0, 2.0])  # per minute
    events = np.array([280])  # onset 300 is 2 s after it: elicited, not non-specific
    rate_ns = scr_rate(scrs, np.array([599]), fs, window_s=60.0, events=events)
    np.testing.assert_allclose(rate_ns, [3.0])
    x, truth, _ = simulate_labelled_eda(20.0, 20.0, seed=30)
    got = scr_rate(detect_scr(x, 20.0), len(x) - 1, 20.0, window_s=1200.0)
    want = len(truth) * 60 / 1200.0
    assert got[0] == pytest.approx(want, rel=0.15)


# ---------------------------------------------------------------- real data vs NeuroKit2


def test_real_data_event_related_vs_neurokit2(shared_data):
    """Event-related SCRs on the systole picture task, side by side with NeuroKit2.

    Disagreements are explained in docs/eda.md: NeuroKit2 keeps a peak only if its
    0.05 Hz high-passed phasic value reaches 10 % of the largest one, which drops SCRs
    that start while the high-passed signal is depressed after a large response.
    """
    import neurokit2 as nk  # the test extra; a missing reference must fail, not skip

    d = np.load(shared_data / "eda" / "systole_task1_1000hz.npz")
    fs = float(d["fs"])
    x = d["eda"].astype(np.float64)
    events = np.flatnonzero(d["stim"])
    assert len(events) == 72
    r = decompose_eda(x, fs)
    scrs = r.scrs
    ours = event_related_scr(scrs, events, fs)

    sig, info = nk.eda_process(x, sampling_rate=int(fs))
    nk_on = np.asarray(info["SCR_Onsets"], dtype=float)
    nk_ok = np.isfinite(nk_on)
    nk_scrs = np.zeros(int(nk_ok.sum()), dtype=SCR_DTYPE)
    nk_scrs["onset"] = nk_on[nk_ok].astype(np.int64)
    nk_scrs["peak"] = np.asarray(info["SCR_Peaks"])[nk_ok]
    nk_scrs["amplitude"] = np.asarray(info["SCR_Amplitude"])[nk_ok]
    theirs = event_related_scr(nk_scrs, events, fs)
    epochs = nk.epochs_create(sig, events, sampling_rate=int(fs), epochs_start=-1.0, epochs_end=4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nk_er = nk.eda_eventrelated(epochs, silent=True)
    nk_native = int(nk_er["EDA_SCR"].sum())

    both = ours["responded"] & theirs["responded"]
    same = both & (np.abs(ours["onset"] - theirs["onset"]) <= 0.5 * fs)
    ratio = ours["amplitude"][same] / theirs["amplitude"][same]
    # All SCRs over the recording: how many of NeuroKit2's does stimloop also find?
    dist = np.abs(scrs["onset"][None, :] - nk_scrs["onset"][:, None]).min(axis=1) / fs
    nk_found = float(np.mean(dist <= 1.0))
    minutes = len(x) / fs / 60
    print(
        f"\nsystole task, 72 events, onset window 1-4 s:"
        f"\n  stimloop : {ours['responded'].sum()} responses ({ours['responded'].mean():.1%}), "
        f"median amplitude {np.nanmedian(ours['amplitude']):.3f} µS, "
        f"median latency {np.nanmedian(ours['latency']):.2f} s; {len(scrs)} SCRs "
        f"({len(scrs) / minutes:.1f}/min)"
        f"\n  NeuroKit2: {theirs['responded'].sum()} responses ({theirs['responded'].mean():.1%}), "
        f"median amplitude {np.nanmedian(theirs['amplitude']):.3f} µS, "
        f"median latency {np.nanmedian(theirs['latency']):.2f} s; {len(nk_scrs)} SCRs "
        f"({len(nk_scrs) / minutes:.1f}/min); eda_eventrelated EDA_SCR=1 in {nk_native} epochs"
        f"\n  both respond: {both.sum()}, same SCR: {same.sum()}, amplitude ratio "
        f"stimloop/NK median {np.median(ratio):.2f}; NK SCRs also found by stimloop: {nk_found:.1%}"
    )
    # Bounds (docs/eda.md): stimloop finds what NeuroKit2 finds, plus SCRs it drops.
    assert nk_found >= 0.9
    assert (theirs["responded"] & ~ours["responded"]).sum() <= 2
    # NK ≤ stimloop ≤ NK + 20 events: the excess is explained event by event in docs/eda.md
    # (NK's relative height rule, its onsets < 1 s after the event, merged SCRs).
    assert theirs["responded"].sum() <= ours["responded"].sum() <= theirs["responded"].sum() + 20
    # Where both score the same response, amplitudes agree (same trough-to-peak idea).
    assert same.sum() >= 0.7 * both.sum()
    assert 0.75 <= np.median(ratio) <= 1.35
    # The real signal is clean: no flags, plausible SCL.
    assert not r.flags.any()
    assert 5.0 < np.nanmedian(r.scl) < 15.0
    assert np.nanmin(r.phasic) >= 0.0


# ---------------------------------------------------------------- wearable generator


def _wearable(fs: float, minutes: float, seed: int) -> W.WearableEDA:
    quant = "step" if seed % 2 else "divider"
    return W.simulate_wearable_eda(fs, minutes, seed, W.WearableEDAConfig(quantisation=quant))


@pytest.mark.parametrize("fs", [4.0, 32.0, 1000.0], ids=["4Hz", "32Hz", "1kHz"])
def test_isolated_scrf_and_bateman_shapes_onset_and_amplitude(fs):
    """Gradual (Bach et al. 2010 SCRF) and sharp (Bateman, impulse driver) onsets alike:
    the onset within 0.15 s (and half a sample) of where the SCR reached 2 % of its
    amplitude, the amplitude within 5 %, at every rate (the onset is found on a zero-phase
    smoothing)."""
    rng = np.random.default_rng(4)
    cfg = W.WearableEDAConfig()
    t = np.arange(int(40 * fs)) / fs
    kinds = set()
    for _ in range(24):
        s = W._draw_scr(rng, cfg, 15.0, evoked=False, in_burst=False)
        scale, on, _pk = s.landmarks()
        x = 5.0 + 0.3 / scale * s.curve(t - 15.0)
        scrs = detect_scr(x, fs)
        assert len(scrs) == 1, (s, scrs)
        assert scrs["onset"][0] / fs == pytest.approx(15.0 + on, abs=0.15 + 0.5 / fs)
        assert scrs["amplitude"][0] == pytest.approx(0.3, rel=0.05)
        kinds.add((s.shape, s.sigma == 0.0))
    assert len(kinds) == 3  # SCRF, Bateman with an impulse and with a Gaussian driver


def test_wearable_generator_accuracy_and_artifacts_at_wearable_and_lab_rates():
    """The second generator, 2 x 20 min per rate (the bench runs 4): F1 and amplitude error
    against its truth (SCRs hidden by artifacts or a 3x larger SCR need not be found),
    motion artifacts flagged and not counted. Bounds sit below the measured figures (F1
    0.80 / 0.87 / 0.86, amplitude error 8-10 %); before issue #18 the detector scored F1
    0.52-0.60 on this generator (docs/benchmarks.md)."""
    for fs, f1_min in ((4.0, 0.76), (16.0, 0.82), (100.0, 0.82)):
        on_d, amp_d, on_t, amp_t, opt = [], [], [], [], []
        found = n_art = at_art = 0
        for seed in (1, 2):
            rec = _wearable(fs, 20.0, seed)
            r = decompose_eda(rec.eda_us, fs, strict=False)
            off = seed * 10_000.0
            on_d.append(r.scrs["onset"] / fs + off)
            amp_d.append(r.scrs["amplitude"])
            on_t.append(rec.scrs["onset_s"] + off)
            amp_t.append(rec.scrs["amplitude"])
            opt.append(rec.scrs["near_artifact"] | rec.scrs["masked"])
            sa = score_artifacts(
                (r.flags & FLAG_MOTION) > 0,
                fs,
                rec.artifacts["start_s"],
                rec.artifacts["end_s"],
                r.scrs["onset"] / fs,
                rec.scrs["onset_s"],
            )
            found, n_art, at_art = (
                found + sa.found,
                n_art + sa.n_artifacts,
                at_art + sa.scrs_at_artifacts,
            )
            assert sa.false_flag_fraction < 0.005
        s = score_scrs(
            *(np.concatenate(v) for v in (on_d, amp_d, on_t, amp_t)), optional=np.concatenate(opt)
        )
        print(f"\nwearable {fs:g} Hz: {s.as_dict()}")
        print(f"artifacts found {found}/{n_art}, SCRs reported at them {at_art}")
        assert s.n_truth > 200
        assert s.f1 >= f1_min
        assert s.amp_err_median <= 0.105
        assert at_art <= (5 if fs < 10 else 2)
        assert found >= (0.6 if fs < 10 else 0.85) * n_art


@pytest.mark.parametrize("fs", [4.0, 32.0, 100.0], ids=["4Hz", "32Hz", "100Hz"])
def test_motion_steps_and_spikes_are_flagged_not_counted_at_any_rate(fs):
    """Steps (a lasting offset) and spikes inserted into a clean recording far from any
    SCR: every one is flagged FLAG_MOTION within 1 s, none is reported as an SCR, and after
    a step the SCL follows the new level (the filters restart)."""
    x, truth, _ = simulate_labelled_eda(fs, 10.0, seed=8)
    rng = np.random.default_rng(5)
    cand = np.arange(int(20 * fs), len(x) - int(20 * fs), int(fs))
    far = np.min(np.abs(cand[:, None] - truth["onset"][None, :]), axis=1) >= 8 * fs
    where = np.sort(rng.choice(cand[far], 10, replace=False))
    bad = x.copy()
    kinds = []
    for i, k in enumerate(where):
        size = rng.uniform(0.1, 0.6) * (1 if i % 2 else -1)
        if i % 3 == 0:
            bad[k:] += size  # step
            kinds.append("step")
        else:
            n = max(1, round(rng.uniform(0.05, 0.3) * fs))
            bad[k : k + n] += 2.5 * abs(size) * np.sign(size)  # spike
            kinds.append("spike")
    r = decompose_eda(bad, fs, strict=False)
    for k, kind in zip(where, kinds, strict=True):
        assert (r.flags[k : k + int(1.0 * fs) + 2] & FLAG_MOTION).any(), (kind, k / fs)
        near = (r.scrs["onset"] > k - 3 * fs) & (r.scrs["onset"] < k + 5 * fs)
        assert not near.any(), (kind, k / fs, r.scrs[near])
    step_k = where[[kind == "step" for kind in kinds]]
    for k in step_k:
        after = int(k + 4 * fs)
        assert abs(r.scl[after] - bad[after]) < 0.1  # no leftover offset from the step
    with_art = score(r.scrs, truth, fs)
    ref = decompose_eda(x, fs)
    clean = score(ref.scrs, truth, fs)
    print(f"\n{fs:g} Hz, {len(where)} steps and spikes: {with_art.as_dict()}")
    print(f"same recording without them: {clean.as_dict()}")
    assert with_art.fp <= clean.fp  # the artifacts add no false SCR
    assert with_art.tp >= clean.tp - 3  # and hide few true ones (their flagged seconds)
    assert not (ref.flags & FLAG_MOTION).any()


@pytest.mark.parametrize(
    ("fs", "cut_s"), [(4.0, 181.3), (32.0, 400.0), (1000.0, 95.5)], ids=["4Hz", "32Hz", "1kHz"]
)
def test_wearable_future_never_changes_past_outputs_artifacts_included(fs, cut_s):
    """Causality on the wearable generator (motion artifacts, quantisation, 1/f noise):
    rewriting everything after t leaves flags (motion flags included), SCL, phasic and
    every SCR confirmed before t bit-identical."""
    rec = _wearable(fs, 8.0 if fs < 500 else 3.0, seed=3)
    x = rec.eda_us
    t = int(cut_s * fs)
    y = x.copy()
    y[t:] = np.flip(x)[: len(x) - t] + 0.3  # a different future, with its own jumps
    y[t + int(2 * fs) : t + int(2.3 * fs)] += 1.0
    a, b = SCRDetector(fs), SCRDetector(fs)
    a.update(x)
    b.update(y)
    sa = a.scrs[a.scrs["confirmed"] < t]
    sb = b.scrs[b.scrs["confirmed"] < t]
    assert len(sa) > 3
    for name in ("onset", "peak", "amplitude", "rise_time", "confirmed"):
        np.testing.assert_array_equal(sa[name], sb[name])
    ra, rb = decompose_eda(x, fs, strict=False), decompose_eda(y, fs, strict=False)
    assert (ra.flags[:t] & FLAG_MOTION).any()
    np.testing.assert_array_equal(ra.flags[:t], rb.flags[:t])
    np.testing.assert_array_equal(ra.scl[:t], rb.scl[:t])
    np.testing.assert_array_equal(ra.phasic[:t], rb.phasic[:t])


@pytest.mark.parametrize("fs", [4.0, 1000.0], ids=["4Hz", "1kHz"])
def test_wearable_random_chunks_equal_one_pass(fs):
    """Chunk invariance with motion flags, filter restarts and the noise estimates."""
    rec = _wearable(fs, 10.0 if fs < 500 else 3.0, seed=4)
    x = rec.eda_us
    whole = decompose_eda(x, fs, strict=False)
    assert (whole.flags & FLAG_MOTION).any() and len(whole.scrs) > 5
    sizes = np.random.default_rng(2).integers(1, max(3, int(2.5 * fs)), size=len(x))
    det, _new, scl, ph, fl = _stream(x, fs, sizes)
    for name in SCR_DTYPE.names:
        np.testing.assert_array_equal(det.scrs[name], whole.scrs[name])
    np.testing.assert_array_equal(fl, whole.flags)
    np.testing.assert_array_equal(scl, whole.scl)
    np.testing.assert_array_equal(ph, whole.phasic)


@pytest.mark.parametrize("fs", [4.0, 100.0], ids=["4Hz", "100Hz"])
def test_noise_quantisation_and_tonic_ramps_make_few_scrs(fs):
    """No SCRs in the recording, only what a wearable adds: 1/f and white noise, 0.01 µS
    steps and a tonic level rising at up to 0.02 µS/s. The noise thresholds and the
    baseline trend keep false SCRs rare, at 4 Hz and 100 Hz alike (measured 0 and 1 in the
    40 min; before issue #18, 65 and 464)."""
    cfg = W.WearableEDAConfig(
        spontaneous_per_min=0.0,
        bursts_per_min=0.0,
        event_response_prob=0.0,
        artifacts_per_min=0.0,
        scl_trend_us_per_10min=6.0,
    )
    n_false = 0
    for seed in (1, 2):
        rec = W.simulate_wearable_eda(fs, 20.0, seed, cfg)
        n_false += len(detect_scr(rec.eda_us, fs))
    print(f"\n{fs:g} Hz: {n_false} false SCRs in 40 min of noise, quantisation and drift")
    assert n_false <= 6


def test_min_amplitude_from_params_is_honoured():
    x, _, _ = simulate_labelled_eda(50.0, 5.0, seed=4)
    high = detect_scr(x, 50.0, params=EDAParams(min_amplitude=0.1))
    assert len(high) and high["amplitude"].min() >= 0.1
    assert len(detect_scr(x, 50.0, min_amplitude=0.01, params=EDAParams(min_amplitude=0.1))) > len(
        high
    )
