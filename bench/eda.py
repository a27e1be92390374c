"""SCRs: stimloop's causal detector vs NeuroKit2's ``eda_process``, side by side.

Accuracy (simulated): ``EDAGenerator`` (bi-exponential SCRs, Bach et al. 2010 style;
log-normal amplitudes, median 0.15 µS; 2 non-specific SCRs/min plus one evoked SCR per
event, events every 8-20 s, so responses overlap), ``--seeds`` x 20 min at 100 Hz,
noise 0.002 µS. True SCRs ≥ 0.02 µS must be found; one-to-one matching of onsets within
0.5 s; F1, median |amplitude error| / true amplitude. stimloop runs causally
(``detect_scr``, identical to streaming); NeuroKit2 runs offline on the whole record with
its defaults (``eda_process``: 3 Hz low-pass, 0.05 Hz high-pass phasic, peaks kept if
their phasic height is ≥ 10 % of the largest), and again with ``eda_peaks(amplitude_min=0)``.

Accuracy (second, independently written generator): ``simulate_wearable_eda``
(``stimloop.devices.sim.wearable_eda``: canonical SCRF of Bach et al. 2010 and Bateman
SCRs of Benedek & Kaernbach 2010 with varied rise and decay, bursts of overlapping SCRs,
pink noise, motion steps and spikes, wearable quantisation: odd seeds 0.01 µS steps,
even seeds a 12-bit ADC on a voltage divider), ``--wearable-seeds`` x 20 min, the same
physiology at 4, 8, 16, 32, 100 and 1000 Hz. Same matching as above; true SCRs whose rise
a motion artifact or a 3 times larger SCR hides (labels ``near_artifact``, ``masked``)
need not be found. Artifact columns: labelled artifacts with a
motion flag (recall), share of clean samples flagged, and SCRs reported at artifacts that
match no true SCR (artifacts counted as SCRs). NeuroKit2 ``eda_process`` on the same
signals (it has no artifact flag).

Real data: the systole picture task (72 events, 1000 Hz): event-related SCRs (first onset
1-4 s after each event) from both detectors on the same events.

Wall time: 1 h of simulated EDA at 100 Hz and at 1000 Hz (stimloop best of 3 after
warm-up; NeuroKit2 one run).

Per-update cost: ``SCRDetector.update`` on a 10 ms chunk (1 sample at 100 Hz, 10 at
1000 Hz), timed over every chunk of 10 min, against recomputing ``eda_process`` on a
sliding 30 s window, which an offline method must do on each update to run live.

Old and new side by side: ``--baseline FILE`` (default ``bench/eda_baseline_main.json``,
the ``--json`` output of this script run on the detector as it was before issue #18, i.e.
``dsp/eda.py`` and ``dsp/eda_kernel.py`` of commit 689d6e8 with this script and these
generators) prints each figure as "old new"; the new one is this run. Accuracy figures
do not depend on the machine's load; the timing figures of the two runs do.

Usage: ``python bench/eda.py [--json] [--seeds 3] [--wearable-seeds 4] [--baseline FILE]``;
``--wearable-only`` runs the wearable table alone (stimloop only, about 10 s), and
``--wearable-first-seed 10`` scores a held-out set of seeds (10-13) instead of 1-4.
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

from stimloop.devices.sim.eda import EDAGenerator, simulate_labelled_eda
from stimloop.devices.sim.wearable_eda import WearableEDAConfig, simulate_wearable_eda
from stimloop.dsp.eda import (
    FLAG_MOTION,
    SCR_DTYPE,
    SCRDetector,
    decompose_eda,
    detect_scr,
    event_related_scr,
)
from stimloop.dsp.eda_score import score_artifacts, score_scrs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "eda" / "systole_task1_1000hz.npz"
BASELINE = Path(__file__).resolve().parent / "eda_baseline_main.json"
WEARABLE_RATES = (4.0, 8.0, 16.0, 32.0, 100.0, 1000.0)


def wearable_config(seed: int) -> WearableEDAConfig:
    """Odd seeds: 0.01 µS steps (wristband); even seeds: 12-bit ADC on a divider."""
    return WearableEDAConfig(quantisation="step" if seed % 2 else "divider")


def nk_scrs(x: np.ndarray, fs: float, amplitude_min: float | None = None) -> np.ndarray:
    """NeuroKit2 SCRs as an SCR_DTYPE array (onset, peak, amplitude)."""
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if amplitude_min is None:
            _, info = nk.eda_process(x, sampling_rate=int(fs))
        else:
            clean = nk.eda_clean(x, sampling_rate=int(fs))
            phasic = nk.eda_phasic(clean, sampling_rate=int(fs))["EDA_Phasic"].to_numpy()
            _, info = nk.eda_peaks(phasic, sampling_rate=int(fs), amplitude_min=amplitude_min)
    on = np.asarray(info["SCR_Onsets"], dtype=float)
    ok = np.isfinite(on)
    out = np.zeros(int(ok.sum()), dtype=SCR_DTYPE)
    out["onset"] = on[ok].astype(np.int64)
    out["peak"] = np.asarray(info["SCR_Peaks"])[ok]
    out["amplitude"] = np.asarray(info["SCR_Amplitude"])[ok]
    out["rise_time"] = np.asarray(info["SCR_RiseTime"])[ok]
    out["half_recovery"] = np.nan
    return out


def accuracy(seeds: int) -> dict[str, dict[str, float]]:
    fs = 100.0
    runs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "stimloop": [],
        "neurokit2 eda_process": [],
        "neurokit2 amplitude_min=0": [],
    }
    truths = []
    for seed in range(1, seeds + 1):
        x, truth, _ = simulate_labelled_eda(fs, 20.0, seed)
        truths.append(truth)
        for name, scrs in (
            ("stimloop", detect_scr(x, fs)),
            ("neurokit2 eda_process", nk_scrs(x, fs)),
            ("neurokit2 amplitude_min=0", nk_scrs(x, fs, 0.0)),
        ):
            runs[name].append((scrs["onset"] / fs, scrs["amplitude"]))
    out = {}
    for name, parts in runs.items():
        off = np.arange(len(parts)) * 10_000.0  # keep recordings apart on one time axis
        s = score_scrs(
            np.concatenate([p[0] + o for p, o in zip(parts, off, strict=True)]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([t["onset"] / fs + o for t, o in zip(truths, off, strict=True)]),
            np.concatenate([t["amplitude"] for t in truths]),
        )
        out[name] = s.as_dict()
    return out


def _pooled(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate per-recording arrays on one time axis (recordings 10^4 s apart)."""
    out = {}
    for key in parts[0]:
        shift = [i * 10_000.0 if key.endswith("_s") else 0 for i in range(len(parts))]
        out[key] = np.concatenate([p[key] + o for p, o in zip(parts, shift, strict=True)])
    return out


