"""The virtual HBC subject: its heart answers real pulses, offline and over LSL."""

from __future__ import annotations

import json
import time

import numpy as np
import pylsl
import pytest

from stimloop.devices.base import TrainSpec
from stimloop.devices.sim.hbc_runner import HBCSubjectSession
from stimloop.devices.sim.hbc_subject import (
    DASH_SITES,
    HBCSubject,
    SubjectConfig,
    simulate,
    train_pulses,
)
from stimloop.devices.stimulators.simulated import SimulatedStimulator
from stimloop.dsp.heart import detect_rpeaks
from stimloop.stream.inlet import resolve_source

FS = 500.0


def _schedule(site: str, rmt: float, n: int = 6, start: float = 20.0):
    """Trains of 5 s at 10 Hz every 16 s at 120 % rMT (rest cycles in between)."""
    on = start + 16.0 * np.arange(n)
    inten = np.where(np.arange(n) % 2 == 0, 1.2 * rmt, 0.0)
    return (*train_pulses(on, inten, site), on, inten)


def test_offline_is_deterministic_and_equals_the_live_block_by_block_run():
    cfg = SubjectConfig(seed=11)
    rmt = HBCSubject(cfg).truth.rmt_pct
    t, i, s, _, _ = _schedule("F3", rmt, n=3, start=6.0)
    whole = simulate(cfg, t, i, s, 50.0)
    again = simulate(cfg, t, i, s, 50.0)
    live = simulate(cfg, t, i, s, 50.0, block_s=0.01)  # pulses given as they happen
    np.testing.assert_array_equal(whole.ecg_mv, again.ecg_mv)
    np.testing.assert_array_equal(whole.ecg_mv, live.ecg_mv)
    np.testing.assert_array_equal(whole.rpeaks, live.rpeaks)
    # another seed is another subject
    other = simulate(SubjectConfig(seed=12), t, i, s, 50.0)
    assert other.truth != whole.truth


def test_heart_rate_falls_with_the_pulses_at_the_coupled_site_only():
    cfg = SubjectConfig(seed=5, best_site="F3", noise_scale=0.0, artifact_mv=0.0)
    subj = HBCSubject(cfg)
    rmt = subj.truth.rmt_pct
    assert subj.truth.coupling["F3"] == 1.0
    assert subj.truth.coupling["FC1"] < 0.2  # 48 mm away
    for site, expect_drop in (("F3", True), ("FC1", False)):
        t, i, s, on, inten = _schedule(site, rmt)
        rec = simulate(cfg, t, i, s, 130.0)
        b = rec.beats
        drops = []
        for o, k in zip(on, inten, strict=True):
            pre = b["hr_bpm"][(b["t_s"] > o - 5) & (b["t_s"] < o)].mean()
            dip = b["hr_bpm"][(b["t_s"] > o + 2) & (b["t_s"] < o + 9)].min()
            drops.append((k > 0, pre - dip))
        on_drop = np.mean([d for stim, d in drops if stim])
        rest_drop = np.mean([d for stim, d in drops if not stim])
        if expect_drop:
            assert on_drop > 3.0 and on_drop > rest_drop + 2.5
        else:
            assert on_drop < 1.5
    # the response needs the latency: nothing before the first pulse + latency_s
    t, i, s, on, _ = _schedule("F3", rmt)
    rec = simulate(cfg, t, i, s, 60.0)
    b = rec.beats
    assert np.all(b["vagal_bpm"][b["t_s"] <= on[0] + cfg.latency_s] == 0.0)
    assert b["vagal_bpm"][b["t_s"] > on[0] + cfg.latency_s + 1.0].max() > 3.0


def test_response_grows_with_intensity_relative_to_the_motor_threshold():
    subj = HBCSubject(SubjectConfig(seed=2, best_site="F5"))
    rmt = subj.truth.rmt_pct
    r = [subj.response_bpm("F5", f * rmt) for f in (0.5, 0.8, 1.0, 1.2)]
    assert r == sorted(r) and r[0] < 0.2 * r[-1]
    assert r[-1] <= subj.truth.max_decel_bpm
    assert subj.response_bpm("F5", 1.2 * rmt) > subj.response_bpm("AF3", 1.2 * rmt)
    sham = HBCSubject(SubjectConfig(seed=2, coupling_scale=0.0))
    assert sham.truth.best_site is None
    assert max(sham.response_bpm(s, 80.0) for s in DASH_SITES) == 0.0


