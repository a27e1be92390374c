"""Would a causal fixed-SCRF deconvolution separate overlapping SCRs? A probe (issue #18).

The causal SCR detector (``stimloop.dsp.eda``) splits two overlapping SCRs when the slope
of the smoothed signal dips and rebounds within one rise (the shoulder rule). A running
deconvolution with a fixed SCRF sharpens the bursts: for a Bateman SCRF
``exp(-t/τ2) - exp(-t/τ1)`` (Benedek & Kaernbach 2010, J Neurosci Methods 190:80-91)
the driver is ``d = (y - SCL) + (τ1 + τ2) y' + τ1 τ2 y''``, computed here causally on the
detector's own 1 Hz smoothed signal and SCL (y'' is the first difference of the slope
under a 0.1 s EMA; d then goes through an EMA of ``--ema`` s).

On ``simulate_wearable_eda`` (4 x 20 min, default seeds 1-4) it counts, for each signal,
a dip and rebound of at least 30 % of the larger maximum:

- between the rises of overlapping pairs (the second SCR starts less than 1 s after the
  first one's peak, and is less than 3 times smaller): a split is wanted;
- within the rise of isolated SCRs (no other SCR within 6 s): any such dip is false.

It also prints the amplitude error of matched SCRs (onset within 0.5 s) by their distance
from the previous SCR. Usage: ``python bench/eda_deconv_probe.py [--fs 100]
[--first-seed 1]``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy.signal import lfilter

from stimloop.devices.sim.wearable_eda import WearableEDAConfig, simulate_wearable_eda
from stimloop.dsp.eda import decompose_eda

DIP = 0.3
#: (label, tau1 s, tau2 s, weight of the level term, EMA of the result s); the first row
#: is the slope itself (tau1 ~ 0: d = y').
SIGNALS = (
    ("slope y'", 1e-4, 1.0, 0.0, 0.25),
    ("driver 0.75/3 s", 0.75, 3.0, 1.0, 0.25),
    ("driver 1/3.75 s", 1.0, 3.75, 1.0, 0.25),
    ("driver 0.5/2 s, EMA 0.4", 0.5, 2.0, 1.0, 0.4),
)


def _ema(x: np.ndarray, tau: float, fs: float) -> np.ndarray:
    a = 1.0 - np.exp(-1.0 / (tau * fs))
    return lfilter([a], [1.0, a - 1.0], x)


def _pair_split(d: np.ndarray, fs: float, on0: float, on1: float, pk1: float) -> bool:
    seg = d[int(on0 * fs) : int(pk1 * fs)]
    head = seg[: int((on1 - on0) * fs) + int(0.5 * fs)]
    ia = int(np.argmax(head))
    imn = ia + int(np.argmin(seg[ia:]))
    a, mn, b = head[ia], seg[imn], seg[imn:].max()
    big = max(a, b)
    return a - mn >= DIP * big and b - mn >= DIP * big


def _false_dip(seg: np.ndarray) -> bool:
    run_max, mn = -np.inf, np.inf
    for v in seg:
        if v > run_max:
            run_max = mn = v
        mn = min(mn, v)
        if run_max > 0 and run_max - mn >= DIP * run_max and v - mn >= DIP * run_max:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fs", type=float, default=100.0)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args(argv)
    fs = args.fs
    split = np.zeros(len(SIGNALS), int)
    false = np.zeros(len(SIGNALS), int)
    n_pairs = n_iso = 0
    amp_rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        cfg = WearableEDAConfig(quantisation="step" if seed % 2 else "divider")
        rec = simulate_wearable_eda(fs, 20.0, seed, cfg)
        sig = decompose_eda(rec.eda_us, fs, strict=False)
        y = sig.smoothed
        s = _ema(np.diff(y, prepend=y[0]) * fs, 0.1, fs)
        acc = _ema(np.diff(s, prepend=0.0) * fs, 0.1, fs)
        drivers = [
            _ema((t1 + t2) * s + t1 * t2 * acc + wy * (y - sig.scl), tau, fs)
            for _, t1, t2, wy, tau in SIGNALS
        ]
        S = rec.scrs
        on, pk, amp = S["onset_s"], S["peak_s"], S["amplitude"]
        need = ~(S["masked"] | S["near_artifact"]) & (amp >= 0.02)
        for j in range(1, len(S)):
            if need[j] and on[j] - pk[j - 1] < 1.0 and on[j] - on[j - 1] > 0.8:
                if amp[j - 1] / amp[j] < 3.0:
                    n_pairs += 1
                    split += [_pair_split(d, fs, on[j - 1], on[j], pk[j]) for d in drivers]
        for j in range(len(S)):
            if not (S["near_artifact"][j] or amp[j] < 0.02):
                if (j == 0 or on[j] - pk[j - 1] >= 6) and (
                    j + 1 == len(S) or on[j + 1] - on[j] >= 6
                ):
                    n_iso += 1
                    i0, i1 = int(on[j] * fs), int((pk[j] + 1.0) * fs)
                    false += [_false_dip(d[i0:i1]) for d in drivers]
        det_on = sig.scrs["onset"] / fs
        for j in np.flatnonzero(need):
            k = int(np.argmin(np.abs(det_on - on[j]))) if det_on.size else -1
            if k >= 0 and abs(det_on[k] - on[j]) <= 0.5:
                gap = on[j] - pk[j - 1] if j > 0 else np.inf
                nxt = on[j + 1] - on[j] if j + 1 < len(S) else np.inf
                amp_rows.append((gap, nxt, sig.scrs["amplitude"][k] / amp[j] - 1.0))
    seeds = f"{args.first_seed}-{args.first_seed + args.seeds - 1}"
    print(f"simulate_wearable_eda, {fs:g} Hz, seeds {seeds}: dip and rebound >= {DIP:.0%}")
    print(f"{'signal':26s} {'pairs separated':>16s} {'isolated, false dip':>20s}")
    for (label, *_), a, b in zip(SIGNALS, split, false, strict=True):
        print(f"{label:26s} {a:>8d} / {n_pairs:<5d} {b:>11d} / {n_iso:<5d}")
    r = np.array(amp_rows)
    print("\nAmplitude error of matched SCRs (onset within 0.5 s)")
    for label, m in (
        ("all", np.ones(len(r), bool)),
        ("previous peak > 4 s before, next > 4 s after", (r[:, 0] > 4) & (r[:, 1] > 4)),
        ("previous peak < 3 s before", r[:, 0] < 3),
    ):
        e = r[m, 2]
        print(
            f"{label:46s} n {m.sum():4d}  |err| median {100 * np.median(np.abs(e)):5.1f} %  "
            f"bias {100 * np.median(e):+5.1f} %"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