def wearable(
    seeds: int, minutes: float = 20.0, first_seed: int = 1, neurokit: bool = True
) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    names = ("stimloop", "neurokit2 eda_process") if neurokit else ("stimloop",)
    for fs in WEARABLE_RATES:
        det: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in names}
        truth: list[dict[str, np.ndarray]] = []
        art = {name: np.zeros(5, dtype=np.int64) for name in names}
        for seed in range(first_seed, first_seed + seeds):
            rec = simulate_wearable_eda(fs, minutes, seed, wearable_config(seed))
            s = rec.scrs
            truth.append(
                {
                    "onset_s": s["onset_s"],
                    "amp": s["amplitude"],
                    "optional": s["near_artifact"] | s["masked"],
                }
            )
            sig = decompose_eda(rec.eda_us, fs, strict=False)
            runs = [("stimloop", sig.scrs, (sig.flags & FLAG_MOTION) > 0)]
            if neurokit:
                no_flags = np.zeros(sig.flags.size, bool)
                runs.append(("neurokit2 eda_process", nk_scrs(rec.eda_us, fs), no_flags))
            for name, scrs, flagged in runs:
                det[name].append({"onset_s": scrs["onset"] / fs, "amp": scrs["amplitude"]})
                sa = score_artifacts(
                    flagged,
                    fs,
                    rec.artifacts["start_s"],
                    rec.artifacts["end_s"],
                    scrs["onset"] / fs,
                    s["onset_s"],
                )
                art[name] += (
                    sa.n_artifacts,
                    sa.found,
                    sa.clean_samples,
                    sa.clean_flagged,
                    sa.scrs_at_artifacts,
                )
        tr = _pooled(truth)
        res: dict[str, dict[str, float]] = {}
        for name in names:
            d = _pooled(det[name])
            sc = score_scrs(
                d["onset_s"], d["amp"], tr["onset_s"], tr["amp"], optional=tr["optional"]
            ).as_dict()
            n_art, found, clean, clean_fl, at_art = (int(v) for v in art[name])
            sc["artifacts"] = n_art
            sc["artifact_recall"] = found / n_art if n_art else float("nan")
            sc["false_flag_fraction"] = clean_fl / clean if name == "stimloop" else float("nan")
            sc["scrs_at_artifacts"] = at_art
            res[name] = sc
        out[f"{fs:g}"] = res
    return out


