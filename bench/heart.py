"""R-peaks, beat classes and corrected HR: stimloop's causal detector vs NeuroKit2.

Accuracy (MIT-BIH 100): both leads of MIT-BIH Arrhythmia Database record 100 (30 min,
360 Hz, ``../shared/data/mitbih/100``), against the beat annotations only (non-beat codes
such as ``+`` rhythm changes are excluded), one-to-one matching within 50 ms:
sensitivity, PPV, F1, FN, FP. stimloop runs causally (``detect_rpeaks``, identical to
streaming; detections classed artifacts are not beats); NeuroKit2 runs offline on the
whole record, each method with its own cleaning (``ecg_clean(method=...)`` where
NeuroKit2 has a matching cleaner, else its default) followed by
``ecg_peaks(method=...)``. Wall time: the whole record, one lead (stimloop: best of 5
runs after warm-up; NeuroKit2: one run, cleaning included). F1@150ms (the ANSI/AAMI EC57
window) and the 95th percentile of |detection - annotation| are printed for context.

Latency: stimloop with 10 ms chunks (4 samples = 11.1 ms at 360 Hz), from the annotated
R peak to the end of the chunk in which the beat is reported (p50/p95).

Fiducials per beat class: |detection - reference| in ms (median, p95), reference = the
annotation (MIT-BIH 100: N, A, V) or the generator's truth (the dominant deflection's
extremum: ``devices/sim/arrhythmia.py``, ``--seeds`` x 2 min at 360 Hz, 6 PVCs and 6 APCs
per minute; upright lead, inverted lead, and wide PVCs with a tall discordant T wave,
``WIDE_PVC``; classes N, S = APC, V = PVC). A beat counts as
found within 150 ms; ``>50ms`` counts found beats marked more than 50 ms away.

Steps and motion (not beats): F1 and false beats on the generator with baseline steps
(6/min, 0.5-3 mV) and motion (3 bursts/min of 0.5-8 Hz noise, 0.2 and 0.4 mV RMS), and on
MIT-BIH 100 MLII with 200 added electrode-pop steps (0.5-3 mV, decaying over 0.3-3 s).

Beat classes: stimloop's causal classes against the truth (S, V ectopic; N normal) on
the generator (6 PVCs + 6 APCs per minute, frequent; and 1 + 1, sparse) and MIT-BIH
100. NeuroKit2's ``signal_fixpeaks(method="Kubios")``
(Lipponen & Tarvainen 2019, offline, with look-ahead) gets the true R peaks; a true
ectopic beat counts as found by it when it or the next beat is flagged (it marks the
premature beat "longshort" and the next one "ectopic"); a normal beat counts as falsely
flagged when neither it nor the beat before it is a true ectopic beat.

Corrected heart rate: 4 Hz HR against the generator's sinus rate (``60 / sinus RR`` of
the interval ending at each beat, linear between beats), from 5 s after the start to
2 s before the end, with frequent and with sparse ectopy (``valid``: the fraction of
grid samples with a value). stimloop: ``resample_corrected_hr`` (linear) on its own
causal beats and classes, and the live ``HeartRate`` series (zero-order hold at
confirmation); NeuroKit2: ``signal_fixpeaks`` (Kubios) on the true R peaks, HR from the
corrected peaks, linear; and the uncorrected HR of the true R peaks.

TMS trains: the generator's ECG (2 PVCs and 2 APCs per minute) with 10 Hz trains (5 s
on, 11 s off) of injected TMS artifacts (``tms_artifacts``: 8 mV spikes, 1.5 mV decay of
4 ms), R-peak F1 with and without blanking 2 ms before to 25 ms after each pulse
(``pulse_blank_mask``), and NeuroKit2 (offline, no blanking), at 250, 500 and 1000 Hz.

Per-update cost (the real-time question): ``RPeakDetector.update`` on one 10 ms chunk,
timed over every chunk of the record (and ``HeartMonitor.update``, which adds HR, flags
and HRV), against recomputing NeuroKit2 (clean + peaks) on a sliding 10 s window, which
is what an offline detector must do each update to be used live, timed over 200 windows.

Usage: ``python bench/heart.py [--json] [--seeds 6] [--methods neurokit,pantompkins1985,...]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import wfdb

from stimloop.devices.sim.arrhythmia import (
    simulate_arrhythmia,
    tms_artifacts,
    train_pulses,
)
from stimloop.dsp.heart import (
    BEAT_ARTIFACT,
    BEAT_ECTOPIC,
    HeartMonitor,
    RPeakDetector,
    detect_beats,
    pulse_blank_mask,
)
from stimloop.dsp.rr import resample_corrected_hr

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

#: Wide PVCs (QRS 170-240 ms, 1.4-2.2 mV) with a discordant T wave 1-1.5 x as tall: where
#: a fiducial can land on the deep S/T deflection 150 ms after the R peak.
WIDE_PVC = {"pvc_widening": (2.5, 3.5), "pvc_mv": (1.4, 2.2), "pvc_t_ratio": (1.0, 1.5)}

#: A detector under test: (ecg, fs, blank mask or None) -> (indices, classes).
Detector = Callable[[np.ndarray, float, np.ndarray | None], tuple[np.ndarray, np.ndarray]]


def stimloop_detector(x: np.ndarray, fs: float, blank: np.ndarray | None = None):
    return detect_beats(x, fs, blank=blank)


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rec = wfdb.rdrecord(str(DATA))
    ann = wfdb.rdann(str(DATA), "atr")
    sym = np.asarray(ann.symbol)
    keep = np.array([s in BEAT_SYMBOLS for s in sym])
    return rec.p_signal.astype(np.float64), np.asarray(ann.sample, np.int64)[keep], sym[keep]


def match(det: np.ndarray, ref: np.ndarray, tol: int) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest matching: (offset in samples or NaN, matched det index or -1)."""
    det = np.asarray(det, np.int64)
    used = np.zeros(det.size, bool)
    off = np.full(ref.size, np.nan)
    idx = np.full(ref.size, -1)
    for k, r in enumerate(ref):
        lo = np.searchsorted(det, r - tol)
        hi = np.searchsorted(det, r + tol, side="right")
        best, bd = -1, tol + 1
        for m in range(lo, hi):
            if not used[m] and abs(det[m] - r) < bd:
                best, bd = m, abs(det[m] - r)
        if best >= 0:
            used[best] = True
            off[k] = det[best] - r
            idx[k] = best
    return off, idx


