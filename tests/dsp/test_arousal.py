"""The arousal index and its band: known answers, a second implementation of the band
rules, hysteresis, dwell, alert timing, causality, chunking, live == offline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stimloop.dsp.arousal import (
    ArousalMonitor,
    ArousalParams,
    BandParams,
    BandStateMachine,
    arousal_timeline,
    band_states,
    calibrate,
    scr_rate_at,
)
from stimloop.dsp.exposure import (
    HYPER,
    HYPO,
    UNKNOWN,
    WITHIN,
    EDALevel,
    ExposureInputError,
    SCRTable,
    Series,
)

T0 = 7000.0


# ------------------------------------------------------------------ a second implementation
class ReferenceBand:
    """The band rules of docs/exposure.md, written again from the text, sample by sample."""

    def __init__(self, p: BandParams) -> None:
        self.p = p
        self.state = UNKNOWN
        self.pending = None
        self.pending_since = 0.0
        self.above_since = None
        self.alert = False

    def step(self, t: float, x: float) -> tuple[int, bool]:
        p = self.p
        if math.isnan(x):
            self.state, self.pending, self.above_since, self.alert = UNKNOWN, None, None, False
            return self.state, self.alert
        if self.above_since is None and x > p.high:
            self.above_since = t
        elif self.above_since is not None and x < p.high - p.hysteresis:
            self.above_since = None
        if self.state == UNKNOWN:
            self.state = HYPER if x > p.high else HYPO if x < p.low else WITHIN
            self.pending = None
        else:
            up_hyper, up_within = x > p.high + p.hysteresis, x > p.low + p.hysteresis
            down_hypo, down_within = x < p.low - p.hysteresis, x < p.high - p.hysteresis
            want = {
                HYPO: HYPER if up_hyper else WITHIN if up_within else HYPO,
                WITHIN: HYPER if up_hyper else HYPO if down_hypo else WITHIN,
                HYPER: HYPO if down_hypo else WITHIN if down_within else HYPER,
            }[self.state]
            if want == self.state:
                self.pending = None
            else:
                if want != self.pending:
                    self.pending, self.pending_since = want, t
                if t - self.pending_since >= p.min_dwell_s:
                    self.state, self.pending = want, None
        if self.state != HYPER:
            self.alert = False
        elif (
            not self.alert
            and self.above_since is not None
            and t - self.above_since >= p.alert_after_s
        ):
            self.alert = True
        return self.state, self.alert


def random_index(seed: int, n: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + np.cumsum(rng.uniform(0.05, 0.15, n))  # irregular sampling
    x = np.cumsum(rng.normal(0, 0.15, n)) * 0.5 + 2.5 + 2.5 * np.sin(np.arange(n) / 300)
    for start in rng.integers(0, n - 50, 6):
        x[start : start + rng.integers(1, 40)] = np.nan
    return t, x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_band_machine_equals_the_reference_rules(seed):
    p = BandParams(low=1.0, high=4.0, hysteresis=0.3, min_dwell_s=2.0, alert_after_s=10.0)
    t, x = random_index(seed)
    ev = band_states(t, x, p)
    ref = ReferenceBand(p)
    expect = np.array([ref.step(ti, xi) for ti, xi in zip(t, x, strict=True)], dtype=object)
    assert ev.state.tolist() == [int(s) for s in expect[:, 0]]
    assert ev.alert.tolist() == [bool(a) for a in expect[:, 1]]
    assert len(ev.changes) > 10 and ev.alerts.size > 0  # the walk exercised every rule


@pytest.mark.parametrize("seed", [3, 4])
def test_band_machine_is_chunk_invariant(seed):
    t, x = random_index(seed)
    whole = band_states(t, x)
    m = BandStateMachine()
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, t.size), 200, replace=False))
    parts = [m.update(a, b) for a, b in zip(np.split(t, cuts), np.split(x, cuts), strict=True)]
    assert np.array_equal(np.concatenate([p.state for p in parts]), whole.state)
    assert np.array_equal(np.concatenate([p.alert for p in parts]), whole.alert)
    assert np.array_equal(np.concatenate([p.changes for p in parts]), whole.changes)
    assert np.array_equal(np.concatenate([p.alerts for p in parts]), whole.alerts)


def test_band_machine_is_causal():
    t, x = random_index(5)
    y = x.copy()
    cut = 3000
    y[cut:] = np.random.default_rng(9).normal(6, 3, x.size - cut)
    a, b = band_states(t, x), band_states(t, y)
    assert np.array_equal(a.state[:cut], b.state[:cut])
    assert np.array_equal(a.alert[:cut], b.alert[:cut])
    assert not np.array_equal(a.state, b.state)


def step_series(values_by_time, dt=0.1, end=60.0):
    t = np.arange(0, end, dt)
    x = np.zeros_like(t)
    for (a, b), v in values_by_time.items():
        x[(t >= a - 1e-9) & (t < b - 1e-9)] = v
    return T0 + t, x


def test_dwell_ignores_short_excursions_and_switches_after_exactly_the_dwell():
    p = BandParams(min_dwell_s=3.0, hysteresis=0.25)
    t, x = step_series({(0, 60): 2.0, (10, 12.9): 6.0, (20, 60): 6.0})
    ev = band_states(t, x, p)
    assert ev.state[t < T0 + 20].tolist() == [WITHIN] * int(np.sum(t < T0 + 20))
    assert ev.changes.tolist() == [
        [T0, UNKNOWN, WITHIN],
        [pytest.approx(T0 + 23.0), WITHIN, HYPER],
    ]


def test_hysteresis_stops_flicker_at_an_edge():
    p = BandParams(hysteresis=0.25, min_dwell_s=0.0)
    t = T0 + np.arange(0, 120, 0.1)
    x = 4.0 + 0.2 * np.sin(2 * np.pi * t / 3.0)  # within +-0.2 of high, for 2 min
    x[:50] = 5.0  # enter hyper first
    ev = band_states(t, x, p)
    assert np.all(ev.state == HYPER)  # never below high - 0.25: stays
    plain = band_states(t, x, BandParams(hysteresis=0.0, min_dwell_s=0.0))
    assert len(plain.changes) > 70  # the plain band flickers all along


def test_alert_after_the_set_time_above_the_window():
    p = BandParams(min_dwell_s=3.0, alert_after_s=20.0, hysteresis=0.25)
    # Above high from 10 s; a dip to 3.9 (inside the hysteresis) does not restart the
    # clock; the alert comes at 10 + 20 s, not 10 + dwell + 20 s.
    t, x = step_series({(0, 10): 2.0, (10, 60): 6.0, (15, 16): 3.9}, end=60)
    ev = band_states(t, x, p)
    assert ev.alerts.tolist() == [pytest.approx(T0 + 30.0)]
    assert ev.alert[t >= T0 + 30.0].all() and not ev.alert[t < T0 + 30.0].any()
    # A dip below high - hysteresis restarts the clock (above again from 16 s).
    t, x = step_series({(0, 10): 2.0, (10, 60): 6.0, (15, 16): 3.5}, end=60)
    assert band_states(t, x, p).alerts.tolist() == [pytest.approx(T0 + 36.0)]
    # Leaving hyper ends the alert; a NaN (EDA lost) ends it too.
    t, x = step_series({(0, 10): 2.0, (10, 40): 6.0, (40, 60): 2.0}, end=60)
    ev = band_states(t, x, p)
    assert not ev.alert[t >= T0 + 43.0].any()
    x[t >= T0 + 35.0] = np.nan
    ev = band_states(t, x, p)
    assert (ev.state[t >= T0 + 35.0] == UNKNOWN).all() and not ev.alert[t >= T0 + 35.0].any()


def test_first_valid_sample_takes_its_plain_band_and_bad_params_are_named():
    t = T0 + np.arange(5.0)
    ev = band_states(t, np.array([np.nan, 0.2, 0.2, np.nan, 9.0]))
    assert ev.state.tolist() == [UNKNOWN, HYPO, HYPO, UNKNOWN, HYPER]
    assert ev.changes[:, 1:].tolist() == [[UNKNOWN, HYPO], [HYPO, UNKNOWN], [UNKNOWN, HYPER]]
    with pytest.raises(ExposureInputError, match="more than twice the hysteresis"):
        BandParams(low=3.0, high=3.4, hysteresis=0.25)
    with pytest.raises(ExposureInputError, match=r"alert_after_s \(1.0 s\) must be >= min_dwell_s"):
        BandParams(alert_after_s=1.0, min_dwell_s=3.0)
    m = BandStateMachine()
    m.update(t, np.ones(5))
    with pytest.raises(ExposureInputError, match="comes before the last one seen"):
        m.update(t[:2], np.ones(2))


# ------------------------------------------------------------------ the index
def hand_inputs():
    """Rest 0-100 s then arousal; 10 Hz level, SCRs at known times, 4 Hz HR."""
    t = T0 + np.arange(0, 200, 0.1)
    rel = t - T0
    scl = 5.0 + 0.2 * np.sin(2 * np.pi * rel / 20.0) + np.where(rel >= 100, 1.0, 0.0)
    phasic = np.zeros_like(t)
    onsets = T0 + np.array([10.0, 40.0, 70.0, 95.0, 110.0, 115.0, 120.0, 125.0])
    scrs = SCRTable(onsets, onsets + 2, np.full(8, 0.2), onsets + 3.0, np.full(8, 2.0))
    th = T0 + np.arange(0, 200, 0.25)
    hr = 70.0 + 3.0 * np.sin(2 * np.pi * (th - T0) / 10.0) + np.where(th - T0 >= 100, 12.0, 0.0)
    return EDALevel(t, scl, phasic), scrs, Series(th, hr)


def test_index_formula_by_hand():
    level, scrs, hr = hand_inputs()
    p = ArousalParams(smooth_s=0.0, scr_window_s=30.0)
    cal = calibrate(level, scrs, hr, T0 + 35.0, T0 + 100.0, p)
    rel = level.t - T0
    rest = (rel >= 35) & (rel < 100)
    scl = level.scl_us
    assert cal.scl_mean_us == pytest.approx(scl[rest].mean())
    assert cal.scl_sd_us == pytest.approx(max(scl[rest].std(ddof=1), 0.1))

    # Rate by hand: SCRs with onset in (t - 30, t] and confirmed (onset + 3 s) by t.
    def rate(tt):
        on = scrs.onset_t
        return np.array([np.sum((on > x - 30) & (on <= x) & (on + 3 <= x)) * 2.0 for x in tt])

    r_rest = rate(level.t[rest])
    assert cal.rate_mean_per_min == pytest.approx(r_rest.mean())
    assert cal.rate_sd_per_min == pytest.approx(max(r_rest.std(ddof=1), 1.0))
    # HR by hand: the newest sample at or before t.
    k = np.searchsorted(hr.t, level.t, side="right") - 1
    h = hr.values[k]
    assert cal.hr_mean_bpm == pytest.approx(h[rest].mean())
    out = arousal_timeline(level, scrs, hr, cal, p)
    z = [
        (scl - cal.scl_mean_us) / cal.scl_sd_us,
        (rate(level.t) - cal.rate_mean_per_min) / cal.rate_sd_per_min,
        (h - cal.hr_mean_bpm) / cal.hr_sd_bpm,
    ]
    np.testing.assert_allclose(out["z_scl"], z[0], rtol=1e-12)
    np.testing.assert_allclose(out["z_rate"], z[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["z_hr"], z[2], rtol=1e-12)
    np.testing.assert_allclose(out["index"], (z[0] + z[1] + z[2]) / 3, rtol=1e-12, atol=1e-12)
    assert out["index"][rel >= 130].mean() > 3 > abs(out["index"][rest].mean())
    # The EMA on irregular times, by hand.
    p2 = ArousalParams(smooth_s=2.0)
    out2 = arousal_timeline(level, scrs, hr, cal, p2)
    acc, sm = out["index"][0], []
    for i, (ti, r) in enumerate(zip(level.t, out["index"], strict=True)):
        if i:
            acc += (1 - math.exp(-(ti - level.t[i - 1]) / 2.0)) * (r - acc)
        sm.append(acc)
    np.testing.assert_allclose(out2["index"], sm, rtol=1e-12)


def test_an_scr_counts_only_once_confirmed():
    on = np.array([T0 + 10.0])
    table = SCRTable(on, on + 2, np.ones(1), on + 4.0, np.ones(1))
    t = T0 + np.array([9.9, 10.0, 13.9, 14.0, 39.9, 40.0])
    assert scr_rate_at(table, t, 30.0).tolist() == [0, 0, 0, 2, 2, 0]
    with pytest.raises(ExposureInputError, match="needs confirmed_t for every SCR"):
        scr_rate_at(SCRTable(on, on, on, np.full(1, np.nan), on), t, 30.0)


def test_no_ecg_uses_the_eda_alone_and_calibration_errors_are_named():
    level, scrs, hr = hand_inputs()
    cal = calibrate(level, scrs, None, T0 + 35.0, T0 + 100.0)
    assert math.isnan(cal.hr_mean_bpm) and math.isnan(cal.hr_sd_bpm)
    out = arousal_timeline(level, scrs, None, cal, ArousalParams(smooth_s=0.0))
    assert np.isnan(out["z_hr"]).all()
    np.testing.assert_allclose(out["index"], (out["z_scl"] + out["z_rate"]) / 2, rtol=1e-12)
    with pytest.raises(ExposureInputError, match="shorter than 60 s"):
        calibrate(level, scrs, hr, T0 + 35.0, T0 + 80.0)
    with pytest.raises(ExposureInputError, match="before the SCR rate has a full 30 s window"):
        calibrate(level, scrs, hr, T0 + 0.0, T0 + 29.0, ArousalParams(min_rest_s=20.0))
    scl = level.scl_us.copy()
    scl[400:700] = np.nan
    with pytest.raises(ExposureInputError, match="valid SCL for 54 % of its length"):
        calibrate(EDALevel(level.t, scl, level.phasic_us), scrs, hr, T0 + 35.0, T0 + 100.0)
    with pytest.raises(ExposureInputError, match="has no phasic_us"):
        calibrate(EDALevel(level.t, level.scl_us), scrs, hr, T0 + 35.0, T0 + 100.0)
    with pytest.raises(ExposureInputError, match="level must be 'sc' or 'scl'"):
        ArousalParams(level="raw")
    # The index is NaN (band unknown) where the EDA is lost, whatever the HR says.
    scl = level.scl_us.copy()
    scl[1500:1520] = np.nan
    out = arousal_timeline(EDALevel(level.t, scl, level.phasic_us), scrs, hr, cal)
    assert np.isnan(out["index"][1500:1520]).all() and (out["state"][1500:1520] == UNKNOWN).all()


def test_index_is_causal():
    level, scrs, hr = hand_inputs()
    cal = calibrate(level, scrs, hr, T0 + 35.0, T0 + 100.0)
    cut = T0 + 117.0
    a = arousal_timeline(level, scrs, hr, cal)
    # A different future: the level and HR after the cut, and every SCR confirmed after it
    # (including ones whose onset lies before the cut) moved, resized or dropped.
    rng = np.random.default_rng(1)
    scl = level.scl_us.copy()
    scl[level.t > cut] += rng.normal(0, 1, int(np.sum(level.t > cut)))
    hv = hr.values.copy()
    hv[hr.t > cut] = 150.0
    late = scrs.confirmed_t > cut
    assert np.any(late & (scrs.onset_t < cut))
    on = np.where(late, scrs.onset_t - 3.0, scrs.onset_t)
    other = SCRTable(on, on, scrs.amplitude_us * 5, np.where(late, cut + 0.5, scrs.confirmed_t), on)
    b = arousal_timeline(EDALevel(level.t, scl, level.phasic_us), other, Series(hr.t, hv), cal)
    past = level.t <= cut
    for name in a.dtype.names:
        assert np.array_equal(a[name][past], b[name][past], equal_nan=a[name].dtype.kind == "f")
    assert not np.array_equal(a["index"], b["index"], equal_nan=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_monitor_live_equals_offline_with_lagging_hr(seed):
    level, scrs, hr = hand_inputs()
    cal = calibrate(level, scrs, hr, T0 + 35.0, T0 + 100.0)
    offline = arousal_timeline(level, scrs, hr, cal)
    mon = ArousalMonitor(cal, hr_wait_s=2.0)
    rng = np.random.default_rng(seed)
    parts, i, prev, h_prev = [], 0, -np.inf, -np.inf
    while i < len(level):
        j = min(len(level), i + int(rng.integers(1, 40)))
        now = level.t[j - 1]
        mon.add_scrs(scrs.take((scrs.confirmed_t > prev) & (scrs.confirmed_t <= now)))
        h_now = max(h_prev, now - float(rng.uniform(0.0, 1.5)))  # HR lags up to 1.5 s
        sel = (hr.t > h_prev) & (hr.t <= h_now)
        mon.add_hr(Series(hr.t[sel], hr.values[sel]))
        out = mon.update(level.slice(i, j))
        assert out.size == 0 or out["t"][-1] <= max(h_now, now - 2.0)  # waits for HR
        parts.append(out)
        prev, h_prev, i = now, h_now, j
    mon.add_hr(Series(hr.t[hr.t > h_prev], hr.values[hr.t > h_prev]))
    parts.append(mon.flush())
    live = np.concatenate(parts)
    for name in offline.dtype.names:
        assert np.array_equal(live[name], offline[name], equal_nan=live[name].dtype.kind == "f")


def test_monitor_goes_on_without_hr_when_the_ecg_stalls():
    level, scrs, hr = hand_inputs()
    cal = calibrate(level, scrs, hr, T0 + 35.0, T0 + 100.0)
    stop = T0 + 120.0
    mon = ArousalMonitor(cal, hr_wait_s=2.0)
    mon.add_scrs(scrs)
    mon.add_hr(Series(hr.t[hr.t <= stop], hr.values[hr.t <= stop]))
    out = mon.update(level)
    assert out["t"][-1] == pytest.approx(level.t[-1] - 2.0, abs=0.11)  # not stuck at 120 s
    # What it emitted is what offline gives when the ECG ended at the same time.
    cut = Series(hr.t[hr.t <= stop], hr.values[hr.t <= stop])
    offline = arousal_timeline(level, scrs, cut, cal)[: out.size]
    for name in offline.dtype.names:
        assert np.array_equal(out[name], offline[name], equal_nan=out[name].dtype.kind == "f")
    assert np.isnan(out["z_hr"][out["t"] > stop + 2.0]).all()