def real_data() -> dict[str, dict[str, float]]:
    d = np.load(DATA)
    fs = float(d["fs"])
    x = d["eda"].astype(np.float64)
    events = np.flatnonzero(d["stim"])
    minutes = x.size / fs / 60
    out = {}
    for name, scrs in (("stimloop", detect_scr(x, fs)), ("neurokit2 eda_process", nk_scrs(x, fs))):
        er = event_related_scr(scrs, events, fs)
        out[name] = {
            "events": len(events),
            "responses": int(er["responded"].sum()),
            "response_rate": float(er["responded"].mean()),
            "amplitude_median_us": float(np.nanmedian(er["amplitude"])),
            "latency_median_s": float(np.nanmedian(er["latency"])),
            "scrs": len(scrs),
            "scrs_per_min": len(scrs) / minutes,
            "_onsets": er["onset"],
            "_scr_onsets": scrs["onset"].astype(np.float64),
        }
    ours, theirs = (
        out["stimloop"].pop("_scr_onsets"),
        out["neurokit2 eda_process"].pop("_scr_onsets"),
    )
    dist = np.abs(ours[None, :] - theirs[:, None]).min(axis=1) / fs
    out["stimloop"]["nk_scrs_found"] = float(np.mean(dist <= 1.0))
    a, b = out["stimloop"].pop("_onsets"), out["neurokit2 eda_process"].pop("_onsets")
    out["agreement"] = {
        "both_respond": int(np.sum((a >= 0) & (b >= 0))),
        "only_stimloop": int(np.sum((a >= 0) & (b < 0))),
        "only_neurokit2": int(np.sum((a < 0) & (b >= 0))),
    }
    return out


def wall_time() -> dict[str, dict[str, float]]:
    import neurokit2 as nk

    out: dict[str, dict[str, float]] = {"stimloop": {}, "neurokit2 eda_process": {}}
    for fs in (100.0, 1000.0):
        gen = EDAGenerator(fs=fs, seed=1)
        x = np.concatenate([gen.generate(int(600 * fs))[0] for _ in range(6)])  # 1 h
        detect_scr(x[:1000], fs)  # compile / load the kernel cache
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            detect_scr(x, fs)
            best = min(best, time.perf_counter() - t0)
        out["stimloop"][f"1h_at_{fs:g}Hz_s"] = best
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nk.eda_process(x, sampling_rate=int(fs))
        out["neurokit2 eda_process"][f"1h_at_{fs:g}Hz_s"] = time.perf_counter() - t0
    return out


def update_cost() -> dict[str, dict[str, float]]:
    import neurokit2 as nk

    out: dict[str, dict[str, float]] = {"stimloop": {}, "neurokit2 eda_process": {}}
    for fs in (100.0, 1000.0):
        x, _, _ = simulate_labelled_eda(fs, 10.0, seed=2)
        step = round(0.01 * fs)
        det = SCRDetector(fs)
        det.warmup()
        times = []
        for i in range(0, x.size, step):
            t0 = time.perf_counter()
            det.update(x[i : i + step])
            times.append(time.perf_counter() - t0)
        t = np.asarray(times) * 1e6
        out["stimloop"][f"10ms_at_{fs:g}Hz_us_p50"] = float(np.percentile(t, 50))
        out["stimloop"][f"10ms_at_{fs:g}Hz_us_p99"] = float(np.percentile(t, 99))
        win = int(30 * fs)
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for k in range(100):
                seg = x[k * step * 50 : k * step * 50 + win]
                t0 = time.perf_counter()
                nk.eda_process(seg, sampling_rate=int(fs))
                times.append(time.perf_counter() - t0)
        t = np.asarray(times) * 1e6
        out["neurokit2 eda_process"][f"10ms_at_{fs:g}Hz_us_p50"] = float(np.percentile(t, 50))
        out["neurokit2 eda_process"][f"10ms_at_{fs:g}Hz_us_p99"] = float(np.percentile(t, 99))
    return out