def score(det: np.ndarray, ref: np.ndarray, tol: int, fs: float = FS) -> dict[str, float]:
    """Se, PPV, F1, FN, FP at ``tol`` samples, F1 at 150 ms, and |offset| p95 in ms."""
    det = np.sort(np.asarray(det, np.int64))
    out: dict[str, float] = {}
    off, _ = match(det, ref, tol)
    tp = int(np.isfinite(off).sum())
    out.update(
        se=tp / ref.size,
        ppv=tp / det.size if det.size else 0.0,
        f1=2 * tp / (ref.size + det.size),
        fn=int(ref.size - tp),
        fp=int(det.size - tp),
    )
    off150, _ = match(det, ref, round(0.15 * fs))
    tp150 = int(np.isfinite(off150).sum())
    out["f1_150ms"] = 2 * tp150 / (ref.size + det.size)
    out["abs_offset_ms_p95_150ms"] = float(np.nanpercentile(np.abs(off150), 95) / fs * 1e3)
    return out


def nk_detect(x: np.ndarray, method: str, fs: float = FS) -> np.ndarray:
    import neurokit2 as nk

    clean = nk.ecg_clean(
        x, sampling_rate=int(fs), method=method if method in OWN_CLEANER else "neurokit"
    )
    _, info = nk.ecg_peaks(clean, sampling_rate=int(fs), method=method)
    return np.asarray(info["ECG_R_Peaks"], np.int64)


def nk_detector(x: np.ndarray, fs: float, blank: np.ndarray | None = None):
    p = nk_detect(x, "neurokit", fs)
    return p, np.zeros(p.size, np.uint8)


