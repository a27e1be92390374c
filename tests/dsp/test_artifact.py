"""The artifact detector (``stimloop.dsp.artifact``) on real EEG and on generated cases.

Real data: EEGMAT rest (500 Hz), Hjorth derivations at C3, O2 and Pz with their raw
channels. Generated cases (a second generator, written apart from the feature): an AR(2)
alpha resonator in 1/f-like noise with random blinks, pops, steps, mains bursts, rails
and dropouts, checked against a plain-Python reading of the documented rules.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from stimloop.dsp.artifact import (
    AMPLITUDE,
    FLAT,
    HOLD,
    RANGE,
    STEP,
    ArtifactDetector,
    artifact_kinds,
    detect_artifacts,
)
from stimloop.dsp.errors import DSPError
from stimloop.dsp.spatial import hjorth_weights
from stimloop.stream.replay import load_recording


@functools.cache
def _load(path: str) -> tuple[np.ndarray, list[str], float]:
    rec = load_recording(path)
    eeg = next(s for s in rec.streams if s.rate_hz > 0)
    data = np.asarray(eeg.data, dtype=np.float64)
    data.flags.writeable = False
    return data, [c["label"] for c in eeg.channels], float(eeg.rate_hz)


@pytest.fixture
def eegmat(shared_data):
    """EEGMAT rest: data µV (182 s, the last 2 s a constant), labels, fs."""
    return _load(str(shared_data / "eeg" / "eegmat_subject00_rest.edf"))


def _derivation(data, labels, target):
    w, _ = hjorth_weights(labels, target)
    used = np.flatnonzero(w)
    return data @ w, data[:, used], used


# -- real EEG -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["C3", "O2", "Pz"])
def test_clean_eegmat_is_never_marked_and_its_flat_end_is(eegmat, target):
    data, labels, fs = eegmat
    x, chans, _ = _derivation(data, labels, target)
    out = detect_artifacts(x, fs, chans)
    end = round(180 * fs)
    assert not out.mask[:end].any()
    # The file's last samples are one constant per channel (padding): flat, i.e. railed
    # or disconnected, from flat_s after the constant starts, to the end.
    c3 = data[:, labels.index("EEG C3")]
    flat_start = int(np.flatnonzero(np.diff(c3[: end + 100]) != 0)[-1]) + 1
    n_flat = round(0.1 * fs)
    marked = np.flatnonzero(out.mask)
    assert marked[0] == flat_start + n_flat - 1
    assert out.mask[marked[0] :].all()
    # The jump between the file's two constants restarts the runs: the hang-over covers
    # the restart.
    assert all(out.code[marked] & (FLAT | HOLD)) and np.mean(out.code[marked] & FLAT) > 0.9


@pytest.mark.parametrize("amp_uv", [1e3, 5e3, 3e5, 1e30], ids=["1mV", "5mV", "300mV", "1e30"])
def test_a_200_ms_step_on_c3_is_marked_exactly_with_its_hang_over(eegmat, amp_uv):
    data, labels, fs = eegmat
    data = data[: round(90 * fs)].copy()
    a, e = round(60 * fs), round(60.2 * fs)
    data[a:e, labels.index("EEG C3")] += amp_uv
    x, chans, _ = _derivation(data, labels, "C3")
    out = detect_artifacts(x, fs, chans)
    hold = round(0.2 * fs)
    marked = np.flatnonzero(out.mask)
    # From the first step sample to the trailing edge (itself a step) plus the hang-over.
    np.testing.assert_array_equal(marked, np.arange(a, e + 1 + hold))
    assert all(out.code[a:e] & AMPLITUDE)
    assert out.code[a] & STEP and out.code[e] & STEP
    assert np.all(out.code[e + 1 : e + 1 + hold] == HOLD)
    if amp_uv > 5e4:
        assert all(out.code[a:e] & RANGE)
    assert out.deviation_uv[a] == pytest.approx(amp_uv, abs=100.0)  # EEG is < 50 µV
    assert 150.0 <= out.threshold_uv[a] < 160.0  # near the floor: C3 is far below it


def test_railed_c3_is_marked_from_its_first_sample_whatever_its_history(eegmat):
    data, labels, fs = eegmat
    data = data[: round(30 * fs)].copy()
    c3 = labels.index("EEG C3")
    whole = data.copy()
    whole[:, c3] = 3e5  # railed before the stream started
    x, chans, _ = _derivation(whole, labels, "C3")
    out = detect_artifacts(x, fs, chans)
    assert out.mask.all()
    assert all(out.code & RANGE)
    assert all(out.code[round(0.1 * fs) - 1 :] & FLAT)
    mid = data.copy()
    mid[round(10 * fs) :, c3] = 3e5
    x, chans, _ = _derivation(mid, labels, "C3")
    out = detect_artifacts(x, fs, chans)
    assert not out.mask[: round(10 * fs)].any() and out.mask[round(10 * fs) :].all()


def test_a_rail_inside_the_eeg_range_is_caught_by_the_flat_test(eegmat):
    """C3 stuck at 20 µV: the derivation then carries the neighbours' rhythm and no
    amplitude test can see it; the channel's flat line can."""
    data, labels, fs = eegmat
    data = data[: round(30 * fs)].copy()
    s = round(10 * fs)
    data[s:, labels.index("EEG C3")] = 20.0
    x, chans, _ = _derivation(data, labels, "C3")
    out = detect_artifacts(x, fs, chans)
    n_flat = round(0.1 * fs)
    assert not out.mask[: s + n_flat - 1].any()  # no step: it is reached from 20 µV off
    assert out.mask[s + n_flat - 1 :].all()
    # Without the raw channels the same derivation passes: the test needs them.
    assert not detect_artifacts(x, fs).mask[s + n_flat :].any()
    # Stuck far from its level for longer than reacquire_s: the rail never becomes the
    # level, so the return to EEG is clean at once (after the hang-over).
    data[s:, labels.index("EEG C3")] = data[s:, labels.index("EEG C4")]
    e = s + round(5 * fs)
    data[s:e, labels.index("EEG C3")] = 2000.0
    x, chans, _ = _derivation(data, labels, "C3")
    out = detect_artifacts(x, fs, chans)
    np.testing.assert_array_equal(np.flatnonzero(out.mask), np.arange(s, e + 1 + round(0.2 * fs)))