def test_tms_artifacts_sit_on_the_pulse_samples():
    cfg = SubjectConfig(seed=3, artifact_mv=1.5, ecg_snr_db=None)
    clean_cfg = SubjectConfig(seed=3, artifact_mv=0.0, ecg_snr_db=None)
    t, i, s = train_pulses([10.0], [60.0], "F3")
    art = simulate(cfg, t, i, s, 20.0).ecg_mv - simulate(clean_cfg, t, i, s, 20.0).ecg_mv
    idx = np.rint(t * FS).astype(int)
    np.testing.assert_allclose(art[idx], 1.5)
    assert np.abs(art[: idx[0]]).max() == 0.0
    assert np.abs(art[idx[-1] + 100 :]).max() == 0.0


def test_faint_mode_drops_below_45_bpm_with_asystole():
    cfg = SubjectConfig(seed=4, faint_after_pulses=100, faint_asystole_s=4.0)
    rmt = HBCSubject(cfg).truth.rmt_pct
    t, i, s, _, _ = _schedule("F3", rmt, n=4)
    rec = simulate(cfg, t, i, s, 100.0)
    assert rec.faint_onset_s == pytest.approx(t[99] + cfg.latency_s)
    rr = np.diff(rec.rpeaks) / FS
    assert rr.max() >= 4.0  # the asystole
    after = rec.beats["hr_bpm"][rec.beats["t_s"] > rec.faint_onset_s + 15]
    assert after.size and after.max() < 45.0
    # the detector sees it too (what the cardiac stop rule will read)
    peaks = detect_rpeaks(rec.ecg_mv, FS)
    late = peaks[peaks > (rec.faint_onset_s + 15) * FS]
    assert 60.0 * FS / np.median(np.diff(late)) < 45.0


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="unknown"):
        SubjectConfig(sites=("F3", "Q9"))
    with pytest.raises(ValueError, match="latency_s"):
        SubjectConfig(latency_s=0.5)
    with pytest.raises(ValueError, match="best_site"):
        SubjectConfig(best_site="Cz")
    with pytest.raises(ValueError, match="time order"):
        HBCSubject(SubjectConfig()).add_pulses([2.0, 1.0], [50.0, 50.0], "F3")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_heart_rate_answers_real_pulses_over_lsl_and_truth_is_published(source_id):
    stim = SimulatedStimulator(source_id=f"{source_id}-stim")
    stim.connect()
    cfg = SubjectConfig(seed=1, best_site="F3", noise_scale=0.0, ecg_snr_db=None, rmt_pct=40.0)
    try:
        with HBCSubjectSession(cfg, stim.source_id, prefix=source_id) as subj:
            info = resolve_source(subj.source_id("ecg-truth"), timeout=10.0)
            inlet = pylsl.StreamInlet(info)
            inlet.open_stream(10.0)
            desc = inlet.info().desc()
            assert desc.child_value("best_site") == "F3"
            assert json.loads(desc.child_value("coupling"))["F3"] == 1.0
            assert float(desc.child_value("rmt_pct")) == pytest.approx(40.0)
            ecg = pylsl.StreamInlet(resolve_source(subj.source_id("ecg"), timeout=10.0))
            ecg.open_stream(10.0)
            stim.arm()
            stim.set_intensity(60.0)  # 150 % rMT
            stim.configure_train(TrainSpec(frequency_hz=10.0, n_pulses=50))
            time.sleep(3.0)
            t_fire = stim.fire_train(site="F3", reason="test")
            stim.wait_train(10.0)
            rows, stamps = [], []
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline and (not stamps or stamps[-1] < t_fire + 9.0):
                d, ts = inlet.pull_chunk(timeout=0.5)
                rows += d
                stamps += ts
            subj.check()
            assert subj.n_pulses == 50 and subj.late_pulses == 0
            rows, stamps = np.asarray(rows), np.asarray(stamps)
            before = rows[stamps < t_fire + cfg.latency_s, 1]
            during = rows[(stamps > t_fire + 3.0) & (stamps < t_fire + 8.0), 1]
            assert np.all(rows[stamps < t_fire + cfg.latency_s, 2] == 0.0)
            assert during.min() < before.mean() - 5.0
            assert rows[(stamps > t_fire + 3.0), 2].max() > 5.0
            # the artifacts of the real pulses are in the ECG stream at the pulse times
            x, te = ecg.pull_chunk(timeout=1.0, max_samples=100000)
            x, te = np.asarray(x)[:, 0], np.asarray(te)
            for p in stim.pulses[::10]:
                k = int(np.argmin(np.abs(te - p.t_lsl)))
                assert abs(te[k] - p.t_lsl) < 1.5 / FS
                assert x[k] > 0.8  # the 1 mV spike on top of the ECG
    finally:
        stim.close()