def beats_of(det: Detector, x: np.ndarray, fs: float, blank=None) -> np.ndarray:
    idx, cls = det(x, fs, blank)
    return np.asarray(idx, np.int64)[np.asarray(cls) != BEAT_ARTIFACT]


def delays(x: np.ndarray, ref: np.ndarray, chunk: int) -> np.ndarray:
    det = RPeakDetector(FS)
    peaks, at = [], []
    for i in range(0, x.size, chunk):
        p = det.update(x[i : i + chunk])
        p = p[det.last_class != BEAT_ARTIFACT]
        peaks.append(p)
        at.append(np.full(p.size, min(i + chunk, x.size)))
    peaks_a = np.concatenate(peaks)
    at_a = np.concatenate(at)
    _off, idx = match(peaks_a, ref, round(TOL_S * FS))
    ok = idx >= 0
    return (at_a[idx[ok]] - ref[ok]) / FS * 1e3


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


# --- ectopic beats -------------------------------------------------------------------


def sim_records(seeds: list[int], fs: float = FS, **kw) -> list[tuple[np.ndarray, object]]:
    return [simulate_arrhythmia(120.0, fs, seed=s, **kw) for s in seeds]


def fiducial_rows(det: Detector, name: str, x, ref, ref_class, classes, fs) -> list[dict]:
    """|offset| per class (ms) of the detections matched within 150 ms."""
    beats = beats_of(det, x, fs)
    off, _ = match(beats, ref, round(0.15 * fs))
    rows = []
    for c in classes:
        o = np.abs(off[ref_class == c]) / fs * 1e3
        found = o[np.isfinite(o)]
        rows.append(
            {
                "method": name,
                "class": c,
                "n": int(o.size),
                "found": int(found.size),
                "median_ms": float(np.median(found)) if found.size else float("nan"),
                "p95_ms": float(np.percentile(found, 95)) if found.size else float("nan"),
                "over_50ms": int(np.sum(found > 50.0)),
            }
        )
    return rows


def _class_row(data: str, name: str, c: str, o: np.ndarray) -> dict:
    found = o[np.isfinite(o)]
    return {
        "data": data,
        "method": name,
        "class": c,
        "n": int(o.size),
        "found": int(found.size),
        "median_ms": float(np.median(found)) if found.size else float("nan"),
        "p95_ms": float(np.percentile(found, 95)) if found.size else float("nan"),
        "over_50ms": int(np.sum(found > 50.0)),
    }


def fiducials(det: Detector, name: str, x, ref, sym, seeds) -> list[dict]:
    """Fiducial error per beat class on MIT-BIH 100 and the arrhythmia generator."""
    rows = []
    tol = round(0.15 * FS)
    for lead, lname in ((0, "MLII"), (1, "V5")):
        off, _ = match(beats_of(det, x[:, lead], FS), ref, tol)
        for c in ("N", "A", "V"):
            rows.append(
                _class_row(f"MIT-BIH 100 {lname}", name, c, np.abs(off[sym == c]) / FS * 1e3)
            )
    for data, kw in (
        ("sim upright lead", {}),
        ("sim inverted lead", {"invert": True}),
        ("sim wide PVC, tall T", WIDE_PVC),
    ):
        pooled: dict[str, list[float]] = {c: [] for c in ("N", "S", "V")}
        for y, tr in sim_records(seeds, pvc_per_min=6, apc_per_min=6, **kw):
            off, _ = match(beats_of(det, y, FS), tr.r_index, tol)
            for c in pooled:
                pooled[c].extend(np.abs(off[tr.beat_class == c]) / FS * 1e3)
        for c, o in pooled.items():
            rows.append(_class_row(data, name, c, np.asarray(o)))
    return rows


# --- steps and motion ----------------------------------------------------------------


def add_steps(x: np.ndarray, ref: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, list]:
    """Electrode-pop steps (0.5-3 mV, decaying over 0.3-3 s), none within 120 ms of a beat."""
    rng = np.random.default_rng(seed)
    y = x.copy()
    t = np.arange(y.size) / FS
    cand = rng.integers(int(5 * FS), y.size - int(FS), 2 * n)
    steps = [s for s in cand if np.min(np.abs(ref - s)) > 0.12 * FS][:n]
    for s in steps:
        size = rng.uniform(0.5, 3.0) * rng.choice([-1.0, 1.0])
        y[s:] += size * np.exp(-(t[s:] - t[s]) / rng.uniform(0.3, 3.0))
    return y, steps


