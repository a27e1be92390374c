"""Validity of heart-brain-coupled target localisation (NCG-TMS) on the virtual subject.

Each virtual subject (``devices/sim/hbc_subject.py``, one seed = one subject: best site,
coupling map, rMT, response curve, resting HR, HRV) receives the full published 10 Hz
Dash protocol (Dijkstra et al. 2023): 6 sites (F3 FC3 F5 AF3 F1 FC1) run one after the
other with 20 s to move the coil, 16 cycles of 16 s per site (cycle 0 rest, then 15
trains of 5 s at 10 Hz at 50-120 % rMT in 5 % steps). The pipeline is the real one: the
subject's ECG with TMS artifacts and noise -> causal R-peak detection and 4 Hz HR
(``stimloop.dsp.hbc.hr_from_ecg``: the heart stage, pulses blanked) -> per-cycle
HBC -> site ranking. Scored against the subject's truth:

* accuracy: the chosen site (primary rule: most intensities above threshold, ties to
  mean HBC; and the alternative rule: mean normalised HBC over the upper 5 intensities)
  is the true best site; ``found``: the chosen site passes (>= ``min_above`` intensities);
* sham (coupling 0 everywhere): fraction of subjects in which no site passes;
* sweeps: HRV noise scale, coupling strength, cycles per site (fewer intensities over the
  same 50-120 % rMT range), to show where it breaks;
* R-peak F1 (50 ms) during the 10 Hz trains against the true beats, for TMS artifact
  amplitudes 0.5-4 mV, without and with blanking the pulses;
* the threshold's calibration: HBC of 16 s windows of real resting heart rate (MIT-BIH
  100 and the systole recording from ../shared/data) next to the virtual subject at rest.

Usage: ``python bench/hbc.py [--json] [--subjects 40] [--sweep-subjects 20] [--jobs 2]
[--scheduler tcp://host:8786]``. The subjects run on Dask (``stimloop.loop.study.map_jobs``):
a local cluster of ``--jobs`` workers, or the cluster at ``--scheduler``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from stimloop.devices.sim.hbc_subject import DASH_SITES, SubjectConfig, simulate, train_pulses
from stimloop.dsp.hbc import HBCParams, cycle_metrics, dash_schedule, hr_from_ecg, localise
from stimloop.loop.study import map_jobs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RATE_HZ = 4.0
GAP_S = 20.0
TOL_S = 0.05
DEFAULT_ARTIFACT_MV = 1.0


def intensities_pct_rmt(n: int) -> np.ndarray:
    """``n`` intensities spanning 50-120 % rMT (15 gives the published 5 % steps)."""
    return np.linspace(50.0, 120.0, n)


def f1_score(det: np.ndarray, ref: np.ndarray, tol: int) -> tuple[float, int, int, int]:
    """One-to-one matching within ``tol`` samples: F1, TP, FP, FN."""
    det = np.sort(np.asarray(det, np.int64))
    used = np.zeros(det.size, bool)
    tp = 0
    for r in ref:
        lo = np.searchsorted(det, r - tol)
        hi = np.searchsorted(det, r + tol, side="right")
        for j in range(lo, hi):
            if not used[j]:
                used[j] = True
                tp += 1
                break
    fp, fn = det.size - tp, ref.size - tp
    return (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0), tp, fp, fn


def run_subject(job: dict) -> dict:
    """One virtual subject through the whole pipeline; returns its scores."""
    from stimloop.dsp.heart import detect_rpeaks, pulse_blank_mask

    seed = job["seed"]
    n_int = job.get("n_intensities", 15)
    params = HBCParams()
    cfg = SubjectConfig(
        seed=seed,
        coupling_scale=job.get("coupling_scale", 1.0),
        noise_scale=job.get("noise_scale", 1.0),
        artifact_mv=job.get("artifact_mv", DEFAULT_ARTIFACT_MV),
    )
    cycles = dash_schedule(DASH_SITES, list(intensities_pct_rmt(n_int)), 10.0, params, GAP_S)
    from stimloop.devices.sim.hbc_subject import HBCSubject

    rmt = HBCSubject(cfg).truth.rmt_pct
    onsets = np.array([c.onset_s for c in cycles])
    pct_mso = np.array([c.intensity * rmt / 100.0 for c in cycles])
    pt, pi, ps = train_pulses(onsets, pct_mso, [c.site for c in cycles])
    rec = simulate(cfg, pt, pi, ps, onsets[-1] + params.cycle_s + 5.0)
    out = {"seed": seed, "true_best": rec.truth.best_site}
    pulse_index = np.rint(np.asarray(pt) * rec.fs).astype(np.int64)
    if job.get("localise", True):
        hr = hr_from_ecg(rec.ecg_mv, rec.fs, RATE_HZ, pulse_index)
        loc, metrics = localise(hr, RATE_HZ, 0.0, cycles, params)
        out.update(
            best=loc.best_site,
            best_alt=loc.best_site_alt,
            found=loc.target_found,
            any_pass=any(s.passes for s in loc.ranking),
            n_above={s.site: s.n_above for s in loc.ranking},
            invalid_cycles=int((~metrics["valid"]).sum()),
            hr_nan_fraction=float(np.isnan(hr).mean()),
        )
    if job.get("f1", False):
        in_train = np.zeros(rec.ecg_mv.size, bool)
        for t0, inten in zip(onsets, pct_mso, strict=True):
            if inten > 0:
                in_train[int(t0 * rec.fs) : int((t0 + params.train_s) * rec.fs)] = True
        ref = rec.rpeaks
        blank = pulse_blank_mask(pulse_index, 0, rec.ecg_mv.size, rec.fs)
        for key, mask in (("", None), ("blank_", blank)):
            det = detect_rpeaks(rec.ecg_mv, rec.fs, blank=mask)
            f1, tp, fp, fn = f1_score(det[in_train[det]], ref[in_train[ref]], round(TOL_S * rec.fs))
            out.update({f"{key}f1_trains": f1, f"{key}tp": tp, f"{key}fp": fp, f"{key}fn": fn})
    return out


def real_null() -> dict[str, list[float]]:
    """HBC of every 16 s window (4 s apart) of real resting HR, per recording."""
    import wfdb

    rec = wfdb.rdrecord(str(DATA / "mitbih" / "100"))
    systole = np.load(DATA / "eda" / "systole_task1_1000hz.npz")
    out = {}
    for name, (ecg, fs) in {
        "MIT-BIH 100 (MLII)": (rec.p_signal[:, 0], 360.0),
        "systole task 1": (systole["ecg"].astype(np.float64), float(systole["fs"])),
    }.items():
        hr = hr_from_ecg(ecg, fs, RATE_HZ)
        on = np.arange(10.0, hr.size / RATE_HZ - 20.0, 4.0)
        m = cycle_metrics(hr, RATE_HZ, 0.0, on)
        out[name] = m["hbc"][m["valid"]].tolist()
    return out


def sim_null(seeds: range) -> list[float]:
    vals = []
    for seed in seeds:
        rec = simulate(SubjectConfig(seed=seed, artifact_mv=0.0), [], [], [], 1600.0)
        hr = hr_from_ecg(rec.ecg_mv, rec.fs, RATE_HZ)
        m = cycle_metrics(hr, RATE_HZ, 0.0, np.arange(10.0, 1570.0, 4.0))
        vals += m["hbc"][m["valid"]].tolist()
    return vals


def _accuracy(rows: list[dict]) -> dict:
    n = len(rows)
    return {
        "n": n,
        "accuracy": sum(r["best"] == r["true_best"] for r in rows) / n,
        "accuracy_alt": sum(r["best_alt"] == r["true_best"] for r in rows) / n,
        "found": sum(bool(r["found"]) for r in rows) / n,
        "correct_and_found": sum(r["best"] == r["true_best"] and r["found"] for r in rows) / n,
        "invalid_cycles_mean": float(np.mean([r["invalid_cycles"] for r in rows])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print raw figures as JSON")
    ap.add_argument("--subjects", type=int, default=40)
    ap.add_argument("--sweep-subjects", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--scheduler", help="Dask scheduler address (default: a local cluster)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    p = HBCParams()
    n, m = args.subjects, args.sweep_subjects
    plan: dict[str, list[dict]] = {
        "main": [{"seed": s} for s in range(n)],
        "sham": [{"seed": 1000 + s, "coupling_scale": 0.0} for s in range(n)],
    }
    for ns in (0.5, 1.5, 2.0):
        plan[f"noise x{ns:g}"] = [{"seed": 2000 + s, "noise_scale": ns} for s in range(m)]
    for cs in (0.25, 0.5, 0.75):
        plan[f"coupling x{cs:g}"] = [{"seed": 3000 + s, "coupling_scale": cs} for s in range(m)]
    for k in (5, 8, 11):
        plan[f"{k + 1} cycles/site"] = [{"seed": 4000 + s, "n_intensities": k} for s in range(m)]
    for amp in (0.5, 1.0, 2.0, 4.0):
        plan[f"F1 artifact {amp:g} mV"] = [
            {"seed": 5000 + s, "artifact_mv": amp, "localise": False, "f1": True} for s in range(5)
        ]
    keys = [(k, j) for k, jobs in plan.items() for j in jobs]
    res = map_jobs(
        run_subject,
        [j for _, j in keys],
        scheduler=args.scheduler,
        workers=None if args.scheduler else args.jobs,
    )
    by: dict[str, list[dict]] = {}
    for (k, _), r in zip(keys, res, strict=True):
        by.setdefault(k, []).append(r)
    figures: dict = {
        "params": {
            "threshold": p.threshold,
            "min_above": p.min_above,
            "n_upper": p.n_upper,
            "n_cycles": p.n_cycles,
            "artifact_mv": DEFAULT_ARTIFACT_MV,
        },
        "conditions": {},
    }
    for k, rows in by.items():
        if k.startswith("F1"):
            cond = {"n": len(rows)}
            for key in ("", "blank_"):
                tp, fp, fn = (sum(r[key + x] for r in rows) for x in ("tp", "fp", "fn"))
                cond.update(
                    {
                        f"{key}f1_trains": 2 * tp / (2 * tp + fp + fn),
                        f"{key}fp": fp,
                        f"{key}fn": fn,
                        "beats": tp + fn,
                    }
                )
            figures["conditions"][k] = cond
        elif k == "sham":
            figures["conditions"][k] = {
                "n": len(rows),
                "no_site_passes": sum(not r["any_pass"] for r in rows) / len(rows),
                "max_n_above_mean": float(np.mean([max(r["n_above"].values()) for r in rows])),
                "invalid_cycles_mean": float(np.mean([r["invalid_cycles"] for r in rows])),
            }
        else:
            figures["conditions"][k] = _accuracy(rows)
    ref = {"noise x1 (main)": "main", "coupling x1 (main)": "main", "16 cycles/site (main)": "main"}
    for alias, src in ref.items():
        figures["conditions"][alias] = figures["conditions"][src]
    null = real_null()
    null["virtual subject at rest (6 seeds)"] = sim_null(range(9000, 9006))
    figures["null"] = {
        k: {
            "windows": len(v),
            "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)),
            "above_threshold": float(np.mean(np.asarray(v) > p.threshold)),
        }
        for k, v in null.items()
    }
    figures["wall_s"] = time.perf_counter() - t_start
    where = f"Dask at {args.scheduler}" if args.scheduler else f"{args.jobs} jobs"
    figures["machine"] = f"{platform.machine()} {os.cpu_count()} cpus, {where}"
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    c = figures["conditions"]
    print(
        f"HBC localisation on the virtual subject (threshold {p.threshold:g} ln(bpm^2), "
        f"min_above {p.min_above}, artifacts {DEFAULT_ARTIFACT_MV:g} mV)"
    )
    print(
        f"{'condition':24s} {'n':>3s} {'accuracy':>9s} {'alt rule':>9s} {'found':>7s} "
        f"{'invalid cycles':>15s}"
    )
    order = ["main"] + [
        k for k in c if k not in ("main", "sham") and not k.startswith("F1") and "(main)" not in k
    ]
    for k in order:
        r = c[k]
        print(
            f"{k:24s} {r['n']:3d} {r['accuracy']:9.1%} {r['accuracy_alt']:9.1%} "
            f"{r['found']:7.1%} {r['invalid_cycles_mean']:15.1f}"
        )
    s = c["sham"]
    print(
        f"sham: no site passes in {s['no_site_passes']:.1%} of {s['n']} subjects "
        f"(mean of the largest count above threshold {s['max_n_above_mean']:.2f})"
    )
    print("R-peak F1 (50 ms) during 10 Hz trains, without and with blanking the pulses:")
    for k, r in c.items():
        if k.startswith("F1"):
            print(
                f"  {k[12:]:>7s}: F1 {r['f1_trains']:.4f} (FP {r['fp']}, FN {r['fn']})  "
                f"blanked: F1 {r['blank_f1_trains']:.4f} (FP {r['blank_fp']}, "
                f"FN {r['blank_fn']})  of {r['beats']} beats"
            )
    print("HBC of 16 s windows at rest (threshold calibration):")
    for k, r in figures["null"].items():
        print(
            f"  {k:36s} {r['windows']:5d} windows  p50 {r['p50']:5.2f}  p95 {r['p95']:5.2f}"
            f"  p99 {r['p99']:5.2f}  above threshold {r['above_threshold']:.1%}"
        )
    print(f"wall {figures['wall_s']:.0f} s on {figures['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
