"""The simulated exposure client: deterministic, consistent truth, markers per the schema,
published over real LSL and recorded; the band and alert acceptance on a short session."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.stats import spearmanr

from stimloop.devices.sim.exposure import (
    TRUTH_HZ,
    ExposureScenario,
    publish_exposure,
    score_bands,
    simulate_exposure,
    write_exposure_xdf,
)
from stimloop.dsp.arousal import arousal_timeline, calibrate
from stimloop.dsp.exposure import HYPER, HYPO, WITHIN, eda_tables, hr_series
from stimloop.loop.exposure_markers import parse_exercises
from stimloop.stream.recorder import Recorder
from stimloop.stream.xdf import read_xdf

SHORT = dict(rest_s=150.0, n_exercises=3, exercise_s=100.0, gap_s=50.0)
TINY = dict(rest_s=90.0, n_exercises=1, exercise_s=40.0, hold_s=20.0, gap_s=0.0, tail_s=15.0)


@pytest.fixture(scope="module")
def short():
    return simulate_exposure(ExposureScenario(seed=0, **SHORT))


def test_simulation_is_deterministic_and_seeded():
    a = simulate_exposure(ExposureScenario(seed=1, **TINY))
    b = simulate_exposure(ExposureScenario(seed=1, **TINY))
    c = simulate_exposure(ExposureScenario(seed=2, **TINY))
    assert np.array_equal(a.eda_us, b.eda_us) and np.array_equal(a.ecg_mv, b.ecg_mv)
    assert a.markers == b.markers and np.array_equal(a.truth.index, b.truth.index)
    assert not np.array_equal(a.eda_us, c.eda_us)
    sc = a.scenario
    assert a.eda_us.size == round(sc.duration_s * sc.eda_fs)
    assert a.ecg_mv.size == round(sc.duration_s * sc.ecg_fs)
    with pytest.raises(ValueError, match="multiple of 2 Hz"):
        ExposureScenario(eda_fs=101.0)


def test_markers_follow_the_schema_and_match_the_truth(short):
    log = parse_exercises(short.markers, strict=True)
    tr = short.truth
    assert log.calibration() == (10.0, short.scenario.rest_s - 5.0)
    np.testing.assert_array_equal(log.intervals(), tr.intervals)
    np.testing.assert_array_equal(log.cue_times(), tr.cue_t)
    for k, e in enumerate(log.exercises):
        assert e.label == f"elevator ride {k + 1}"
        assert e.expectancy == 85 - 12 * k and e.outcome == 10
        assert e.expectancy_violation == 75 - 12 * k
        assert 0 <= e.suds_start <= e.suds_peak <= 100 and e.learned
    # The arousal habituates across repetitions, in the design and in the physiology.
    assert np.all(np.diff(tr.peaks) < 0)
    assert spearmanr(np.arange(3), tr.expressed_peaks).statistic < 0


def test_truth_is_consistent(short):
    tr, b = short.truth, short.scenario.bands
    assert tr.t.size == round(short.scenario.duration_s * TRUTH_HZ)
    # Band: plain where the index is clear of the edges' hysteresis.
    x = tr.index
    assert np.all(tr.band[x > b.high + b.hysteresis] == HYPER)
    assert np.all(tr.band[x < b.low - b.hysteresis] == HYPO)
    clear = (x > b.low + b.hysteresis) & (x < b.high - b.hysteresis)
    assert np.all(tr.band[clear] == WITHIN)
    # Crossings are exactly the band's changes.
    ch = np.flatnonzero(np.diff(tr.band) != 0) + 1
    np.testing.assert_array_equal(tr.crossings[:, 0], tr.t[ch])
    # Episodes: above high at the start, due alert_after_s later when long enough.
    assert len(tr.alert_due_t) >= 1  # the client does cross above the window
    for start, end, due, peak in tr.episodes:
        i = round(start * TRUTH_HZ)
        assert x[i] > b.high and x[i - 1] <= b.high and peak > b.high
        assert np.isnan(due) or (due == pytest.approx(start + b.alert_after_s) and end >= due)
    # Each cue evoked an SCR 1-3 s later.
    lat = tr.cue_scr_onset_t - tr.cue_t
    assert np.all((lat >= 1.0) & (lat <= 3.0 + 1e-9))
    assert np.all(tr.exercise[np.round(tr.cue_t * TRUTH_HZ).astype(int)] == tr.cue_exercise)


def test_band_and_alerts_follow_the_truth(short):
    """Acceptance (short session; bench/exposure.py measures 5 full sessions): the band
    matches the truth at >= 95 % of samples outside transitions, and every alert due
    fires within the dwell time + 1 s."""
    sc = short.scenario
    scrs, level = eda_tables(short.eda_us, sc.eda_fs, 0.0, rate_hz=10.0)
    hr = hr_series(short.ecg_mv, sc.ecg_fs, 0.0)
    log = parse_exercises(short.markers)
    cal = calibrate(level, scrs, hr, *log.calibration(), params=sc.arousal)
    tl = arousal_timeline(level, scrs, hr, cal, sc.arousal, sc.bands)
    s = score_bands(short.truth, tl["t"], tl["state"], tl["alert"], cal.end_t)
    assert s.agreement_outside >= 0.95 and s.agreement_unambiguous >= 0.95
    assert s.excluded_fraction < 0.4  # most samples are scored: the criterion is not empty
    assert s.alerts_due >= 2 and s.alerts_on_time == s.alerts_due
    assert max(s.alert_delays_s) <= sc.bands.min_dwell_s + 1.0
    assert s.est_changes < s.truth_changes + 5  # no flicker


@pytest.mark.timeout(120)
def test_published_over_lsl_and_recorded_it_is_the_same_session(tmp_path, source_id):
    sim = simulate_exposure(ExposureScenario(seed=3, **TINY))
    speed = 25.0
    player = publish_exposure(
        sim, source_id, speed=speed, directory=tmp_path, wait_for_consumers_s=30.0
    )
    expected = {sid: len(s) for sid, s in zip(player.source_ids, player.streams, strict=True)}
    assert set(expected) == {
        f"{source_id}-eda",
        f"{source_id}-ecg",
        f"{source_id}-exposure-markers",
        f"{source_id}-exposure-truth",
    }
    out = tmp_path / "recorded.xdf"
    try:
        with Recorder(out, player.source_ids, resolve_timeout=15.0) as rec:
            assert player.wait(timeout=sim.scenario.duration_s / speed + 60)
            deadline = time.monotonic() + 30
            while True:
                got = {s.source_id: s.samples for s in rec.stats()}
                if all(got.get(k, 0) >= n for k, n in expected.items()):
                    break
                assert time.monotonic() < deadline, f"recorder got {got}, expected {expected}"
                time.sleep(0.05)
    finally:
        player.stop()
    streams = {s.text("source_id"): s for s in read_xdf(out).streams}
    eda = streams[f"{source_id}-eda"]
    np.testing.assert_array_equal(eda.time_series[:, 0], sim.eda_us.astype(np.float32))
    mk = streams[f"{source_id}-exposure-markers"]
    assert mk.text("type") == "Markers"
    assert [m[0] for m in mk.time_series] == [m for _, m in sim.markers]
    # Times on the LSL clock: the player's start plus the session time over the speed.
    t_rel = (mk.time_stamps - eda.time_stamps[0]) * speed
    np.testing.assert_allclose(t_rel, [t for t, _ in sim.markers], atol=1e-3)
    log = parse_exercises(list(zip(mk.time_stamps, mk.time_series, strict=True)), strict=True)
    assert len(log.exercises) == 1 and len(log.exercises[0].cues) == 3
    truth = streams[f"{source_id}-exposure-truth"]
    np.testing.assert_array_equal(truth.time_series[:, 3], sim.truth.band)
    # The file the publisher wrote is itself a valid recording of the session.
    src = read_xdf(tmp_path / f"{source_id}.xdf")
    assert src.damage is None and len(src.streams) == 4


def test_write_exposure_xdf_keeps_the_scenario(tmp_path):
    sim = simulate_exposure(ExposureScenario(seed=5, **TINY))
    path = write_exposure_xdf(sim, tmp_path / "s.xdf", "p")
    streams = {s.text("source_id"): s for s in read_xdf(path).streams}
    desc = streams["p-exposure-truth"].info.find("desc")
    assert '"seed": 5' in desc.findtext("scenario")
    assert streams["p-ecg"].rate_hz == sim.scenario.ecg_fs