def artifact_rows(det: Detector, name: str, x, ref, seeds) -> list[dict]:
    rows = []
    tol = round(TOL_S * FS)
    y, _steps = add_steps(x[:, 0], ref, 200)
    idx, cls = det(y, FS, None)
    s = score(np.asarray(idx)[np.asarray(cls) != BEAT_ARTIFACT], ref, tol)
    rows.append(
        {
            "data": "MIT-BIH 100 MLII + 200 steps",
            "method": name,
            "f1": s["f1"],
            "fn": s["fn"],
            "false_beats": s["fp"],
            "artifacts": int(np.sum(np.asarray(cls) == BEAT_ARTIFACT)),
            "true_beats": int(ref.size),
        }
    )
    for label, kw in (
        ("sim, 6 steps/min", {"steps_per_min": 6.0}),
        ("sim, motion 0.2 mV", {"motion_per_min": 3.0, "motion_mv": 0.2}),
        ("sim, motion 0.4 mV", {"motion_per_min": 3.0, "motion_mv": 0.4}),
    ):
        tp = fn = fp = n_true = n_art = 0
        for y, tr in sim_records(seeds, **kw):
            idx, cls = det(y, FS, None)
            beats = np.asarray(idx)[np.asarray(cls) != BEAT_ARTIFACT]
            off, _ = match(beats, tr.r_index, tol)
            hit = int(np.isfinite(off).sum())
            tp += hit
            fn += tr.r_index.size - hit
            fp += beats.size - hit
            n_true += tr.r_index.size
            n_art += int(np.sum(np.asarray(cls) == BEAT_ARTIFACT))
        rows.append(
            {
                "data": label,
                "method": name,
                "f1": 2 * tp / (2 * tp + fn + fp),
                "fn": fn,
                "false_beats": fp,
                "artifacts": n_art,
                "true_beats": n_true,
            }
        )
    return rows


# --- beat classes ----------------------------------------------------------------------


