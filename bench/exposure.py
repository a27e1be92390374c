"""Exposure sessions: the window-of-tolerance band on a simulated client, evoked SCRs on real data.

Simulated client (``stimloop.devices.sim.exposure``, ``--seeds`` sessions of 28.5 min:
5 min calibration rest, 6 repetitions of an exercise whose arousal habituates, 3 cues
each): EDA at 100 Hz and ECG at 500 Hz go through the live DSP (``SCRDetector`` at a
10 Hz level, ``HeartMonitor`` at 4 Hz), the markers through the exposure-marker parser,
and the arousal index and band through ``stimloop.dsp.arousal``. Scored against the
simulator's truth (the same index on perfectly measured physiology):

- band agreement from the end of the calibration, outside transitions (2 s before to
  dwell + 2 s after every true band change) and overall;
- alerts: fired no later than dwell + 1 s after due, for every true above-the-window
  episode long enough, and for the clear ones (the true index stays above high +
  hysteresis from 2 s into the episode until the alert is due);
- side by side: stimloop's band (hysteresis 0.25, dwell 3 s) and the plain band of the
  same index (no hysteresis, no dwell), the naive reference; and stimloop with the
  stage's tonic SCL as the level channel (``level='scl'``) instead of the mean skin
  conductance (SCL + phasic, the default), each against its own truth;
- live == offline: the index and band from ``ArousalMonitor`` fed in random chunks equal
  ``arousal_timeline`` on the whole session (exact);
- the habituation curve (peak arousal per exercise) against the truth's.

Real data: the systole picture task (72 events, codes 1 and 2, 1000 Hz): every event is
a cue; evoked SCRs per code from stimloop offline (one pass), stimloop live (0.5 s
chunks of random size, cues resolved incrementally by ``CueResponses``; must equal
offline exactly) and NeuroKit2's ``eda_process`` (offline) with the same 1-4 s rule.

Cost: ``ArousalMonitor.update`` per 100 ms of data, against recomputing
``arousal_timeline`` over the last 5 min at every update.

Usage: ``python bench/exposure.py [--json] [--seeds 5]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from stimloop.devices.sim.exposure import ExposureScenario, score_bands, simulate_exposure
from stimloop.dsp.arousal import (
    ArousalMonitor,
    arousal_timeline,
    band_states,
    calibrate,
)
from stimloop.dsp.eda import SCRDetector
from stimloop.dsp.exposure import (
    CUE_DTYPE,
    CueResponses,
    SCRTable,
    Series,
    cue_responses,
    cue_summary,
    eda_tables,
    exercise_physiology,
    habituation_curve,
    hr_series,
)
from stimloop.loop.exposure_markers import parse_exercises

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "eda" / "systole_task1_1000hz.npz"


def _pipeline(sim):
    sc = sim.scenario
    scrs, level = eda_tables(sim.eda_us, sc.eda_fs, 0.0, rate_hz=10.0)
    hr = hr_series(sim.ecg_mv, sc.ecg_fs, 0.0)
    log = parse_exercises(sim.markers)
    cal = calibrate(level, scrs, hr, *log.calibration(), params=sc.arousal)
    return scrs, level, hr, log, cal


def _live_equals_offline(scrs, level, hr, cal, sc, offline, seed) -> bool:
    """Feed the monitor in random chunks, each SCR and HR sample when it is known."""
    mon = ArousalMonitor(cal, sc.arousal, sc.bands)
    rng = np.random.default_rng(seed)
    parts, i = [], 0
    prev = h_prev = -np.inf
    while i < len(level):
        j = min(len(level), i + int(rng.integers(1, 60)))
        now = level.t[j - 1]
        mon.add_scrs(scrs.take((scrs.confirmed_t > prev) & (scrs.confirmed_t <= now)))
        # HR runs a little ahead of or behind the EDA, as two inlets do.
        h_now = max(h_prev, now + float(rng.uniform(-1.0, 1.0)))
        sel = (hr.t > h_prev) & (hr.t <= h_now)
        mon.add_hr(Series(hr.t[sel], hr.values[sel]))
        parts.append(mon.update(level.slice(i, j)))
        prev, h_prev, i = now, h_now, j
    sel = hr.t > h_prev
    mon.add_hr(Series(hr.t[sel], hr.values[sel]))
    parts.append(mon.flush())
    live = np.concatenate(parts)
    return all(
        np.array_equal(live[n], offline[n], equal_nan=live[n].dtype.kind == "f")
        for n in offline.dtype.names
    )


def simulated(seeds: int) -> dict:
    rows = []
    for seed in range(seeds):
        sim = simulate_exposure(ExposureScenario(seed=seed))
        sc, tr = sim.scenario, sim.truth
        scrs, level, hr, log, cal = _pipeline(sim)
        tl = arousal_timeline(level, scrs, hr, cal, sc.arousal, sc.bands)
        ours = score_bands(tr, tl["t"], tl["state"], tl["alert"], cal.end_t)
        plain_bands = replace(sc.bands, hysteresis=0.0, min_dwell_s=0.0)
        plain = band_states(tl["t"], tl["index"], plain_bands)
        naive = score_bands(tr, tl["t"], plain.state, plain.alert, cal.end_t)
        figs = exercise_physiology(
            log.intervals(), scrs=scrs, level=level, hr=hr, cue_t=log.cue_times(),
            arousal=Series(tl["t"], tl["index"]), band=Series(tl["t"], tl["state"]),
        )  # fmt: skip
        curve = habituation_curve(figs)
        rho = float(spearmanr(curve.value, tr.expressed_peaks).statistic)
        k = np.round(tl["t"] * 10).astype(np.int64)
        after = tl["t"] >= cal.end_t
        err = tl["index"][after] - tr.index[k[after]]
        cues = np.concatenate([f.cues for f in figs])
        # The same session scored with the tonic SCL as the level channel (its truth: the
        # index of the noise-free tonic level); the signals are identical (same seed).
        sc_scl = replace(sc, arousal=replace(sc.arousal, level="scl"))
        tr_scl = simulate_exposure(sc_scl).truth
        cal_scl = calibrate(level, scrs, hr, *log.calibration(), params=sc_scl.arousal)
        tl_scl = arousal_timeline(level, scrs, hr, cal_scl, sc_scl.arousal, sc.bands)
        tonic = score_bands(tr_scl, tl_scl["t"], tl_scl["state"], tl_scl["alert"], cal.end_t)
        rows.append(
            {
                "seed": seed,
                "stimloop": asdict(ours),
                "plain band": asdict(naive),
                "stimloop, tonic SCL": asdict(tonic),
                "live_equals_offline": _live_equals_offline(scrs, level, hr, cal, sc, tl, seed),
                "index_error_bias": float(np.nanmean(err)),
                "index_error_sd": float(np.nanstd(err)),
                "calibration_raw_sd": list(cal.raw_sd),
                "habituation_est": [float(v) for v in curve.value],
                "habituation_true": [float(v) for v in tr.expressed_peaks],
                "habituation_rho": rho,
                "habituation_slope_est": curve.slope_per_exercise,
                "cue_response_rate": float(cues["responded"].mean()),
                "cue_true_scr": int(np.isfinite(tr.cue_scr_onset_t).sum()),
                "cues": len(cues),
                "marker_issues": len(log.issues) + len(log.rejected),
            }
        )
    out: dict = {"sessions": rows}
    for name in ("stimloop", "plain band", "stimloop, tonic SCL"):
        s = [r[name] for r in rows]
        delays = [d for x in s for d in x["alert_delays_s"]]
        out[name] = {
            "agreement_outside_min": min(x["agreement_outside"] for x in s),
            "agreement_outside_mean": float(np.mean([x["agreement_outside"] for x in s])),
            "agreement_outside_pooled": float(
                sum(x["agreement_outside"] * x["samples"] * (1 - x["excluded_fraction"]) for x in s)
                / sum(x["samples"] * (1 - x["excluded_fraction"]) for x in s)
            ),
            "agreement_unambiguous_mean": float(np.mean([x["agreement_unambiguous"] for x in s])),
            "agreement_unambiguous_min": min(x["agreement_unambiguous"] for x in s),
            "ambiguous_fraction_mean": float(np.mean([x["ambiguous_fraction"] for x in s])),
            "agreement_all_mean": float(np.mean([x["agreement_all"] for x in s])),
            "excluded_fraction_mean": float(np.mean([x["excluded_fraction"] for x in s])),
            "truth_changes": sum(x["truth_changes"] for x in s),
            "est_changes": sum(x["est_changes"] for x in s),
            "alerts_due": sum(x["alerts_due"] for x in s),
            "alerts_on_time": sum(x["alerts_on_time"] for x in s),
            "alerts_late": sum(x["alerts_late"] for x in s),
            "alerts_missed": sum(x["alerts_missed"] for x in s),
            "clear_due": sum(x["clear_due"] for x in s),
            "clear_on_time": sum(x["clear_on_time"] for x in s),
            "false_alerts": sum(x["false_alerts"] for x in s),
            "delay_median_s": float(np.median(delays)) if delays else None,
            "delay_max_s": float(np.max(delays)) if delays else None,
            "max_delay_allowed_s": s[0]["max_delay_s"],
        }
    return out


def _nk_table(x: np.ndarray, fs: float) -> SCRTable:
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.eda_process(x, sampling_rate=int(fs))
    on = np.asarray(info["SCR_Onsets"], dtype=float)
    ok = np.isfinite(on)
    return SCRTable(
        on[ok] / fs,
        np.asarray(info["SCR_Peaks"], dtype=float)[ok] / fs,
        np.asarray(info["SCR_Amplitude"], dtype=float)[ok],
        np.full(int(ok.sum()), np.nan),
        np.asarray(info["SCR_RiseTime"], dtype=float)[ok],
    )


def systole_cues(chunk_s: float = 0.5, seed: int = 11) -> dict:
    """Evoked SCRs per event code on the systole recording: offline, live, NeuroKit2."""
    d = np.load(DATA)
    fs = float(d["fs"])
    x = d["eda"].astype(np.float64)
    stim = d["stim"]
    idx = np.flatnonzero(stim)
    codes = stim[idx].astype(int)
    cue_t = idx / fs
    scrs, _ = eda_tables(x, fs, 0.0)
    offline = cue_responses(scrs, cue_t)
    # Live: chunks of random size around chunk_s; each cue registered when its sample
    # arrives; resolved cues collected as they come.
    det, live_cues = SCRDetector(fs), CueResponses()
    rng = np.random.default_rng(seed)
    parts, i, k = [], 0, 0
    t_all = np.arange(x.size) / fs
    while i < x.size:
        j = min(x.size, i + int(rng.integers(1, int(2 * chunk_s * fs))))
        while k < idx.size and idx[k] < j:
            live_cues.add_cue(float(cue_t[k]))
            k += 1
        new = det.update(x[i:j], t_all[i:j])
        parts.append(
            live_cues.update(SCRTable.from_events(new, t_all[new["confirmed"]]), t_all[j - 1])
        )
        i = j
    parts.append(live_cues.update(SCRTable.empty(), t_all[-1] + 60.0))
    live = np.concatenate(parts) if parts else np.zeros(0, CUE_DTYPE)
    live = live[np.argsort(live["t"], kind="stable")]
    same = len(live) == len(offline) and all(
        np.array_equal(live[n], offline[n], equal_nan=offline[n].dtype.kind == "f")
        for n in CUE_DTYPE.names
    )
    nk_rows = cue_responses(_nk_table(x, fs), cue_t)
    return {
        "events": int(idx.size),
        "codes": {str(c): int((codes == c).sum()) for c in sorted(set(codes.tolist()))},
        "stimloop offline": cue_summary(offline, codes),
        "stimloop live": cue_summary(live, codes),
        "neurokit2 eda_process": cue_summary(nk_rows, codes),
        "live_equals_offline": bool(same),
    }


def cost() -> dict:
    """Per-update cost of the live index against recomputing a 5-min window each time."""
    sim = simulate_exposure(ExposureScenario(seed=0))
    sc = sim.scenario
    scrs, level, _, _, cal = _pipeline(sim)
    mon = ArousalMonitor(cal, sc.arousal, sc.bands, use_hr=False)
    mon.add_scrs(scrs)
    upd, rec = [], []
    n = len(level)
    for i in range(3000, n):
        t0 = time.perf_counter()
        mon.update(level.slice(i, i + 1))
        upd.append(time.perf_counter() - t0)
    for i in range(3000, 3000 + 200):
        lo = max(0, i - 3000)
        t0 = time.perf_counter()
        arousal_timeline(level.slice(lo, i + 1), scrs, None, cal, sc.arousal, sc.bands)
        rec.append(time.perf_counter() - t0)
    us = 1e6
    return {
        "ArousalMonitor.update (1 sample, 100 ms)": {
            "p50_us": float(np.percentile(upd, 50) * us),
            "p99_us": float(np.percentile(upd, 99) * us),
        },
        "arousal_timeline over the last 5 min": {
            "p50_us": float(np.percentile(rec, 50) * us),
            "p99_us": float(np.percentile(rec, 99) * us),
        },
    }


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print machine-readable figures")
    ap.add_argument("--seeds", type=int, default=5, help="simulated 28.5-min sessions")
    args = ap.parse_args(argv)
    res = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "simulated": simulated(args.seeds),
        "systole": systole_cues(),
        "cost": cost(),
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    sim = res["simulated"]
    print(f"Simulated client: {args.seeds} sessions x 28.5 min; band vs truth after calibration")
    print(
        f"{'method':31s} {'agree out':>11s} {'unambiguous':>11s} {'all':>5s} {'excl':>5s} "
        f"{'ambig':>5s} {'changes':>8s} {'alerts on time':>14s} {'clear':>6s} {'late':>4s} "
        f"{'miss':>4s} {'false':>5s} {'delay med/max s':>15s}"
    )
    labels = {
        "stimloop": "stimloop (hyst 0.25, dwell 3 s)",
        "plain band": "plain band, same index",
        "stimloop, tonic SCL": "stimloop, level='scl'",
    }
    for name, label in labels.items():
        s = sim[name]
        print(
            f"{label:31s} {s['agreement_outside_mean']:.3f} ({s['agreement_outside_min']:.2f}) "
            f"{s['agreement_unambiguous_mean']:.3f} ({s['agreement_unambiguous_min']:.2f}) "
            f"{s['agreement_all_mean']:5.3f} {s['excluded_fraction_mean']:5.2f} "
            f"{s['ambiguous_fraction_mean']:5.2f} {s['est_changes']:4d}/{s['truth_changes']:<3d} "
            f"{s['alerts_on_time']:8d}/{s['alerts_due']:<5d} "
            f"{s['clear_on_time']:3d}/{s['clear_due']:<2d} "
            f"{s['alerts_late']:4d} {s['alerts_missed']:4d} {s['false_alerts']:5d} "
            f"{_fmt(s['delay_median_s'])}/{_fmt(s['delay_max_s'])}"
        )
    print(
        "(mean over sessions, lowest in brackets; 'agree out': outside transitions, 2 s before "
        "to dwell + 2 s after a true change;\n 'unambiguous': also leaving out samples whose "
        "true index is within the hysteresis of an edge; allowed alert delay: dwell + 1 s = "
        f"{sim['stimloop']['max_delay_allowed_s']:g} s)"
    )
    print(
        f"\n{'seed':>4s} {'agree out':>9s} {'unambig':>7s} {'index err bias/sd':>17s} "
        f"{'live==offline':>13s} {'habituation rho':>15s} {'cue resp':>8s}"
    )
    for r in sim["sessions"]:
        print(
            f"{r['seed']:4d} {r['stimloop']['agreement_outside']:9.3f} "
            f"{r['stimloop']['agreement_unambiguous']:7.3f} "
            f"{r['index_error_bias']:+8.2f}/{r['index_error_sd']:<8.2f} "
            f"{'yes' if r['live_equals_offline'] else 'NO':>13s} {r['habituation_rho']:15.2f} "
            f"{r['cue_response_rate']:8.2f}"
        )
    r0 = sim["sessions"][0]
    print("habituation (peak arousal per exercise), seed 0: est "
          + " ".join(f"{v:.1f}" for v in r0["habituation_est"]) + " | true "
          + " ".join(f"{v:.1f}" for v in r0["habituation_true"]))  # fmt: skip
    sy = res["systole"]
    print(f"\nReal: systole picture task, {sy['events']} events {sy['codes']}, each a cue; "
          "first SCR onset 1-4 s after it")  # fmt: skip
    print(f"{'method':26s} {'code':>4s} {'n':>3s} {'resp':>4s} {'rate':>6s} {'amp mean µS':>11s} "
          f"{'amp med µS':>10s} {'latency med s':>13s}")  # fmt: skip
    for name in ("stimloop offline", "stimloop live", "neurokit2 eda_process"):
        for code, s in sy[name].items():
            print(
                f"{name:26s} {code:>4s} {s['n']:3d} {s['responded']:4d} "
                f"{_fmt(s['response_rate']):>6s} {_fmt(s['amplitude_mean_us']):>11s} "
                f"{_fmt(s['amplitude_median_us']):>10s} {_fmt(s['latency_median_s']):>13s}"
            )
    print(f"live (random chunks ~0.5 s) equals offline for every cue and field: "
          f"{'yes' if sy['live_equals_offline'] else 'NO'}")  # fmt: skip
    print("\nCost per update (µs)")
    for name, c in res["cost"].items():
        print(f"{name:44s} p50 {c['p50_us']:9.1f}   p99 {c['p99_us']:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
