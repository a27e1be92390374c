"""The wearable EDA generator's truth is what its signals contain (SCRs, noise, artifacts)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt, welch

from stimloop.devices.sim.wearable_eda import (
    ARTIFACT_SPIKE,
    ARTIFACT_STEP,
    MASK_RATIO,
    NEAR_ARTIFACT_PAD_S,
    SHAPE_BATEMAN,
    SHAPE_SCRF,
    WearableEDAConfig,
    simulate_wearable_eda,
)

#: Nothing but SCRs on a flat tonic level.
BARE = dict(
    scl_walk_us=0.0,
    scl_trend_us_per_10min=0.0,
    pink_us=0.0,
    white_us=0.0,
    artifacts_per_min=0.0,
    quantisation="none",
)


def test_same_seed_same_recording_and_same_physiology_at_every_rate():
    a = simulate_wearable_eda(16.0, 5.0, seed=3)
    b = simulate_wearable_eda(16.0, 5.0, seed=3)
    np.testing.assert_array_equal(a.eda_us, b.eda_us)
    np.testing.assert_array_equal(a.scrs, b.scrs)
    c = simulate_wearable_eda(1000.0, 5.0, seed=3)
    for name in ("onset_s", "peak_s", "amplitude", "shape", "near_artifact"):
        np.testing.assert_array_equal(a.scrs[name], c.scrs[name])
    np.testing.assert_array_equal(a.artifacts["start_s"], c.artifacts["start_s"])
    assert a.eda_us.size == 16 * 300 and c.eda_us.size == 1000 * 300
    other = simulate_wearable_eda(16.0, 5.0, seed=4)
    assert not np.array_equal(other.scrs["onset_s"], a.scrs["onset_s"])


def test_isolated_scrs_have_the_labelled_amplitude_peak_and_onset():
    fs = 100.0
    cfg = WearableEDAConfig(
        spontaneous_per_min=0.6, bursts_per_min=0.0, event_response_prob=0.0, **BARE
    )
    rec = simulate_wearable_eda(fs, 90.0, seed=5, config=cfg)
    x, s = rec.eda_us, rec.scrs
    assert {SHAPE_SCRF, SHAPE_BATEMAN} <= set(s["shape"].tolist())
    checked = 0
    for i in range(len(s)):
        before = s["onset_s"][i] - s["onset_s"][:i]
        after = s["onset_s"][i + 1 :] - s["onset_s"][i]
        if (before.size and before.min() < 90.0) or (after.size and after.min() < 20.0):
            continue
        on, pk = s["onset"][i], s["peak"][i]
        base = x[on - int(4 * fs)]  # flat tonic level before the burst
        seg = x[on : on + int(15 * fs)] - base
        amp = s["amplitude"][i]
        assert seg.max() == pytest.approx(amp, rel=0.02)
        assert abs(on + np.argmax(seg) - pk) <= 0.05 * fs
        # The onset is where the SCR has reached 2 % of its amplitude.
        assert 0.005 * amp <= x[on] - base <= 0.04 * amp
        assert x[on - int(0.5 * fs)] - base < 0.02 * amp
        checked += 1
    print(f"\n{checked} isolated SCRs checked")
    assert checked >= 4
    rise = s["peak_s"] - s["onset_s"]
    assert 0.5 < rise.min() and rise.max() < 5.0


def test_bursts_overlap_but_onsets_keep_the_minimum_gap():
    rec = simulate_wearable_eda(32.0, 20.0, seed=1)
    s = rec.scrs
    gaps = np.diff(s["onset_s"])
    assert gaps.min() >= rec.config.min_onset_gap_s
    assert s["in_burst"].sum() >= 10 and s["evoked"].sum() >= 20
    # Overlap: many SCRs start on the rise or recovery of the previous one (< 4 s).
    assert np.mean(gaps < 4.0) > 0.25


@pytest.mark.parametrize("fs", [4.0, 100.0], ids=["4Hz", "100Hz"])
def test_pink_noise_has_the_set_band_power_and_a_1_over_f_spectrum(fs):
    cfg = WearableEDAConfig(
        spontaneous_per_min=0.0,
        bursts_per_min=0.0,
        event_response_prob=0.0,
        **{**BARE, "pink_us": 0.003},
    )
    rec = simulate_wearable_eda(fs, 30.0, seed=2, config=cfg)
    x = rec.eda_us - rec.clean_us
    hi = min(1.0, 0.45 * fs)
    band = sosfiltfilt(butter(4, [0.05, hi], "bandpass", fs=fs, output="sos"), x)
    assert band[int(60 * fs) : -int(60 * fs)].std() == pytest.approx(0.003, rel=0.25)
    f, p = welch(x, fs=fs, nperseg=int(200 * fs))
    sel = (f >= 0.02) & (f <= hi)
    slope = np.polyfit(np.log(f[sel]), np.log(p[sel]), 1)[0]
    assert -1.3 < slope < -0.7


def test_artifacts_are_where_the_labels_say():
    fs = 1000.0
    cfg = WearableEDAConfig(**{**BARE, "artifacts_per_min": 3.0})
    rec = simulate_wearable_eda(fs, 10.0, seed=8, config=cfg)
    art = rec.artifacts
    assert {ARTIFACT_STEP, ARTIFACT_SPIKE} <= set(art["kind"].tolist())
    d = rec.eda_us - rec.clean_us
    offset = 0.0
    for a in art:
        before = d[a["start"] - 1]
        if a["kind"] == ARTIFACT_STEP:
            after = d[a["end"] + 1]
            assert after - before == pytest.approx(a["size_us"], rel=0.02, abs=1e-6)
            offset += a["size_us"]
        else:
            seg = d[a["start"] : a["end"]] - before
            ext = seg[np.argmax(np.abs(seg))]
            # Clipping at 0 µS can cut a downward spike short.
            if a["size_us"] > 0 or rec.eda_us[a["start"] : a["end"]].min() > 0:
                assert ext == pytest.approx(a["size_us"], rel=0.02)
            assert d[a["end"] + 1] == pytest.approx(before, abs=1e-9)
    assert d[-1] == pytest.approx(offset, abs=1e-9)
    # Outside the artifacts the signal is the clean one plus the steps so far.
    s = rec.scrs
    lo, hi = art["start_s"], art["end_s"]
    near = (s["onset_s"][:, None] - NEAR_ARTIFACT_PAD_S <= hi[None, :]) & (
        s["peak_s"][:, None] + NEAR_ARTIFACT_PAD_S >= lo[None, :]
    )
    np.testing.assert_array_equal(s["near_artifact"], near.any(axis=1))


def test_quantisation_like_wearables():
    step = simulate_wearable_eda(8.0, 3.0, seed=1, config=WearableEDAConfig(quantisation="step"))
    q = step.eda_us / 0.01
    np.testing.assert_allclose(q, np.round(q), atol=1e-6)
    div = simulate_wearable_eda(8.0, 3.0, seed=1, config=WearableEDAConfig(quantisation="divider"))
    r = 0.2  # MΩ
    code = div.eda_us * r / (1.0 + div.eda_us * r) * 4095
    np.testing.assert_allclose(code, np.round(code), atol=1e-6)
    # The conductance step of a divider grows with the level: ~0.005 µS at 5 µS.
    g = 5.0
    c = np.round(4095 * g * r / (1 + g * r))
    assert (c + 1) / (4094 - c) / r - c / (4095 - c) / r == pytest.approx(0.0049, rel=0.05)
    with pytest.raises(ValueError, match="quantisation"):
        simulate_wearable_eda(8.0, 1.0, 1, WearableEDAConfig(quantisation="mu-law"))
    with pytest.raises(ValueError, match="fs"):
        simulate_wearable_eda(0.5, 1.0, 1)


def test_tonic_level_wanders_slowly_and_has_no_scr_like_wiggles():
    fs = 10.0
    cfg = WearableEDAConfig(
        spontaneous_per_min=0.0,
        bursts_per_min=0.0,
        event_response_prob=0.0,
        **{**BARE, "scl_walk_us": 0.3, "scl_trend_us_per_10min": 0.4},
    )
    for seed in (1, 2, 3):
        x = simulate_wearable_eda(fs, 20.0, seed, cfg).eda_us
        assert np.abs(np.diff(x) * fs).max() < 0.05  # µS/s; an SCR of 0.1 µS rises faster
        assert x.max() - x.min() > 0.2  # but it does wander
        band = sosfiltfilt(butter(4, [0.05, 1.0], "bandpass", fs=fs, output="sos"), x)
        assert band[int(60 * fs) : -int(60 * fs)].std() < 0.001


def test_masked_scrs_are_those_a_much_larger_one_hides():
    s = simulate_wearable_eda(16.0, 20.0, seed=2).scrs
    assert 0 < s["masked"].sum() < 0.2 * len(s)
    on, pk, amp = s["onset_s"], s["peak_s"], s["amplitude"]
    for i in range(len(s)):
        big = (amp >= MASK_RATIO * amp[i]) & (on[i] <= pk + 1.0) & (pk[i] >= on)
        assert s["masked"][i] == big.any()
    # A masked SCR really is hidden: the larger one is still rising or just peaked.
    i = int(np.flatnonzero(s["masked"])[0])
    j = int(np.argmax((amp >= MASK_RATIO * amp[i]) & (on[i] <= pk + 1.0) & (pk[i] >= on)))
    assert on[j] - 5.0 < on[i] < pk[j] + 1.0
