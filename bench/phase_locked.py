"""Delivered-pulse phase accuracy of the closed loop on real EEG, vs the offline estimator.

Replays ``../shared/data/eeg/eegmat_subject00_rest.edf`` through LSL in real time and
runs three complete phase-locked sessions on it with the simulated stimulator (trough at
C3, positive peak at O2, random-phase control at C3; Hjorth derivations, band IAF ± 2
Hz). Prints, side by side, the circular mean and SD of the true phase at the delivered
pulses and the offline ``causal_phase`` SD on the same channel: the reference the
real-time path is compared with.

Usage: ``python bench/phase_locked.py [--duration S] [--json]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()

from stimloop.loop.validation import Condition, phase_locked_on_recording

EDF = Path(__file__).resolve().parents[2] / "shared" / "data" / "eeg" / "eegmat_subject00_rest.edf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=None, help="s (default: whole file)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = phase_locked_on_recording(
        EDF,
        [
            Condition("trough_C3", "C3", 9.5, 180.0),
            Condition("peak_O2", "O2", 10.5, 0.0),
            Condition("random_C3", "C3", 9.5, 180.0, control="random_phase"),
        ],
        duration_s=args.duration,
    )
    if args.json:
        print(json.dumps(res, default=float))
        return
    print(
        f"{'condition':<11} {'pulses':>6} {'bias °':>7} {'SD °':>6} {'offline SD °':>13} "
        f"{'at pulses °':>12} {'forecast °':>11} {'horizon p50 ms':>15} "
        f"{'Rayleigh p':>11} {'fire err p99 ms':>16}"
    )
    for name, r in res.items():
        e = r["true_phase_error"]
        p99 = r["fire_error_ms_p50_p99"][1] if r["fire_error_ms_p50_p99"] else float("nan")
        offline, paired = r["offline_causal_sd_deg"], r["offline_causal_at_pulses_sd_deg"]
        print(
            f"{name:<11} {r['pulses']:>6} {e['mean_deg']:>7.1f} {e['sd_deg']:>6.1f} "
            f"{offline:>13.1f} {paired:>12.1f} {r['forecast_at_pulses_sd_deg']:>11.1f} "
            f"{r['horizon_ms_p50_p95'][0] if r['horizon_ms_p50_p95'] else float('nan'):>15.1f} "
            f"{e['rayleigh_p']:>11.3g} {p99:>16.2f}"
        )


if __name__ == "__main__":
    main()