@pytest.mark.parametrize("target, gain", [("C3", 6.0), ("O2", 3.0)])
def test_large_alpha_raises_the_threshold_instead_of_being_gated(eegmat, target, gain):
    """Real EEG scaled to peaks of 184-269 µV on the derivation (far above the 150 µV
    floor): a fixed threshold at the floor marks 1.2-1.3 % of it, the adaptive one
    nothing; a 1 mV step in it is still marked."""
    data, labels, fs = eegmat
    data = gain * data[: round(180 * fs)]
    x, chans, _ = _derivation(data, labels, target)
    assert np.abs(x).max() > 180.0
    fixed = detect_artifacts(x, fs, chans, k=1e-3)
    assert fixed.mask.mean() > 0.01
    out = detect_artifacts(x, fs, chans)
    assert not out.mask.any()
    assert out.threshold_uv.max() > 300.0 and out.threshold_uv.max() <= 500.0
    a = round(100 * fs)
    x2 = x.copy()
    x2[a : a + 100] += 1e3
    assert detect_artifacts(x2, fs, chans).mask[a : a + 100].all()


def test_a_lasting_level_shift_is_accepted_after_reacquire_s_and_an_offset_from_the_start_at_once(
    eegmat,
):
    """A DC-coupled amplifier: an electrode pop leaves C3 5 mV higher for good."""
    data, labels, fs = eegmat
    data = data[: round(40 * fs)].copy()
    s = round(10 * fs)
    data[s:, labels.index("EEG C3")] += 5e3
    x, chans, _ = _derivation(data, labels, "C3")
    out = detect_artifacts(x, fs, chans)
    re, hold = round(2.0 * fs), round(0.2 * fs)
    marked = np.flatnonzero(out.mask)
    np.testing.assert_array_equal(marked, np.arange(s, s + re + hold))
    # An offset present from the first sample is the level from the start.
    offset = data.copy()
    offset[:, labels.index("EEG C3")] += 2e4
    x, chans, _ = _derivation(offset[s:], labels, "C3")
    assert not detect_artifacts(x, fs, chans).mask.any()


def test_chunked_equals_whole_and_the_future_never_changes_the_past(eegmat):
    data, labels, fs = eegmat
    data = data[: round(60 * fs)].copy()
    c3 = labels.index("EEG C3")
    data[round(12 * fs) : round(12.2 * fs), c3] += 5e3
    data[round(20 * fs) : round(21 * fs), c3] = 3e5
    data[round(30 * fs) : round(30.3 * fs), :] = np.nan  # a bridged gap
    data[round(40 * fs) : round(41 * fs), c3] = 7.0  # a rail inside the range
    x, chans, _ = _derivation(data, labels, "C3")
    whole = detect_artifacts(x, fs, chans)
    assert whole.mask.any()
    rng = np.random.default_rng(3)
    for sizes in (rng.integers(1, 700, x.size), np.ones(x.size, int)):
        det = ArtifactDetector(fs, chans.shape[1])
        parts, k = [], 0
        for size in sizes:
            if k >= x.size:
                break
            parts.append(det.update(x[k : k + size], chans[k : k + size]))
            k += size
        for name in whole._fields:
            np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]),
                                          getattr(whole, name), err_msg=name)  # fmt: skip
    cut = round(25 * fs)
    future = x.copy()
    future[cut:] = rng.normal(0, 1e4, x.size - cut)
    chans_future = chans.copy()
    chans_future[cut:] = 0.0
    other = detect_artifacts(future, fs, chans_future)
    for name in whole._fields:
        np.testing.assert_array_equal(getattr(other, name)[:cut], getattr(whole, name)[:cut])


