"""Artifacts at the target electrode: how long the phase-locked protocol is out, before/after.

Drives :class:`~stimloop.loop.phase_locked.PhaseLockedProtocol` offline on the real
EEGMAT recording (``../shared/data/eeg/eegmat_subject00_rest.edf``, Hjorth C3 with F3,
T3, P3, Cz; IAF tracked, the protocol's defaults except 0.3 s between pulses and no
jitter, so that requests follow the gates), through the EEG inlet's gap policy
(:class:`~stimloop.stream.chunk.ChunkAssembler`), in 10 ms and in 1 s chunks. Every
request is delivered at its planned time. The recording's first 180 s (its last 2 s
are flat) are tiled ``--tiles`` times so that slow recoveries can be seen.

Cases (issue #15, finding 4), each against the clean run with the same chunking:

- one 200 ms step added to C3 at ``--at`` s, of 1 mV, 5 mV, 300 mV and 1e30 µV;
- C3 railed at 3e5 µV from ``--at`` s to the end, and for the whole recording.

Per case, times in s from the step's end, each against the clean run: ``open_s``, to
the end of the last 5 s window in which the confidence gate (``min_confidence``) was
open less than half as often as in the clean run ("the estimator is silenced");
``resume_s``, likewise for the number of pulse requests (10 ms chunks only: in 1 s
chunks too few requests fall in a window); ``agree_s``, to the end of the last 1 s
window whose median phase difference to the clean run exceeds 10° (on samples where
the clean run passes the gate; a window without a valid estimate counts as
disagreeing); ``finite_s``, to the first finite estimate; ``iaf_dev_hz``, the largest
difference of the tracked IAF to the clean run's after the step; requests during the
step and the 1 s after it, and requests > 90° off the target from the onset to 10 s
after the step (true phase at the planned fire time, the field's ground truth, IAF
9.5 ± 2 Hz; about 2 % of the clean run's requests at C3 are that far off). "never":
not recovered by the end of the recording. For the rails: the requests while railed,
their highest confidence and their true phase error. The clean runs give the
delivered-pulse phase error against the trough target, the share of samples the
artifact gate marked and the mean wall-clock time of one ``update()`` (with the gap
policy; load-dependent).

Before/after: run it once on the code without the gate (``--out before.json``), then
``--compare before.json`` prints both side by side. With the gate, ``--gate both`` also
runs the same cases with ``artifact_gate = false``.

Usage: ``python bench/phase_artifacts.py [--tiles N] [--gate on|off|both] [--json]
[--out FILE] [--compare OLD.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from stimloop.dsp.circular import circular_stats
from stimloop.dsp.phase import reference_phase
from stimloop.loop.config import ChannelRoles, DSPConfig, PhaseLockedConfig
from stimloop.loop.phase_locked import EEG_MAX_GAP_S, PhaseLockedProtocol
from stimloop.loop.protocol import PulseOutcome, PulseRequest
from stimloop.stream.chunk import ChunkAssembler
from stimloop.stream.replay import load_recording

EDF = Path(__file__).resolve().parents[2] / "shared" / "data" / "eeg" / "eegmat_subject00_rest.edf"
T0 = 1000.0  # LSL time of the first sample, s
STEPS_UV = {"1 mV": 1e3, "5 mV": 5e3, "300 mV": 3e5, "1e30": 1e30}
CHUNKS = {"10 ms": 0.01, "1 s": 1.0}
IAF_TRUTH_HZ = 9.5  # the data README's C3 IAF, for the ground truth


def load(tiles: int) -> tuple[np.ndarray, list[str], float]:
    rec = load_recording(EDF)
    eeg = next(s for s in rec.streams if s.rate_hz > 0)
    fs = float(eeg.rate_hz)
    data = np.asarray(eeg.data, dtype=np.float64)[: round(180 * fs)]
    return np.tile(data, (tiles, 1)), [c["label"] for c in eeg.channels], fs


def has_gate() -> bool:
    return "artifact_gate" in PhaseLockedConfig.model_fields


def run(data, labels, fs, chunk_s: float, gate: bool | None) -> dict:
    """One offline pass; per-sample phase/confidence, decisions and the IAF per second."""
    kw = {} if gate is None else {"artifact_gate": gate}
    cfg = PhaseLockedConfig(min_ipi_s=0.3, jitter_s=0.0, n_pulses=10**9, **kw)
    p = PhaseLockedProtocol(cfg, ChannelRoles(eeg_target="C3"), DSPConfig(calibration_s=0))
    p.start(fs, labels)
    grid = ChunkAssembler(fs, EEG_MAX_GAP_S)
    n = len(data)
    stamps = T0 + np.arange(n) / fs
    phase = np.full(n, np.nan)
    conf = np.zeros(n)
    iaf = np.full(n // round(fs) + 1, np.nan)
    estimate = p.estimate

    def tap(chunk):  # record the per-sample estimate the protocol computes
        out = estimate(chunk)
        rows = chunk.first_index + np.arange(len(chunk))
        phase[rows], conf[rows] = out.phase_rad, out.confidence
        return out

    p.estimate = tap
    requests: list[tuple[float, dict]] = []
    holds: list[tuple[float, str, dict]] = []
    size = max(1, round(chunk_s * fs))
    t_cpu = time.perf_counter()
    for k in range(0, n, size):
        for c in grid.push(data[k : k + size], stamps[k : k + size]):
            d = p.update(c)
            if isinstance(d, PulseRequest):
                requests.append((d.t_fire, d.info))
                p.outcome(PulseOutcome(d, True, d.t_fire))
            elif d is not None:
                holds.append((float(c.timestamps[-1]), d.reason, d.info))
        sec = (k + size) // round(fs)
        if sec < iaf.size:
            iaf[sec] = p.estimator.iaf.iaf_hz
    return {
        "phase": phase,
        "conf": conf,
        "iaf": iaf,
        "requests": requests,
        "holds": holds,
        "cpu_s": time.perf_counter() - t_cpu,
        "gated_samples": getattr(p, "artifact_samples", None),
        "min_confidence": cfg.min_confidence,
    }


def pulse_errors(requests, truth, fs, lo_s, hi_s, target=math.pi) -> np.ndarray:
    """True phase minus target (rad) of the pulses fired in [lo_s, hi_s) (s from T0)."""
    t = np.array([r[0] for r in requests])
    if not t.size:
        return np.zeros(0)
    sel = (t - T0 >= lo_s) & (t - T0 < hi_s)
    idx = np.rint((t[sel] - T0) * fs).astype(int)
    return np.angle(np.exp(1j * (truth[idx] - target)))


def _last_bad_window(bad: list[tuple[int, bool]], e: int, n: int, win: int) -> float:
    """Samples from e to the end of the last bad window (0 if none; inf if one of the last
    two windows is bad: not recovered within the recording)."""
    bad_starts = [w0 for w0, b in bad if b]
    if not bad_starts:
        return 0.0
    if bad_starts[-1] >= n - 2 * win:
        return math.inf
    return float(bad_starts[-1] + win - e)


def recovery(r: dict, clean: dict, fs: float, t_on_s: float, t_end_s: float) -> dict:
    """Recovery figures of a run with an artifact from t_on_s to t_end_s (s from T0)."""
    gate = r["min_confidence"]
    e = round(t_end_s * fs)
    n = len(r["phase"])
    finite = np.flatnonzero(np.isfinite(r["phase"][e:]))
    t_req = np.array([q[0] - T0 for q in r["requests"]])
    t_cln = np.array([q[0] - T0 for q in clean["requests"]])
    after = t_req[t_req >= t_end_s]
    # The gate is open (estimate valid and confident) about as often as in the clean run.
    win = round(5 * fs)
    bad = []
    for w0 in range(e, n - win + 1, win):
        sl = slice(w0, w0 + win)
        ref = np.mean(clean["conf"][sl] >= gate)
        if ref >= 0.05:
            bad.append((w0, np.mean(r["conf"][sl] >= gate) < 0.5 * ref))
    open_s = _last_bad_window(bad, e, n, win) / fs
    # Requests at about the clean run's rate.
    bad = []
    for w0 in range(e, n - win + 1, win):
        lo, hi = w0 / fs, (w0 + win) / fs
        ref = np.sum((t_cln >= lo) & (t_cln < hi))
        if ref >= 4:
            bad.append((w0, np.sum((t_req >= lo) & (t_req < hi)) < 0.5 * ref))
    resume_s = _last_bad_window(bad, e, n, win) / fs if bad else None
    # The phase agrees with the clean run's (median |difference| <= 10 degrees).
    win = round(fs)
    bad = []
    for w0 in range(e, n - win + 1, win):
        sl = slice(w0, w0 + win)
        ref_ok = clean["conf"][sl] >= gate
        if ref_ok.sum() < 0.1 * win:
            continue
        mine = r["phase"][sl][ref_ok]
        if np.mean(np.isfinite(mine)) < 0.5:
            bad.append((w0, True))
            continue
        d = np.abs(np.angle(np.exp(1j * (mine - clean["phase"][sl][ref_ok]))))
        bad.append((w0, bool(np.nanmedian(np.degrees(d)) > 10.0)))
    agree_s = _last_bad_window(bad, e, n, win) / fs
    sec = math.ceil(t_end_s)
    dev = np.abs(r["iaf"][sec:] - clean["iaf"][sec:])
    return {
        "finite_s": finite[0] / fs if finite.size else math.inf,
        "first_request_s": float(after[0] - t_end_s) if after.size else math.inf,
        "open_s": open_s,
        "resume_s": resume_s,
        "agree_s": agree_s,
        "requests_in_step": int(np.sum((t_req >= t_on_s) & (t_req < t_end_s + 1.0))),
        "iaf_dev_hz": float(np.nanmax(dev)) if np.isfinite(dev).any() else math.nan,
        "iaf_at_10s_hz": float(r["iaf"][min(sec + 10, r["iaf"].size - 1)]),
        "observed_s": (n - e) / fs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=4, help="copies of the first 180 s")
    ap.add_argument("--at", type=float, default=60.0, help="artifact onset, s")
    ap.add_argument("--gate", choices=("on", "off", "both"), default="both")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the JSON figures here")
    ap.add_argument("--compare", type=Path, help="an earlier --out file to print beside")
    args = ap.parse_args()
    data, labels, fs = load(args.tiles)
    c3 = labels.index(next(lab for lab in labels if lab.endswith("C3")))
    w = np.zeros(len(labels))
    for lab, wt in (("C3", 1.0), ("F3", -0.25), ("T3", -0.25), ("P3", -0.25), ("Cz", -0.25)):
        w[labels.index(next(x for x in labels if x.endswith(" " + lab)))] = wt
    truth = reference_phase(data @ w, fs, IAF_TRUTH_HZ)
    a, e = round(args.at * fs), round((args.at + 0.2) * fs)
    if not has_gate():
        modes = {"no gate": None}
    else:
        modes = {"gate": True, "no gate": False}
        if args.gate != "both":
            modes = {("gate" if args.gate == "on" else "no gate"): args.gate == "on"}
    n = len(data)
    res: dict = {"fs": fs, "duration_s": n / fs, "at_s": args.at, "modes": {}}
    for mode, gate in modes.items():
        out: dict = {}
        for cname, chunk_s in CHUNKS.items():
            clean = run(data, labels, fs, chunk_s, gate)
            errs = pulse_errors(clean["requests"], truth, fs, 2.0, n / fs - 2.0)
            gated = clean["gated_samples"]
            out[f"clean {cname}"] = {
                "pulses": int(errs.size),
                "pulse_error": circular_stats(errs),
                "gated_share": None if gated is None else gated / n,
                "cpu_s": clean["cpu_s"],
                "update_us": clean["cpu_s"] / math.ceil(n / max(1, round(chunk_s * fs))) * 1e6,
            }
            for sname, amp in STEPS_UV.items():
                x = data.copy()
                x[a:e, c3] += amp
                r = run(x, labels, fs, chunk_s, gate)
                fig = recovery(r, clean, fs, args.at, args.at + 0.2)
                errs = pulse_errors(r["requests"], truth, fs, args.at, args.at + 10.2)
                fig["wrong_requests"] = int(np.sum(np.abs(errs) > np.pi / 2))
                out[f"step {sname} {cname}"] = fig
                print(f"{mode:8} {cname:6} step {sname:7} {fig}", file=sys.stderr)
            for rname, start in (("rail from onset", a), ("rail whole", 0)):
                x = data.copy()
                x[start:, c3] = 3e5
                r = run(x, labels, fs, chunk_s, gate)
                lo = start / fs
                errs = pulse_errors(r["requests"], truth, fs, lo, n / fs)
                confs = [q[1]["confidence"] for q in r["requests"] if q[0] - T0 >= lo]
                out[f"{rname} {cname}"] = {
                    "requests_railed": int(errs.size),
                    "max_confidence": max(confs) if confs else math.nan,
                    "pulse_error": circular_stats(errs),
                }
                print(f"{mode:8} {cname:6} {rname:16} {out[f'{rname} {cname}']}", file=sys.stderr)
        res["modes"][mode] = out
    text = json.dumps(res, default=float)
    if args.out:
        args.out.write_text(text)
    if args.json:
        print(text)
        return
    old = json.loads(args.compare.read_text()) if args.compare else None
    print_tables(res, old)


def _s(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def print_tables(res: dict, old: dict | None) -> None:
    cols = [("before", old["modes"]["no gate"])] if old else []
    cols += list(res["modes"].items())
    obs = res["duration_s"] - res["at_s"] - 0.2
    print(f"EEGMAT C3 (Hjorth), {res['duration_s']:.0f} s (first 180 s tiled), artifact at "
          f"{res['at_s']:.0f} s; times in s after the step ends ('never' = not within "
          f"{obs:.0f} s)")  # fmt: skip
    head = "  ".join(f"{name:>29}" for name, _ in cols)
    print(f"{'case':<22} {head}")
    print(f"{'':<22} " + "  ".join(f"{'open  resume  agree  IAF±Hz':>29}" for _ in cols))
    keys = [k for k in res["modes"][next(iter(res["modes"]))] if k.startswith("step")]
    for k in keys:
        cells = []
        for _, m in cols:
            f = m.get(k, {})
            cells.append(
                f"{_s(f.get('open_s')):>7} {_s(f.get('resume_s')):>8} "
                f"{_s(f.get('agree_s')):>6} {_s(f.get('iaf_dev_hz')):>6}"
            )
        print(f"{k:<22} " + "  ".join(f"{c:>29}" for c in cells))
    print("\nrequests during the step and 1 s after it / requests > 90° off the target "
          "from the onset to 10 s after the step / first finite estimate, s after the "
          "step:")  # fmt: skip
    for k in keys:
        cells = []
        for _, m in cols:
            f = m.get(k, {})
            cells.append(f"{_s(f.get('requests_in_step')):>5} {_s(f.get('wrong_requests')):>5} "
                         f"{_s(f.get('finite_s')):>6}")  # fmt: skip
        print(f"  {k:<20} " + "  ".join(f"{c:>29}" for c in cells))
    print("\nrailed C3 (3e5 µV): requests while railed, max confidence, pulse error mean/SD °")
    for k in [k for k in res["modes"][next(iter(res["modes"]))] if k.startswith("rail")]:
        cells = []
        for _, m in cols:
            f = m.get(k, {})
            pe = f.get("pulse_error", {})
            cells.append(f"{_s(f.get('requests_railed')):>5} {_s(f.get('max_confidence')):>5} "
                         f"{_s(pe.get('mean_deg')):>7}/{_s(pe.get('sd_deg')):<6}")  # fmt: skip
        print(f"  {k:<22} " + "  ".join(f"{c:>29}" for c in cells))
    print("\nclean recording: pulses, true phase error (mean / SD °, trough target), "
          "share of samples gated; mean time per update() incl. the gap policy, µs "
          "(wall clock, load-dependent)")  # fmt: skip
    for k in [k for k in res["modes"][next(iter(res["modes"]))] if k.startswith("clean")]:
        cells = []
        for _, m in cols:
            f = m.get(k, {})
            pe = f.get("pulse_error", {})
            g = f.get("gated_share")
            share = "—" if g is None else f"{100 * g:.3f} %"
            us = f.get("update_us")
            cells.append(f"{_s(f.get('pulses')):>4} {_s(pe.get('mean_deg')):>6}/"
                         f"{_s(pe.get('sd_deg')):<5} {share:>7} "
                         f"{'—' if us is None else f'{us:.0f}':>4}")  # fmt: skip
        print(f"  {k:<22} " + "  ".join(f"{c:>29}" for c in cells))
    print("\ncolumns: " + ", ".join(name for name, _ in cols))


if __name__ == "__main__":
    main()
