"""R-peaks on MIT-BIH 100: stimloop's causal detector vs NeuroKit2's ``ecg_peaks``.

Accuracy: both leads of MIT-BIH Arrhythmia Database record 100 (30 min, 360 Hz,
``../shared/data/mitbih/100``), against the beat annotations only (non-beat codes such
as ``+`` rhythm changes are excluded), one-to-one matching within 50 ms: sensitivity,
PPV, F1, FN, FP. stimloop runs causally (``detect_rpeaks``, identical to streaming);
NeuroKit2 runs offline on the whole record, each method with its own cleaning
(``ecg_clean(method=...)`` where NeuroKit2 has a matching cleaner, else its default)
followed by ``ecg_peaks(method=...)``. Wall time: the whole record, one lead
(stimloop: best of 5 runs after warm-up; NeuroKit2: one run, cleaning included).

F1@150ms (the ANSI/AAMI EC57 window) and the 95th percentile of |detection - annotation|
are printed for context: an FN count equal to the FP count at 50 ms means beats were
found but marked more than 50 ms from the R peak, not missed.

Latency: stimloop with 10 ms chunks (4 samples = 11.1 ms at 360 Hz), from the annotated
R peak to the end of the chunk in which the beat is reported (p50/p95).

Per-update cost (the real-time question): ``RPeakDetector.update`` on one 10 ms chunk,
timed over every chunk of the record (and ``HeartMonitor.update``, which adds HR, flags
and HRV), against recomputing NeuroKit2 (clean + peaks) on
a sliding 10 s window, which is what an offline detector must do each update to be used
live, timed over 200 windows.

Usage: ``python bench/heart.py [--json] [--methods neurokit,pantompkins1985,...]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import wfdb

from stimloop.dsp.heart import HeartMonitor, RPeakDetector, detect_rpeaks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mitbih" / "100"
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")
FS = 360.0
TOL_S = 0.05
#: NeuroKit2 methods compared by default (those that need no optional dependency).
METHODS = [
    "neurokit",
    "pantompkins1985",
    "hamilton2002",
    "elgendi2010",
    "engzeemod2012",
    "christov2004",
    "kalidas2017",
    "nabian2018",
    "rodrigues2021",
    "manikandan2012",
]
#: NeuroKit2 methods that have their own cleaning method of the same name.
OWN_CLEANER = {"neurokit", "pantompkins1985", "hamilton2002", "elgendi2010", "engzeemod2012"}


def load() -> tuple[np.ndarray, np.ndarray]:
    rec = wfdb.rdrecord(str(DATA))
    ann = wfdb.rdann(str(DATA), "atr")
    keep = np.array([s in BEAT_SYMBOLS for s in ann.symbol])
    return rec.p_signal.astype(np.float64), np.asarray(ann.sample, np.int64)[keep]


def score(det: np.ndarray, ref: np.ndarray, tol: int) -> dict[str, float]:
    """Se, PPV, F1, FN, FP at ``tol`` samples, F1 at 150 ms, and |offset| p95 in ms."""
    det = np.sort(np.asarray(det, np.int64))
    out: dict[str, float] = {}
    for key, t in (("", tol), ("_150ms", round(0.15 * FS))):
        used = np.zeros(det.size, bool)
        offs = []
        for r in ref:
            lo = np.searchsorted(det, r - t)
            hi = np.searchsorted(det, r + t, side="right")
            best, bd = -1, t + 1
            for m in range(lo, hi):
                if not used[m] and abs(det[m] - r) < bd:
                    best, bd = m, abs(det[m] - r)
            if best >= 0:
                used[best] = True
                offs.append(bd)
        tp = len(offs)
        if key:
            out["f1_150ms"] = 2 * tp / (ref.size + det.size)
            out["abs_offset_ms_p95_150ms"] = float(np.percentile(offs, 95) / FS * 1e3)
            continue
        out.update(
            se=tp / ref.size,
            ppv=tp / det.size if det.size else 0.0,
            f1=2 * tp / (ref.size + det.size),
            fn=int(ref.size - tp),
            fp=int(det.size - tp),
        )
    return out


def nk_detect(x: np.ndarray, method: str) -> np.ndarray:
    import neurokit2 as nk

    clean = nk.ecg_clean(
        x, sampling_rate=int(FS), method=method if method in OWN_CLEANER else "neurokit"
    )
    _, info = nk.ecg_peaks(clean, sampling_rate=int(FS), method=method)
    return np.asarray(info["ECG_R_Peaks"], np.int64)


def delays(x: np.ndarray, ref: np.ndarray, chunk: int) -> np.ndarray:
    det = RPeakDetector(FS)
    peaks, at = [], []
    for i in range(0, x.size, chunk):
        p = det.update(x[i : i + chunk])
        peaks.append(p)
        at.append(np.full(p.size, min(i + chunk, x.size)))
    peaks_a = np.concatenate(peaks)
    at_a = np.concatenate(at)
    tol = round(TOL_S * FS)
    out = []
    for r in ref:
        k = np.searchsorted(peaks_a, r - tol)
        if k < peaks_a.size and abs(peaks_a[k] - r) <= tol:
            out.append((at_a[k] - r) / FS * 1e3)
    return np.asarray(out)


def update_cost(x: np.ndarray, chunk: int, full: bool = False) -> np.ndarray:
    det = HeartMonitor(FS) if full else RPeakDetector(FS)
    det.update(x[: 10 * int(FS)])  # past the learning phase, as in a running session
    out = []
    for i in range(10 * int(FS), x.size - chunk, chunk):
        c = x[i : i + chunk]
        t = time.perf_counter_ns()
        det.update(c)
        out.append(time.perf_counter_ns() - t)
    return np.asarray(out) / 1e3  # µs


def nk_window_cost(x: np.ndarray, method: str, n: int = 200) -> np.ndarray:
    w = int(10 * FS)
    starts = np.linspace(0, x.size - w - 1, n).astype(int)
    nk_detect(x[:w], method)  # warm-up (imports, caches)
    out = []
    for s in starts:
        t = time.perf_counter_ns()
        nk_detect(x[s : s + w], method)
        out.append(time.perf_counter_ns() - t)
    return np.asarray(out) / 1e3  # µs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print machine-readable figures")
    ap.add_argument("--methods", default=",".join(METHODS), help="NeuroKit2 methods")
    ap.add_argument("--window-methods", default="neurokit,pantompkins1985",
                    help="NeuroKit2 methods timed on the sliding 10 s window")  # fmt: skip
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # NeuroKit2 warns about its own defaults
    import neurokit2 as nk

    x, ref = load()
    tol = round(TOL_S * FS)
    rows = []
    for lead, name in enumerate(("MLII", "V5")):
        sig = x[:, lead]
        detect_rpeaks(sig[:1000], FS)  # warm-up
        times = []
        for _ in range(5):
            t = time.perf_counter()
            peaks = detect_rpeaks(sig, FS)
            times.append(time.perf_counter() - t)
        d = delays(sig, ref, round(0.01 * FS))
        rows.append(
            {
                "method": "stimloop (causal)",
                "lead": name,
                **score(peaks, ref, tol),
                "time_s": min(times),
                "delay_ms_p50": float(np.percentile(d, 50)),
                "delay_ms_p95": float(np.percentile(d, 95)),
            }
        )
        for m in args.methods.split(","):
            t = time.perf_counter()
            try:
                p = nk_detect(sig, m)
            except Exception as exc:  # a method failing is a result, not a crash
                rows.append({"method": f"nk2 {m}", "lead": name, "error": repr(exc)[:80]})
                continue
            el = time.perf_counter() - t
            rows.append({"method": f"nk2 {m}", "lead": name, **score(p, ref, tol), "time_s": el})

    ours = update_cost(x[:, 0], round(0.01 * FS))
    mon = update_cost(x[:, 0], round(0.01 * FS), full=True)
    cost = {
        "stimloop_update_us_median": float(np.median(ours)),
        "stimloop_update_us_p99": float(np.percentile(ours, 99)),
        "stimloop_update_us_mean": float(np.mean(ours)),
        "heart_monitor_update_us_median": float(np.median(mon)),
        "heart_monitor_update_us_p99": float(np.percentile(mon, 99)),
        "chunk_samples": round(0.01 * FS),
        "n_updates": int(ours.size),
    }
    for m in args.window_methods.split(","):
        theirs = nk_window_cost(x[:, 0], m)
        cost[f"nk2_{m}_window10s_us_median"] = float(np.median(theirs))
        cost[f"nk2_{m}_speedup_x"] = float(np.median(theirs) / np.median(ours))

    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "neurokit2": nk.__version__,
        },
        "record": "MIT-BIH 100, 360 Hz, 30 min",
        "beats_reference": int(ref.size),
        "tolerance_ms": TOL_S * 1e3,
        "accuracy": rows,
        "update_cost": cost,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"MIT-BIH 100: {ref.size} reference beats, tolerance {TOL_S * 1e3:.0f} ms\n")
    hdr = f"{'method':<24}{'lead':<6}{'Se':>8}{'PPV':>8}{'F1':>8}{'FN':>5}{'FP':>5}{'time s':>9}"
    print(hdr + f"{'delay p50/p95 ms':>18}{'F1@150ms':>10}{'|off| p95 ms':>14}")
    for r in rows:
        if "error" in r:
            print(f"{r['method']:<24}{r['lead']:<6}  failed: {r['error']}")
            continue
        dl = (
            f"{r['delay_ms_p50']:.0f}/{r['delay_ms_p95']:.0f}" if "delay_ms_p50" in r else "offline"
        )
        print(
            f"{r['method']:<24}{r['lead']:<6}{r['se']:>8.4f}{r['ppv']:>8.4f}{r['f1']:>8.4f}"
            f"{r['fn']:>5}{r['fp']:>5}{r['time_s']:>9.3f}{dl:>18}{r['f1_150ms']:>10.4f}"
            f"{r['abs_offset_ms_p95_150ms']:>14.1f}"
        )
    print(
        f"\nPer update, 10 ms chunk ({cost['chunk_samples']} samples at 360 Hz = "
        f"{cost['chunk_samples'] / FS * 1e3:.1f} ms):"
    )
    print(
        f"  stimloop RPeakDetector.update   median {cost['stimloop_update_us_median']:9.1f} µs"
        f"   p99 {cost['stimloop_update_us_p99']:.1f} µs   ({cost['n_updates']} updates)"
    )
    print(
        f"  stimloop HeartMonitor.update    median {cost['heart_monitor_update_us_median']:9.1f} µs"
        f"   p99 {cost['heart_monitor_update_us_p99']:.1f} µs   (detector + HR, flags, HRV)"
    )
    for m in args.window_methods.split(","):
        print(
            f"  nk2 {m:<16} 10 s window median {cost[f'nk2_{m}_window10s_us_median']:9.1f} µs"
            f"   -> stimloop {cost[f'nk2_{m}_speedup_x']:.0f}x cheaper"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
