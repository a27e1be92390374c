"""What limits SCR F1 on the wearable set: overlapping shapes, noise, quantisation or motion.

The second simulated set of ``bench/eda.py`` (``simulate_wearable_eda``) adds, on top of
its SCR shapes, pink and white noise, wearable quantisation and motion artifacts. This
script scores stimloop's causal detector (``decompose_eda``, the same call as
``bench/eda.py``) on the same physiology with those added one at a time:

1. ``shapes``: the noise-free, unquantised curve without artifacts (only the SCRs, their
   overlap and the tonic level);
2. ``+ noise``: pink (1/f) and white noise as in the set;
3. ``+ quantisation``: the set's quantisation (odd seeds 0.01 µS steps, even seeds a
   12-bit ADC on a divider);
4. ``+ motion``: the artifacts too, i.e. the set exactly as ``bench/eda.py`` scores it.

The SCRs, events and tonic level depend only on the seed, so every rung has the same
true SCRs except for rung 4, where SCRs that an artifact hides become optional. Rung 1
is the ceiling of the detector on this set: what its rules make of the shapes alone.

Usage: ``python bench/eda_ceiling.py [--first-seed 1] [--seeds 4] [--rates 4 8 16 32 100
1000] [--json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eda import WEARABLE_RATES, wearable_config

from stimloop.devices.sim.wearable_eda import WearableEDAConfig, simulate_wearable_eda
from stimloop.dsp.eda import decompose_eda
from stimloop.dsp.eda_score import score_scrs

RUNGS = ("shapes", "+ noise", "+ quantisation", "+ motion")


def rung_config(seed: int, rung: str) -> WearableEDAConfig:
    """The set's configuration for ``seed`` with what ``rung`` leaves out switched off."""
    cfg = wearable_config(seed)
    k = RUNGS.index(rung)
    off: dict[str, object] = {}
    if k < 1:
        off.update(pink_us=0.0, white_us=0.0)
    if k < 2:
        off["quantisation"] = "none"
    if k < 3:
        off["artifacts_per_min"] = 0.0
    return dataclasses.replace(cfg, **off)


def score_rung(fs: float, rung: str, first_seed: int, seeds: int) -> dict[str, float]:
    """Pooled score of the detector on ``seeds`` 20-min recordings of one rung."""
    det_on, det_amp, t_on, t_amp, opt = [], [], [], [], []
    for k, seed in enumerate(range(first_seed, first_seed + seeds)):
        rec = simulate_wearable_eda(fs, 20.0, seed, rung_config(seed, rung))
        scrs = decompose_eda(rec.eda_us, fs, strict=False).scrs
        off = k * 10_000.0  # recordings are 1,200 s: offsets keep them apart
        det_on.append(scrs["onset"] / fs + off)
        det_amp.append(scrs["amplitude"])
        t_on.append(rec.scrs["onset_s"] + off)
        t_amp.append(rec.scrs["amplitude"])
        opt.append(rec.scrs["near_artifact"] | rec.scrs["masked"])
    cat = np.concatenate
    return score_scrs(cat(det_on), cat(det_amp), cat(t_on), cat(t_amp), optional=cat(opt)).as_dict()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--rates", type=float, nargs="+", default=list(WEARABLE_RATES))
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    a = ap.parse_args(argv)
    last = a.first_seed + a.seeds - 1
    print(f"simulate_wearable_eda, seeds {a.first_seed}-{last}, 20 min each: F1 (FP/FN)")
    print(f"{'Hz':>6s} " + " ".join(f"{r:>18s}" for r in RUNGS) + f" {'amp err, set':>13s}")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for fs in a.rates:
        row = {r: score_rung(fs, r, a.first_seed, a.seeds) for r in RUNGS}
        out[f"{fs:g}"] = row
        cells = " ".join(f"{s['f1']:8.3f} ({s['fp']:3d}/{s['fn']:3d})" for s in row.values())
        print(f"{fs:6g} {cells} {row['+ motion']['amp_err_median']:13.3f}", flush=True)
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