def _nk_flags(peaks: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk

    info, _ = nk.signal_fixpeaks(peaks, sampling_rate=int(fs), method="Kubios", iterative=False)
    flag = np.zeros(peaks.size, bool)
    for k in ("ectopic", "missed", "extra", "longshort"):
        ii = np.asarray(info[k], int)
        flag[ii[(ii >= 0) & (ii < peaks.size)]] = True
    return flag


def class_rows(det: Detector | None, name: str, x, ref, sym, seeds) -> list[dict]:
    """Ectopic sensitivity (S, V) and false ectopic rate (N) per data set."""
    rows = []
    sets = [
        (
            "MIT-BIH 100 MLII",
            x[:, 0],
            ref,
            np.where(sym == "N", "N", np.where(sym == "V", "V", "S")),
        )
    ]
    for rate in (6, 1):
        for y, tr in sim_records(seeds, pvc_per_min=rate, apc_per_min=rate):
            sets.append((f"sim, {rate} PVC + {rate} APC /min", y, tr.r_index, tr.beat_class))
    pooled: dict[str, dict[str, list]] = {}
    for data, y, rf, rc in sets:
        ect = rc != "N"
        if det is None:  # NeuroKit2 Kubios on the true R peaks
            flag = _nk_flags(rf, FS)
            got = flag | np.r_[flag[1:], False]  # the beat or the next one flagged
            false = flag & ~ect & ~np.r_[False, ect[:-1]]
            acc = pooled.setdefault(data, {"S": [], "V": [], "N": []})
            for c in ("S", "V"):
                acc[c].extend(got[rc == c])
            acc["N"].extend(false[rc == "N"])
            continue
        idx, cls = det(y, FS, None)
        idx, cls = np.asarray(idx), np.asarray(cls)
        beats, bcls = idx[cls != BEAT_ARTIFACT], cls[cls != BEAT_ARTIFACT]
        _, m = match(beats, rf, round(TOL_S * FS))
        c_of = np.where(m >= 0, bcls[np.maximum(m, 0)], 255)
        acc = pooled.setdefault(data, {"S": [], "V": [], "N": []})
        for c in ("S", "V"):
            acc[c].extend(c_of[rc == c] == BEAT_ECTOPIC)
        acc["N"].extend(c_of[rc == "N"] == BEAT_ECTOPIC)
    for data, acc in pooled.items():
        rows.append(
            {
                "data": data,
                "method": name,
                "apc_found": f"{int(np.sum(acc['S']))}/{len(acc['S'])}",
                "pvc_found": f"{int(np.sum(acc['V']))}/{len(acc['V'])}",
                "normal_flagged": f"{int(np.sum(acc['N']))}/{len(acc['N'])}",
                "apc_sensitivity": float(np.mean(acc["S"])) if acc["S"] else float("nan"),
                "pvc_sensitivity": float(np.mean(acc["V"])) if acc["V"] else float("nan"),
                "normal_false_rate": float(np.mean(acc["N"])),
            }
        )
    return rows


# --- corrected heart rate --------------------------------------------------------------


def hr_rows(seeds: list[int], rate: float) -> list[dict]:
    """4 Hz HR against the sinus rate, with ectopic beats (see the module text)."""
    import neurokit2 as nk

    errs: dict[str, list[np.ndarray]] = {}
    fs = FS
    for y, tr in sim_records(seeds, pvc_per_min=rate, apc_per_min=rate):
        grid = np.arange(int(5 * fs), y.size - int(2 * fs), int(fs / 4))
        # the sinus rate of the interval ending at each beat, linear between beats
        truth = np.interp(grid, tr.r_index, 60.0 / tr.sinus_rr_s)
        # score the 3 s after each ectopic beat and the normal stretches alike
        idx, cls = detect_beats(y, fs)
        g, hr = resample_corrected_hr(idx, cls, fs, rate_hz=4.0, n_samples=y.size)
        errs.setdefault("stimloop resample_corrected_hr (causal beats)", []).append(
            np.interp(grid, g, hr) - truth
        )
        up = HeartMonitor(fs).update(y)
        s = up.series
        errs.setdefault("stimloop HeartRate live series (hold)", []).append(
            np.interp(grid, s["index"], s["hr_bpm"]) - truth
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, fixed = nk.signal_fixpeaks(
                tr.r_index, sampling_rate=int(fs), method="Kubios", iterative=True
            )
        fixed = np.asarray(fixed, float)
        hr_nk = 60.0 * fs / np.diff(fixed)
        errs.setdefault("nk2 signal_fixpeaks Kubios (true peaks)", []).append(
            np.interp(grid, fixed[1:], hr_nk) - truth
        )
        hr_raw = 60.0 * fs / np.diff(tr.r_index)
        errs.setdefault("uncorrected (true peaks)", []).append(
            np.interp(grid, tr.r_index[1:], hr_raw) - truth
        )
    rows = []
    for name, e in errs.items():
        a = np.abs(np.concatenate(e))
        valid = np.isfinite(a)
        a = a[valid]
        rows.append(
            {
                "ectopy": f"{rate:g} PVC + {rate:g} APC /min",
                "method": name,
                "valid_fraction": float(valid.mean()),
                "mae_bpm": float(np.mean(a)),
                "p95_bpm": float(np.percentile(a, 95)),
                "max_bpm": float(np.max(a)),
                "n": int(a.size),
            }
        )
    return rows


# --- TMS trains ------------------------------------------------------------------------


def tms_rows(det: Detector, name: str, seeds: list[int], blanking: bool) -> list[dict]:
    rows = []
    for fs in (250.0, 500.0, 1000.0):
        tp = fn = fp = 0
        tp_in = n_in = 0
        for s in seeds:
            y, tr = simulate_arrhythmia(160.0, fs, seed=s, pvc_per_min=2, apc_per_min=2)
            pulses = train_pulses(fs, y.size, rate_hz=10.0, on_s=5.0, off_s=11.0, start_s=5.0)
            y = y + tms_artifacts(y.size, fs, pulses, seed=s)
            blank = pulse_blank_mask(pulses, 0, y.size, fs) if blanking else None
            beats = beats_of(det, y, fs, blank)
            off, _ = match(beats, tr.r_index, round(TOL_S * fs))
            hit = int(np.isfinite(off).sum())
            tp += hit
            fn += tr.r_index.size - hit
            fp += beats.size - hit
            in_train = np.zeros(y.size, bool)
            for p in pulses:
                in_train[p : p + round(0.1 * fs)] = True
            sel = in_train[tr.r_index]
            tp_in += int(np.isfinite(off[sel]).sum())
            n_in += int(sel.sum())
        rows.append(
            {
                "method": name,
                "blanking": blanking,
                "fs": fs,
                "f1": 2 * tp / (2 * tp + fn + fp),
                "fn": fn,
                "fp": fp,
                "se_in_trains": tp_in / n_in,
            }
        )
    return rows


# --- main ------------------------------------------------------------------------------


def run(args: argparse.Namespace, det: Detector = stimloop_detector, label: str = "stimloop"):
    """Every figure of this bench, as one dict (``det`` lets an older detector be run)."""
    import neurokit2 as nk

    x, ref, sym = load()
    tol = round(TOL_S * FS)
    seeds = list(range(100, 100 + args.seeds))
    rows = []
    for lead, name in enumerate(("MLII", "V5")):
        sig = x[:, lead]
        beats_of(det, sig[:1000], FS)  # warm-up
        times = []
        for _ in range(5):
            t = time.perf_counter()
            peaks = beats_of(det, sig, FS)
            times.append(time.perf_counter() - t)
        row = {"method": f"{label} (causal)", "lead": name, **score(peaks, ref, tol)}
        row["time_s"] = min(times)
        if det is stimloop_detector:
            d = delays(sig, ref, round(0.01 * FS))
            row.update(
                delay_ms_p50=float(np.percentile(d, 50)), delay_ms_p95=float(np.percentile(d, 95))
            )
        rows.append(row)
        for m in args.methods.split(",") if args.methods else []:
            t = time.perf_counter()
            try:
                p = nk_detect(sig, m)
            except Exception as exc:  # a method failing is a result, not a crash
                rows.append({"method": f"nk2 {m}", "lead": name, "error": repr(exc)[:80]})
                continue
            el = time.perf_counter() - t
            rows.append({"method": f"nk2 {m}", "lead": name, **score(p, ref, tol), "time_s": el})

    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "neurokit2": nk.__version__,
        },
        "record": "MIT-BIH 100, 360 Hz, 30 min",
        "beats_reference": int(ref.size),
        "tolerance_ms": TOL_S * 1e3,
        "seeds": seeds,
        "accuracy": rows,
        "fiducials": fiducials(det, label, x, ref, sym, seeds)
        + (fiducials(nk_detector, "nk2 neurokit", x, ref, sym, seeds) if args.methods else []),
        "artifacts": artifact_rows(det, label, x, ref, seeds)
        + (artifact_rows(nk_detector, "nk2 neurokit", x, ref, seeds) if args.methods else []),
        "classes": class_rows(det, label, x, ref, sym, seeds)
        + class_rows(None, "nk2 Kubios (true peaks)", x, ref, sym, seeds),
        "tms": (tms_rows(det, label, seeds[:3], blanking=True) if det is stimloop_detector else [])
        + tms_rows(det, label, seeds[:3], blanking=False)
        + (tms_rows(nk_detector, "nk2 neurokit", seeds[:3], False) if args.methods else []),
    }
    if det is stimloop_detector:
        result["hr"] = hr_rows(seeds, 6) + hr_rows(seeds, 1)
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
        for m in args.window_methods.split(",") if args.window_methods else []:
            theirs = nk_window_cost(x[:, 0], m)
            cost[f"nk2_{m}_window10s_us_median"] = float(np.median(theirs))
            cost[f"nk2_{m}_speedup_x"] = float(np.median(theirs) / np.median(ours))
        result["update_cost"] = cost
    return result