def _finite_or_none(obj):
    """NaN and infinities as null, so the JSON is standard."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _get(d: dict | None, *keys: str):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _num(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


def _pair(old: dict | None, new: dict, keys: tuple[str, ...], spec: str, width: int) -> str:
    """A figure as "old new", right-aligned in ``width`` characters per value."""
    return f"{_num(_get(old, *keys), spec):>{width}s} {_num(_get(new, *keys), spec):>{width}s}"


def _counts(d: dict | None) -> str:
    if d is None:
        return "-"
    return f"{d['tp']}/{d['fp']}/{d['fn']}"


def _print_scores(old: dict | None, new: dict, prefix: str, label: str, width: int = 26) -> None:
    print(
        f"{prefix}{label:{width}s} {_num(_get(new, 'n_truth'), 'd'):>5s} "
        f"{_counts(old):>12s} {_counts(new):>12s} "
        f"{_pair(old, new, ('f1',), '.3f', 5)} "
        f"{_pair(old, new, ('amp_err_median',), '.3f', 5)} "
        f"{_pair(old, new, ('onset_err_median_s',), '.2f', 5)}",
        end="",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print machine-readable figures")
    ap.add_argument("--seeds", type=int, default=3, help="EDAGenerator 20-min recordings")
    ap.add_argument(
        "--wearable-seeds", type=int, default=4, help="simulate_wearable_eda 20-min recordings"
    )
    ap.add_argument(
        "--wearable-first-seed",
        type=int,
        default=1,
        help="first simulate_wearable_eda seed (held-out sets: e.g. 10; the baseline is 1-4)",
    )
    ap.add_argument(
        "--wearable-only",
        action="store_true",
        help="only the simulate_wearable_eda table, stimloop only (no NeuroKit2, no timing)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        default=BASELINE,
        help="--json output of the code before issue #18, printed as the 'old' figures",
    )
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    res: dict = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "wearable_seeds": list(
            range(args.wearable_first_seed, args.wearable_first_seed + args.wearable_seeds)
        ),
    }
    if not args.wearable_only:
        res["accuracy_simulated"] = accuracy(args.seeds)
    res["wearable"] = wearable(
        args.wearable_seeds, first_seed=args.wearable_first_seed, neurokit=not args.wearable_only
    )
    if not args.wearable_only:
        res["real_systole_event_related"] = real_data()
        res["wall_time_1h"] = wall_time()
        res["update_cost_10ms"] = update_cost()
    res["machine"]["bench_s"] = time.perf_counter() - t_start
    if args.json:
        print(json.dumps(_finite_or_none(res), indent=2))
        return 0
    old = json.loads(args.baseline.read_text()) if args.baseline.is_file() else None
    if old is not None and args.wearable_first_seed != 1:
        # The baseline ran on seeds 1.. of the wearable set: other seeds are not comparable.
        old = {k: v for k, v in old.items() if k != "wearable"}
    print(
        f"Each figure: old (before issue #18, {args.baseline.name if old else 'no baseline'}) "
        "then new (this run). SCRs >= 0.02 µS must be found; onsets match within 0.5 s."
    )
    head = (
        f"{'truth':>5s} {'TP/FP/FN old':>12s} {'TP/FP/FN new':>12s} {'F1 old/new':>11s} "
        f"{'|amp err| med':>11s} {'onset err s':>11s}"
    )
    if "accuracy_simulated" in res:
        print(f"\nSimulated (EDAGenerator): {args.seeds} x 20 min at 100 Hz")
        print(f"{'method':26s} {head}")
        for name, sc in res["accuracy_simulated"].items():
            _print_scores(_get(old, "accuracy_simulated", name), sc, "", name)
            print()
    seeds = res["wearable_seeds"]
    print(
        f"\nSimulated (simulate_wearable_eda): {args.wearable_seeds} x 20 min per rate "
        f"(seeds {seeds[0]}-{seeds[-1]}), "
        "SCRs hidden by an artifact or a 3x larger SCR need not be found"
    )
    print(
        f"{'Hz':>4s} {'method':21s} {head} {'art found':>11s} {'false flag %':>13s} "
        f"{'SCRs at art':>11s}"
    )
    for fs_key, by_method in res["wearable"].items():
        for name, sc in by_method.items():
            o = _get(old, "wearable", fs_key, name)
            short = "stimloop" if name == "stimloop" else "neurokit2"
            _print_scores(o, sc, f"{fs_key:>4s} ", short, 21)
            if name == "stimloop":
                ff_o = _get(o, "false_flag_fraction")
                ff_n = sc["false_flag_fraction"]
                print(
                    f" {_pair(o, sc, ('artifact_recall',), '.2f', 5)} "
                    f"{_num(None if ff_o is None else 100 * ff_o, '.2f'):>6s} "
                    f"{_num(100 * ff_n, '.2f'):>6s} "
                    f"{_pair(o, sc, ('scrs_at_artifacts',), 'd', 5)}"
                )
            else:
                print(f" {'':11s} {'':13s} {_pair(o, sc, ('scrs_at_artifacts',), 'd', 5)}")
    if args.wearable_only:
        print(f"bench wall time {res['machine']['bench_s']:.0f} s; {res['machine']['platform']}")
        return 0
    real = res["real_systole_event_related"]
    print("\nReal: systole picture task, 72 events, first SCR onset 1-4 s after the event")
    print(
        f"{'method':26s} {'responses':>9s} {'rate':>11s} {'amp med µS':>11s} "
        f"{'latency med s':>13s} {'SCRs/min':>11s} {'NK SCRs found':>13s}"
    )
    for name in ("stimloop", "neurokit2 eda_process"):
        r, o = real[name], _get(old, "real_systole_event_related", name)
        found = _pair(o, r, ("nk_scrs_found",), ".3f", 6) if name == "stimloop" else f"{'':13s}"
        print(
            f"{name:26s} {_pair(o, r, ('responses',), 'd', 4)} "
            f"{_pair(o, r, ('response_rate',), '.3f', 5)} "
            f"{_pair(o, r, ('amplitude_median_us',), '.3f', 5)} "
            f"{_pair(o, r, ('latency_median_s',), '.2f', 6)} "
            f"{_pair(o, r, ('scrs_per_min',), '.1f', 5)} {found}"
        )
    ag, ago = real["agreement"], _get(old, "real_systole_event_related", "agreement")
    print(
        "events (old new): both respond "
        f"{_pair(ago, ag, ('both_respond',), 'd', 2)}, only stimloop "
        f"{_pair(ago, ag, ('only_stimloop',), 'd', 2)}, only NeuroKit2 "
        f"{_pair(ago, ag, ('only_neurokit2',), 'd', 2)}"
    )
    print("\nWall time for 1 h of EDA (s) and per-update cost of a 10 ms chunk (µs p50, p99)")
    print(
        f"{'method':26s} {'1h@100Hz':>13s} {'1h@1kHz':>13s} {'upd@100Hz p50':>15s} "
        f"{'p99':>15s} {'upd@1kHz p50':>15s} {'p99':>15s}"
    )
    for name in ("stimloop", "neurokit2 eda_process"):
        w, u = res["wall_time_1h"][name], res["update_cost_10ms"][name]
        wo, uo = _get(old, "wall_time_1h", name), _get(old, "update_cost_10ms", name)
        print(
            f"{name:26s} {_pair(wo, w, ('1h_at_100Hz_s',), '.3f', 6)} "
            f"{_pair(wo, w, ('1h_at_1000Hz_s',), '.3f', 6)} "
            f"{_pair(uo, u, ('10ms_at_100Hz_us_p50',), '.1f', 7)} "
            f"{_pair(uo, u, ('10ms_at_100Hz_us_p99',), '.1f', 7)} "
            f"{_pair(uo, u, ('10ms_at_1000Hz_us_p50',), '.1f', 7)} "
            f"{_pair(uo, u, ('10ms_at_1000Hz_us_p99',), '.1f', 7)}"
        )
    print("(NeuroKit2 per-update: eda_process recomputed on a sliding 30 s window)")
    print(f"bench wall time {res['machine']['bench_s']:.0f} s; {res['machine']['platform']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
