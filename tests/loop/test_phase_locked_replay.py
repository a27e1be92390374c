"""Acceptance: phase-locked pulses on real EEG replayed through LSL in real time.

The whole EEGMAT rest recording (182 s) is replayed once; three complete sessions run on
it at the same time with the simulated stimulator: trough at C3 (Hjorth), positive peak
at O2 (Hjorth) and the random-phase control at C3. The true phase of every delivered
pulse comes from the field's offline ground truth (../shared/data/README.md).
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
    )
    for name, r in res.items():
        e = r["true_phase_error"]
        print(
            f"\n{name}: {r['pulses']} pulses, bias {e['mean_deg']:.1f}°, SD {e['sd_deg']:.1f}° "
            f"(offline causal_phase SD {r['offline_causal_sd_deg']:.1f}°), "
            f"Rayleigh p {e['rayleigh_p']:.3g}, fire error p50/p99 {r['fire_error_ms_p50_p99']} ms"
        )
    for name in ("trough_C3", "peak_O2"):
        r = res[name]
        e = r["true_phase_error"]
        assert r["pulses"] >= 50
        assert abs(e["mean_deg"]) <= 10.0
        assert e["sd_deg"] <= r["offline_causal_sd_deg"] + 5.0
    rnd = res["random_C3"]
    assert rnd["pulses"] >= 50
    assert rnd["true_phase"]["rayleigh_p"] > 0.05