def _f(v: float, fmt: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)


def print_report(result: dict) -> None:
    """The tables, from the same dict ``--json`` prints."""
    print(
        f"MIT-BIH 100: {result['beats_reference']} reference beats, tolerance "
        f"{result['tolerance_ms']:.0f} ms\n"
    )
    hdr = f"{'method':<24}{'lead':<6}{'Se':>8}{'PPV':>8}{'F1':>8}{'FN':>5}{'FP':>5}{'time s':>9}"
    print(hdr + f"{'delay p50/p95 ms':>18}{'F1@150ms':>10}{'|off| p95 ms':>14}")
    for r in result["accuracy"]:
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
    print(f"\nFiducial error per beat class, |detection - reference| ms (seeds {result['seeds']})")
    print(
        f"{'data':<22}{'method':<16}{'class':>6}{'found/n':>12}{'median':>8}{'p95':>8}{'>50ms':>7}"
    )
    for r in result["fiducials"]:
        print(
            f"{r['data']:<22}{r['method']:<16}{r['class']:>6}{r['found']:>7}/{r['n']:<4}"
            f"{_f(r['median_ms']):>8}{_f(r['p95_ms']):>8}{r['over_50ms']:>7}"
        )
    print("\nSteps and motion: beats that are not beats")
    print(f"{'data':<30}{'method':<16}{'F1':>8}{'FN':>6}{'false beats':>13}{'artifacts':>11}")
    for r in result["artifacts"]:
        print(
            f"{r['data']:<30}{r['method']:<16}{r['f1']:>8.4f}{r['fn']:>6}{r['false_beats']:>13}"
            f"{r['artifacts']:>11}"
        )
    print("\nBeat classes (ectopic found / true; normal beats flagged / normal beats)")
    print(f"{'data':<26}{'method':<26}{'APC':>10}{'PVC':>9}{'normal flagged':>16}")
    for r in result["classes"]:
        print(
            f"{r['data']:<26}{r['method']:<26}{r['apc_found']:>10}{r['pvc_found']:>9}"
            f"{r['normal_flagged']:>16}"
        )
    if "hr" in result:
        print("\nHeart rate at 4 Hz against the sinus rate")
        print(f"{'ectopy':<22}{'method':<48}{'valid':>7}{'MAE bpm':>9}{'p95':>7}{'max':>7}")
        for r in result["hr"]:
            print(
                f"{r['ectopy']:<22}{r['method']:<48}{r['valid_fraction']:>7.3f}"
                f"{r['mae_bpm']:>9.2f}{r['p95_bpm']:>7.2f}{r['max_bpm']:>7.1f}"
            )
    print("\nR peaks during 10 Hz TMS trains (5 s on, 11 s off), injected artifacts")
    print(
        f"{'method':<16}{'blanking':>9}{'fs Hz':>7}{'F1':>8}{'FN':>6}{'FP':>6}{'Se in trains':>14}"
    )
    for r in result["tms"]:
        print(
            f"{r['method']:<16}{'yes' if r['blanking'] else 'no':>9}{r['fs']:>7.0f}{r['f1']:>8.4f}"
            f"{r['fn']:>6}{r['fp']:>6}{r['se_in_trains']:>14.4f}"
        )
    cost = result.get("update_cost")
    if not cost:
        return
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
    for k in [k for k in cost if k.endswith("_window10s_us_median")]:
        m = k[len("nk2_") : -len("_window10s_us_median")]
        print(
            f"  nk2 {m:<16} 10 s window median {cost[k]:9.1f} µs"
            f"   -> stimloop {cost[f'nk2_{m}_speedup_x']:.0f}x cheaper"
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print machine-readable figures")
    ap.add_argument("--seeds", type=int, default=6, help="simulated records per condition")
    ap.add_argument("--methods", default=",".join(METHODS), help="NeuroKit2 methods")
    ap.add_argument("--window-methods", default="neurokit,pantompkins1985",
                    help="NeuroKit2 methods timed on the sliding 10 s window")  # fmt: skip
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    warnings.simplefilter("ignore")  # NeuroKit2 warns about its own defaults
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