def test_non_finite_samples_are_not_marked_restart_the_step_test_and_count_towards_the_hold():
    fs = 100.0
    x = np.zeros(60)
    x[10] = 1e3  # one spike: marked, the next sample's return is a step too
    x[12:15] = np.nan
    x[15] = 40.0  # 40 µV after a gap: no step is measured across the gap
    out = detect_artifacts(x, fs, hold_s=0.05)
    assert out.code[10] == AMPLITUDE | STEP and out.code[11] == STEP
    assert list(out.code[12:17]) == [HOLD] * 5  # hang-over 5 samples, gap rows included
    assert np.isnan(out.step_uv[15]) and np.isnan(out.deviation_uv[12])
    assert not out.mask[17:].any()
    assert artifact_kinds(AMPLITUDE | STEP) == ["amplitude", "step"]
    assert artifact_kinds(HOLD) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fs": 0.0}, "fs must be a finite rate > 0 Hz, got 0.0"),
        ({"fs": "x"}, "fs must be a number"),
        ({"floor_uv": -1.0}, "floor_uv must be finite and > 0, got -1.0"),
        ({"ceiling_uv": 100.0}, r"ceiling_uv \(100.0\) must be >= floor_uv \(150.0\)"),
        ({"range_uv": 400.0}, r"range_uv \(400.0\) must be > ceiling_uv \(500.0\)"),
        ({"hold_s": math.nan}, "hold_s must be finite and >= 0 s, got nan"),
        ({"n_channels": -2}, "n_channels must be an integer >= 0, got -2"),
    ],
)
def test_bad_parameters_are_named(kwargs, match):
    args = {"fs": 500.0, **kwargs}
    with pytest.raises(DSPError, match=match):
        ArtifactDetector(args.pop("fs"), **args)


