"""Acceptance: phase-locked pulses on real EEG replayed through LSL in real time.

The first 75 s of the EEGMAT rest recording are replayed once; six complete sessions run
on them at the same time with the simulated stimulator, two for each condition: trough at
C3 (Hjorth), positive peak at O2 (Hjorth) and the random-phase control at C3. Each session
keeps the HAL's 1 s minimum interval between its own pulses, so the two sessions of a
condition deliver in 75 s about as many pulses as one session did in 120 s (80-96 then,
the figures are printed). The true phase of every delivered pulse comes from the field's
offline ground truth (../shared/data/README.md).
"""

from __future__ import annotations

import pytest

from stimloop.loop.validation import Condition, phase_locked_on_recording


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_delivered_pulses_hit_the_target_phase_on_real_eeg(shared_data):
    edf = shared_data / "eeg" / "eegmat_subject00_rest.edf"
    # IAFs from ../shared/data/README.md: 9.5 Hz at C3, 10.5 Hz at O2.
    res = phase_locked_on_recording(
        edf,
        [
            Condition("trough_C3", "C3", 9.5, 180.0),
            Condition("peak_O2", "O2", 10.5, 0.0),
            Condition("random_C3", "C3", 9.5, 180.0, control="random_phase"),
        ],
        duration_s=75.0,
        sessions_per_condition=2,
    )
    for name, r in res.items():
        e = r["true_phase_error"]
        print(
            f"\n{name}: {r['pulses']} pulses ({r['sessions']} sessions), "
            f"bias {e['mean_deg']:.1f}°, SD {e['sd_deg']:.1f}° "
            f"(offline causal_phase SD {r['offline_causal_sd_deg']:.1f}°, "
            f"{r['offline_causal_at_pulses_sd_deg']:.1f}° at the pulses), "
            f"Rayleigh p {e['rayleigh_p']:.3g}, "
            f"fire error p50/p99 {r['fire_error_ms_p50_p99']} ms, "
            f"same forecast offline SD {r['forecast_at_pulses_sd_deg']:.1f}°, delivered vs it "
            f"p50/p95 {r['delivered_vs_forecast_abs_deg_p50_p95']}°, horizon p50/p95 "
            f"{r['horizon_ms_p50_p95']} ms, live vs offline phase now "
            f"{r['phase_now_max_abs_diff_deg']:.2g}°, refused {r['refused']}"
        )
    for name in ("trough_C3", "peak_O2"):
        r = res[name]
        e = r["true_phase_error"]
        assert r["pulses"] >= 60
        assert abs(e["mean_deg"]) <= 10.0
        # The live estimate the pulse was planned on is the offline estimator's (the one
        # the session ran, from its own first sample): streaming and chunking change
        # nothing.
        assert r["phase_now_max_abs_diff_deg"] <= 0.1
        # The real-time path proper (data path, scheduler, firing) against the same
        # forecast redone offline to the instant each pulse left: 95 % of pulses within
        # 8° (≈ 2 ms at 10.5 Hz; the gate refuses pulses > 1 ms late; measured ≤ 3.5°),
        # and ≤ 3° on the SD. A scheduler off by ±8 ms fails both.
        assert r["delivered_vs_forecast_abs_deg_p50_p95"][1] <= 8.0
        assert e["sd_deg"] <= r["forecast_at_pulses_sd_deg"] + 3.0
        # The forecast itself (10-30 ms ahead, longer horizons surviving on a loaded
        # machine, where short ones are refused as late) costs a few degrees against the
        # estimator at the same instants: +2.5-3.4° quiet, +7.6° in one loaded CI run
        # (docs/benchmarks.md). And no worse than the estimator overall + 10°.
        assert e["sd_deg"] <= r["offline_causal_at_pulses_sd_deg"] + 10.0
        assert e["sd_deg"] <= r["offline_causal_sd_deg"] + 10.0
    rnd = res["random_C3"]
    assert rnd["pulses"] >= 60
    assert rnd["true_phase"]["rayleigh_p"] > 0.05
