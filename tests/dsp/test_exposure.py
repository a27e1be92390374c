"""Per-exercise physiology: known answers on hand-built inputs, invalid EDA, no ECG,
live == offline (simulated session and the systole recording), bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from stimloop.devices.sim.exposure import ExposureScenario, simulate_exposure
from stimloop.dsp.arousal import arousal_timeline, calibrate
from stimloop.dsp.eda import SCRDetector, detect_scr, event_related_scr
from stimloop.dsp.exposure import (
    CUE_DTYPE,
    CueResponses,
    EDALevel,
    ExerciseParams,
    ExerciseTracker,
    ExposureInputError,
    SCRTable,
    Series,
    compare_sessions,
    cue_responses,
    cue_summary,
    eda_tables,
    exercise_physiology,
    expectancy_violation,
    habituation_curve,
    hr_series,
)
from stimloop.loop.exposure_markers import parse_exercises

# ------------------------------------------------------------------ hand-built inputs
# Written apart from the code under test: every figure below is computed by hand.
T0 = 5000.0  # LSL clock offset: nothing may assume the session starts at 0


def level_series(scl_in: float = 5.4, ripple: bool = True) -> EDALevel:
    """10 Hz, 0-300 s: SCL 5.0 µS, 5.4 µS during [100, 160) s; the phasic part carries a
    zero-mean ripple (so the smoothed EDA is never flat)."""
    t = np.arange(3000) / 10.0
    scl = np.where((t >= 100) & (t < 160), scl_in, 5.0)
    ph = 0.01 * (1 + np.sin(2 * np.pi * t / 2.0)) if ripple else np.zeros_like(t)
    return EDALevel(T0 + t, scl, ph)


def scr_table() -> SCRTable:
    onset = np.array([95.0, 105.0, 112.0, 120.0, 130.0, 160.0])
    amp = np.array([0.5, 0.1, 0.25, 0.2, 0.3, 0.7])
    return SCRTable(T0 + onset, T0 + onset + 1.5, amp, T0 + onset + 2.5, np.full(6, 1.5))


def heart() -> Series:
    """4 Hz: 70 bpm, 80 bpm in [100, 160) s with 90 bpm in [130, 140) s."""
    t = np.arange(1200) / 4.0
    hr = np.where((t >= 100) & (t < 160), 80.0, 70.0)
    hr[(t >= 130) & (t < 140)] = 90.0
    return Series(T0 + t, hr)


def one(**kw):
    args = dict(
        scrs=scr_table(), level=level_series(), hr=heart(), cue_t=T0 + np.array([110.0, 140.0])
    )
    args.update(kw)
    return exercise_physiology(np.array([[T0 + 100.0, T0 + 160.0]]), **args)[0]


def test_figures_of_a_hand_built_exercise():
    f = one()
    assert f.issues == ()
    assert f.eda_valid and f.eda_lost_s == 0.0 and f.duration_s == 60.0
    # SCRs with onset in [100, 160): 105, 112, 120, 130 (95 before, 160 at the end).
    assert f.scr_count == 4
    assert f.scr_rate_per_min == pytest.approx(4.0)
    assert f.scr_amp_sum_us == pytest.approx(0.85)
    # Baseline [70, 100) s: SCL 5.0; exercise 5.4.
    assert f.scl_baseline_us == pytest.approx(5.0)
    assert f.scl_change_us == pytest.approx(0.4)
    assert f.scl_peak_change_us == pytest.approx(0.4)
    # HR: mean (50 s x 80 + 10 s x 90) / 60 s; peak 90 (a 5 s window inside the plateau).
    assert f.hr_valid and f.hr_baseline_bpm == pytest.approx(70.0)
    assert f.hr_mean_bpm == pytest.approx((50 * 80 + 10 * 90) / 60)
    assert f.hr_change_bpm == pytest.approx((50 * 80 + 10 * 90) / 60 - 70)
    assert f.hr_peak_bpm == pytest.approx(90.0) and f.hr_peak_change_bpm == pytest.approx(20.0)
    assert T0 + 130 <= f.hr_peak_t <= T0 + 140
    # Cue at 110 s: first SCR with onset 111-114 s is the one at 112 s (0.25 µS, 2 s).
    # Cue at 140 s: no onset in 141-144 s.
    c = f.cues
    assert c["exercise"].tolist() == [1, 1] and c["valid"].all()
    assert c["responded"].tolist() == [True, False]
    assert c["latency_s"][0] == pytest.approx(2.0) and c["amplitude_us"][0] == 0.25
    assert c["onset_t"][0] == pytest.approx(T0 + 112.0) and np.isnan(c["amplitude_us"][1])
    assert f.n_cues == 2 and f.n_cue_responses == 1 and f.cue_amp_mean_us == 0.25
    # No arousal index or band given: missing, not zero.
    assert all(math.isnan(v) for v in (f.arousal_peak, f.frac_hyper, f.time_hyper_s))
    d = f.to_dict()
    assert d["arousal_peak"] is None and d["cues"][1]["amplitude_us"] is None


def test_arousal_and_band_figures():
    t = T0 + np.arange(3000) / 10.0
    index = np.where((t >= T0 + 120) & (t < T0 + 130), 6.0, 2.0)
    state = np.where(index > 4, 2, 1).astype(float)
    state[(t >= T0 + 150) & (t < T0 + 160)] = -1  # EDA lost there: not counted
    f = one(arousal=Series(t, index), band=Series(t, state))
    assert f.arousal_peak == 6.0 and f.arousal_peak_t == pytest.approx(T0 + 120.0)
    assert f.arousal_mean == pytest.approx((10 * 6 + 50 * 2) / 60)
    assert f.frac_hyper == pytest.approx(10 / 50) and f.frac_within == pytest.approx(40 / 50)
    assert f.frac_hypo == 0.0 and f.time_hyper_s == pytest.approx(10.0)


def test_eda_loss_marks_the_exercise_invalid_not_zero():
    lv = level_series()
    scl = lv.scl_us.copy()
    scl[1200:1220] = np.nan  # 2 s of lost EDA at 120 s
    f = one(level=EDALevel(lv.t, scl, lv.phasic_us))
    assert not f.eda_valid and f.eda_lost_s == pytest.approx(2.0)
    for name in ("scr_count", "scr_rate_per_min", "scr_amp_sum_us", "scl_change_us"):
        assert math.isnan(getattr(f, name)), name
    assert "EDA invalid: 2.0 s NaN" in f.issues[0]
    assert not f.cues["valid"].any() and f.n_cues == 0
    assert f.hr_valid  # the HR figures do not depend on the EDA
    # A short loss (0.5 s) is tolerated and reported.
    scl = lv.scl_us.copy()
    scl[1200:1205] = np.nan
    g = one(level=EDALevel(lv.t, scl, lv.phasic_us))
    assert g.eda_valid and g.eda_lost_s == pytest.approx(0.5) and g.scr_count == 4


def test_eda_flatline_marks_the_exercise_invalid():
    # A stuck sensor: the smoothed EDA (SCL + phasic) is constant inside the exercise.
    f = one(level=level_series(ripple=False))
    assert not f.eda_valid and "flatline" in f.issues[0]
    assert f.eda_lost_s == pytest.approx(60.0)
    lv = level_series(ripple=False)  # without the phasic part, the SCL alone is looked at
    assert not one(level=EDALevel(lv.t, lv.scl_us)).eda_valid
    # Flat for 3 s only (shorter than flat_s = 5 s): valid.
    lv = level_series()
    ph = lv.phasic_us.copy()
    ph[1200:1230] = ph[1200]
    assert one(level=EDALevel(lv.t, lv.scl_us, ph)).eda_valid


def test_level_series_ending_early_counts_as_lost():
    lv = level_series()
    f = one(level=lv.slice(0, 1500))  # ends at 150 s, 10 s before the exercise does
    assert not f.eda_valid and "not covered" in f.issues[0]


def test_no_ecg_gives_missing_hr_figures():
    f = one(hr=None)
    assert not f.hr_valid
    for name in ("hr_mean_bpm", "hr_change_bpm", "hr_peak_bpm", "hr_peak_change_bpm"):
        assert math.isnan(getattr(f, name)), name
    assert "no ECG in this session: HR figures missing" in f.issues
    assert f.eda_valid and f.scr_count == 4  # EDA figures unaffected
    # An ECG that is invalid for most of the exercise: HR missing, said why.
    h = heart()
    v = h.values.copy()
    v[(h.t >= T0 + 110) & (h.t < T0 + 150)] = np.nan
    g = one(hr=Series(h.t, v))
    assert not g.hr_valid and "HR valid for 33 %" in g.issues[0]


def test_baseline_never_reaches_into_the_previous_exercise():
    iv = T0 + np.array([[40.0, 90.0], [100.0, 160.0]])
    _, f2 = exercise_physiology(iv, scrs=scr_table(), level=level_series(), hr=heart())
    # Exercise 2's baseline is [90, 100) s only (10 s >= 5 s).
    assert f2.scl_baseline_us == pytest.approx(5.0) and f2.issues == ()
    iv = T0 + np.array([[40.0, 97.0], [100.0, 160.0]])
    _, f2 = exercise_physiology(iv, scrs=scr_table(), level=level_series(), hr=heart())
    assert math.isnan(f2.scl_change_us) and math.isnan(f2.hr_change_bpm)
    assert "baseline 3.0 s is shorter than 5 s" in f2.issues[0]
    assert not math.isnan(f2.scl_mean_us)  # the exercise's own figures remain


@pytest.mark.parametrize(
    "intervals, match",
    [
        ([[10.0, 5.0]], r"exercise 1 ends at 5.0 s, not after its start 10.0 s"),
        ([[1.0, math.nan]], r"exercise 1 has a non-finite start or end"),
        ([[1.0, 10.0], [5.0, 20.0]], r"exercise 2 starts at 5.0 s, before exercise 1 ends"),
        ([1.0, 2.0, 3.0], r"intervals must have shape \(n, 2\)"),
    ],
)
def test_bad_intervals_are_named(intervals, match):
    with pytest.raises(ExposureInputError, match=match):
        exercise_physiology(np.array(intervals), scrs=scr_table(), level=level_series())


def test_bad_series_and_params_are_named():
    with pytest.raises(ExposureInputError, match=r"times must not decrease; t\[2\] = 1.0 s"):
        Series(np.array([0.0, 2.0, 1.0]), np.zeros(3))
    with pytest.raises(ExposureInputError, match=r"time nan at position 1 is not finite"):
        Series(np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(ExposureInputError, match=r"scl_us must have shape \(3,\)"):
        EDALevel(np.arange(3.0), np.zeros(4))
    with pytest.raises(ExposureInputError, match="SCR onset_t contains NaN"):
        SCRTable(np.array([np.nan]), *(np.zeros(1),) * 4)
    with pytest.raises(ExposureInputError, match="baseline_s must be > 0 s, got 0"):
        ExerciseParams(baseline_s=0)
    with pytest.raises(ExposureInputError, match="min_hr_coverage must be in"):
        ExerciseParams(min_hr_coverage=1.5)
    with pytest.raises(ExposureInputError, match="cue times must be finite"):
        cue_responses(scr_table(), [np.inf])


# ------------------------------------------------------------------ across exercises
def _with(f, **kw):
    return dataclasses.replace(f, **kw)


def test_habituation_curve_expectancy_violation_and_sessions():
    base = one()
    figs = [
        _with(base, number=k + 1, arousal_peak=v) for k, v in enumerate([8.0, 6.0, np.nan, 4.0])
    ]
    c = habituation_curve(figs)
    assert c.number.tolist() == [1, 2, 3, 4] and c.first == 8.0 and c.last == 4.0
    assert c.slope_per_exercise == pytest.approx(np.polyfit([1, 2, 4], [8, 6, 4], 1)[0])
    assert c.rho == pytest.approx(-1.0)
    with pytest.raises(ExposureInputError, match="measure 'nope' is not an exercise figure"):
        habituation_curve(figs, "nope")
    rows, rho = expectancy_violation([90, 70, 50, 30], [10, 10, np.nan, 20], figs)
    assert rows["violation"][:2].tolist() == [80, 60] and np.isnan(rows["violation"][2])
    assert rows["response"][0] == 8.0 and rho == pytest.approx(1.0)  # 80>60>10 vs 8>6>4
    with pytest.raises(ExposureInputError, match="expectancy rating 120 is outside 0-100"):
        expectancy_violation([120, 0, 0, 0], [0, 0, 0, 0], figs)
    later = [_with(f, arousal_peak=f.arousal_peak - 2) for f in figs]
    a, b = compare_sessions({"day 1": figs, "day 2": later})
    assert (a.name, a.n_exercises, a.n_valid, a.first, a.last) == ("day 1", 4, 3, 8.0, 4.0)
    assert b.mean_change_from_first_session == pytest.approx(-2.0)
    assert b.first_change_from_first_session == pytest.approx(-2.0)


def test_cue_summary_groups():
    rows = cue_responses(scr_table(), T0 + np.array([110.0, 140.0, 103.0]))
    s = cue_summary(rows, np.array([1, 2, 1]))
    assert s["1"]["n"] == 2 and s["1"]["responded"] == 2  # 103 s -> 105 s (0.1 µS)
    assert s["1"]["amplitude_mean_us"] == pytest.approx(0.175)
    assert s["2"]["responded"] == 0 and s["2"]["amplitude_mean_us"] is None
    assert cue_summary(rows)["all"]["n"] == 3


# ------------------------------------------------------------------ live == offline
@pytest.fixture(scope="module")
def short_session():
    sc = ExposureScenario(seed=4, rest_s=150.0, n_exercises=3, exercise_s=100.0, gap_s=50.0)
    sim = simulate_exposure(sc)
    scrs, level = eda_tables(sim.eda_us, sc.eda_fs, T0, rate_hz=10.0)
    hr = hr_series(sim.ecg_mv, sc.ecg_fs, T0)
    log = parse_exercises([(t + T0, m) for t, m in sim.markers])
    cal = calibrate(level, scrs, hr, *log.calibration(), params=sc.arousal)
    tl = arousal_timeline(level, scrs, hr, cal, sc.arousal, sc.bands)
    return sim, scrs, level, hr, log, tl


def _same(a, b) -> bool:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "cues":
            ok = all(
                np.array_equal(x[n], y[n], equal_nan=x[n].dtype.kind == "f")
                for n in CUE_DTYPE.names
            )
        elif isinstance(x, float):
            ok = (math.isnan(x) and math.isnan(y)) or x == y
        else:
            ok = x == y
        if not ok:
            return False
    return True


@pytest.mark.parametrize("seed", [0, 1])
def test_tracker_live_equals_offline(short_session, seed):
    _, scrs, level, hr, log, tl = short_session
    ar, band = Series(tl["t"], tl["index"]), Series(tl["t"], tl["state"])
    offline = exercise_physiology(
        log.intervals(), scrs=scrs, level=level, hr=hr, cue_t=log.cue_times(), arousal=ar, band=band
    )
    assert len(offline) == 3 and all(f.eda_valid and f.hr_valid for f in offline)
    tr = ExerciseTracker()
    events = sorted(
        [(e.start_t, "start") for e in log.exercises]
        + [(e.end_t, "end") for e in log.exercises]
        + [(c.t, "cue") for e in log.exercises for c in e.cues]
    )
    rng = np.random.default_rng(seed)
    live, i, k, prev = [], 0, 0, -np.inf
    while i < len(level):
        j = min(len(level), i + int(rng.integers(1, 80)))
        now = level.t[j - 1]
        while k < len(events) and events[k][0] <= now:
            t, what = events[k]
            {"start": tr.start_exercise, "end": tr.end_exercise, "cue": tr.add_cue}[what](t)
            k += 1
        tr.add_scrs(scrs.take((scrs.confirmed_t > prev) & (scrs.confirmed_t <= now)))
        tr.add_level(level.slice(i, j))
        sel = (hr.t > prev) & (hr.t <= now)
        tr.add_hr(Series(hr.t[sel], hr.values[sel]))
        tr.add_arousal(Series(ar.t[i:j], ar.values[i:j]), Series(band.t[i:j], band.values[i:j]))
        live += tr.update()
        prev, i = now, j
    assert [f.number for f in live] == [1, 2, 3]
    for a, b in zip(live, offline, strict=True):
        assert _same(a, b), (a, b)
    # The tracker kept only what it still needs, not the whole session.
    assert len(tr._level[0]) < len(level) / 3


def test_tracker_waits_for_complete_data_and_refuses_bad_order():
    tr = ExerciseTracker(use_hr=False)
    tr.start_exercise(T0 + 100.0)
    with pytest.raises(ExposureInputError, match="still open"):
        tr.start_exercise(T0 + 101.0)
    tr.end_exercise(T0 + 160.0)
    lv = level_series()
    tr.add_scrs(scr_table())
    tr.add_level(lv.slice(0, 1700))  # up to 170 s: settle time (11 s) not reached
    assert tr.update() == []
    tr.add_level(lv.slice(1700, 1800))
    (f,) = tr.update()
    assert f.scr_count == 4 and not f.hr_valid and "no ECG" in f.issues[-1]
    with pytest.raises(ExposureInputError, match="comes before the last one given"):
        tr.add_level(lv.slice(0, 10))
    with pytest.raises(ExposureInputError, match="without an open exercise"):
        tr.end_exercise(T0 + 200.0)


def test_systole_cue_responses_live_equal_offline_per_code(shared_data):
    """Each systole event is a cue; evoked SCRs per code, live in chunks == offline."""
    d = np.load(shared_data / "eda" / "systole_task1_1000hz.npz")
    fs = float(d["fs"])
    x = d["eda"].astype(np.float64)
    idx = np.flatnonzero(d["stim"])
    codes = d["stim"][idx].astype(int)
    t = T0 + np.arange(x.size) / fs
    scrs, _ = eda_tables(x, fs, T0)
    offline = cue_responses(scrs, t[idx])
    # The time-based rule gives what the index-based one gives on the same SCRs.
    er = event_related_scr(detect_scr(x, fs), idx, fs)
    assert offline["responded"].tolist() == er["responded"].tolist()
    np.testing.assert_allclose(offline["latency_s"], er["latency"], atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(offline["amplitude_us"], er["amplitude"])
    det, live_cues = SCRDetector(fs), CueResponses()
    rng = np.random.default_rng(3)
    parts, i, k = [], 0, 0
    while i < x.size:
        j = min(x.size, i + int(rng.integers(1, 1000)))
        while k < idx.size and idx[k] < j:
            live_cues.add_cue(float(t[idx[k]]))
            k += 1
        new = det.update(x[i:j], t[i:j])
        parts.append(live_cues.update(SCRTable.from_events(new, t[new["confirmed"]]), t[j - 1]))
        i = j
    parts.append(live_cues.update(SCRTable.empty(), t[-1] + 60.0))
    live = np.concatenate(parts)
    live = live[np.argsort(live["t"], kind="stable")]
    assert len(live) == 72
    for name in CUE_DTYPE.names:
        np.testing.assert_array_equal(live[name], offline[name])
    per_code = cue_summary(live, codes)
    assert per_code == cue_summary(offline, codes)
    assert {c: s["n"] for c, s in per_code.items()} == {"1": 36, "2": 36}
    assert sum(s["responded"] for s in per_code.values()) == int(er["responded"].sum()) > 10


def test_live_cues_sharing_a_millisecond_are_each_answered():
    on = np.array([T0 + 12.0])
    table = SCRTable(on, on + 1, np.array([0.3]), on + 2, np.array([1.0]))
    live = CueResponses()
    for t in (T0 + 10.0, T0 + 10.0, T0 + 10.0004):
        live.add_cue(t)
    got = live.update(table, T0 + 14.0)
    want = cue_responses(table, T0 + np.array([10.0, 10.0, 10.0004]))
    for name in CUE_DTYPE.names:
        np.testing.assert_array_equal(got[name], want[name])
    assert got["responded"].all()