def test_bad_input_is_named():
    det = ArtifactDetector(500.0, 2)
    with pytest.raises(DSPError, match=r"x must have shape \(n,\), got \(4, 2\)"):
        det.update(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(DSPError, match=r"channels of shape \(4, 2\) are required"):
        det.update(np.zeros(4))
    with pytest.raises(DSPError, match=r"channels must have shape \(4, 2\), got \(4, 3\)"):
        det.update(np.zeros(4), np.zeros((4, 3)))
    with pytest.raises(DSPError, match="n_channels=0; pass no channels"):
        ArtifactDetector(500.0).update(np.zeros(4), np.zeros((4, 1)))


# -- a second generator and a plain reading of the rules -----------------------------------


def _reference(x, chans, fs, floor=150.0, ceiling=500.0, k=10.0, max_step=50.0, rng_uv=5e4,
               flat_uv=0.5, flat_s=0.1, hold_s=0.2, level_tau=1.0, scale_tau=2.0,
               reacquire_s=2.0):  # fmt: skip
    """The module docstring's rules, sample by sample, in plain Python."""
    alpha = 1.0 - math.exp(-1.0 / (level_tau * fs))
    eta = 1.0 / (scale_tau * fs)
    lo_s, hi_s = floor / k, ceiling / k
    hold_n, re_n, flat_n = round(hold_s * fs), round(reacquire_s * fs), round(flat_s * fs)
    level = None
    scale = lo_s
    prev = None
    hold_left = 0
    amp_run = 0
    runs = [[] for _ in range(chans.shape[1])]  # each channel's current flat run
    codes = []
    for i, v in enumerate(x):
        code = 0
        thr = min(ceiling, max(floor, k * scale))
        if math.isfinite(v):
            for j, run in enumerate(runs):
                c = chans[i, j]
                if not math.isfinite(c):
                    run.clear()
                    continue
                if run and max(*run, c) - min(*run, c) <= flat_uv:
                    run.append(c)
                else:
                    run[:] = [c]
                if len(run) >= flat_n:
                    code |= FLAT
            if level is None:
                level = v
            dev = abs(v - level)
            if abs(v) > rng_uv:
                code |= RANGE
            if dev > thr:
                code |= AMPLITUDE
                amp_run += 1
            else:
                amp_run = 0
            if prev is not None and abs(v - prev) > max_step:
                code |= STEP
            prev = v
            if dev > scale:
                scale = min(scale * math.exp(eta), hi_s)
            elif dev < scale:
                scale = max(scale * math.exp(-eta), lo_s)
            if code == 0 and hold_left == 0:
                level += alpha * (v - level)
            elif amp_run >= re_n and not code & (RANGE | FLAT):
                level, amp_run = v, 0
        else:
            prev = None
            for run in runs:
                run.clear()
        if code:
            hold_left = hold_n
        elif hold_left:
            code, hold_left = HOLD, hold_left - 1
        codes.append(code)
    return np.array(codes)


def _generate(seed: int, fs: float, n: int) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Three channels of alpha (an AR(2) resonator) in integrated noise, with random
    artifacts; the derivation is channel 0 minus the mean of the others. Also returns
    the artifacts' part of the derivation (NaN at rails and dropouts)."""
    rng = np.random.default_rng(seed)
    f0, r = rng.uniform(8, 12), 0.995
    a1, a2 = 2 * r * math.cos(2 * math.pi * f0 / fs), -r * r
    drive = rng.normal(0, 1, (n, 3))
    alpha = np.zeros((n, 3))
    for t in range(2, n):
        alpha[t] = a1 * alpha[t - 1] + a2 * alpha[t - 2] + drive[t]
    alpha *= rng.uniform(5, 30) / alpha.std()
    brown = np.cumsum(rng.normal(0, 0.3, (n, 3)), axis=0)
    chans = alpha + brown - brown.mean(axis=0) + rng.uniform(-300, 300, 3)  # DC offsets
    clean = chans[:, 0] - chans[:, 1:].mean(axis=1)
    events = []
    t = round(3 * fs)
    while t < n - round(2 * fs):
        kind = rng.choice(["blink", "pop", "step", "mains", "rail", "dropout"])
        length = int(rng.integers(round(0.05 * fs), round(0.6 * fs)))
        sl = slice(t, t + length)
        if kind == "blink":
            chans[sl, 0] += rng.uniform(200, 800) * np.sin(np.pi * np.arange(length) / length)
        elif kind == "pop":
            chans[t:, 0] += rng.uniform(300, 3e3) * np.exp(-np.arange(n - t) / (0.1 * fs))
        elif kind == "step":
            chans[sl, 0] += rng.choice([-1, 1]) * 10 ** rng.uniform(3, 8)
        elif kind == "mains":
            chans[sl, 0] += rng.uniform(300, 1e3) * np.sin(2 * np.pi * 50 * np.arange(length) / fs)
        elif kind == "rail":
            chans[sl, int(rng.integers(0, 3))] = rng.choice([-1, 1]) * rng.uniform(10, 2e5)
        else:
            chans[sl, :] = np.nan
        events.append((kind, t, t + length))
        t += length + int(rng.integers(round(1 * fs), round(4 * fs)))
    x = chans[:, 0] - chans[:, 1:].mean(axis=1)
    return x, chans, events, x - clean


@pytest.mark.parametrize("seed, fs", [(1, 250.0), (2, 500.0), (3, 1000.0), (4, 160.0)])
def test_generated_artifacts_match_the_rules_and_are_all_caught(seed, fs):
    x, chans, events, part = _generate(seed, fs, round(40 * fs))
    out = ArtifactDetector(fs, 3).update(x, chans)
    np.testing.assert_array_equal(out.code, _reference(x, chans, fs))
    hold, n_flat = round(0.2 * fs), round(0.1 * fs)
    # Every sample an artifact moves by more than the ceiling plus the EEG's own swing is
    # marked, and so are the hang-over samples after it.
    big = np.abs(part) > 500.0 + np.abs(x - part)[np.isfinite(part)].max() * 2
    must = np.flatnonzero(big)
    assert must.size > 0.02 * x.size
    assert out.mask[must].all()
    ends = must[np.flatnonzero(np.diff(must) > 1)]
    for e in ends:
        assert out.mask[e + 1 : e + 1 + hold].all()
    # Rails, at any level: marked from flat_s after their start to their end.
    rails = [(a, e) for kind, a, e in events if kind == "rail"]
    for a, e in rails:
        assert out.mask[a + n_flat - 1 : e].all(), (a, e)
    # Nothing is marked away from an artifact: its span, the hang-over, and for a pop a
    # tail of 3 s (it decays with 0.1 s, then a possible level reacquisition of 2 s).
    near = np.zeros(x.size, bool)
    for kind, a, e in events:
        tail = round(3.0 * fs) if kind == "pop" else 0
        near[a : e + hold + tail + 1] = True
    assert not out.mask[~near].any()
