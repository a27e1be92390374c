"""Soak: memory, threads, descriptors, decisions and lost samples of long sessions.

Two real sessions, one after the other, each in its own process:

* ``run``: ``stimloop run SOAK.toml --headless`` on a session file made from the packaged
  ``loop/configs/demo.toml`` (phase-locked protocol, simulated stimulator behind the HAL
  gate; sources EEG, ECG, EDA and the stimulus events) pointed at a ``stimloop simulate``
  process (64 ch EEG at 1 kHz, ECG at 500 Hz, EDA at 100 Hz) with a unique prefix;
* ``demo``: ``stimloop demo --headless``, the same session plus the simulators in a
  child process and the ground-truth collection that scores it.

Every ``--every`` s the session process's resident memory (RSS), thread count and open
file descriptors are read with psutil. RSS growth is the slope of a least-squares line
through the samples after ``--warmup`` s (MB/min; 1 MB = 2**20 bytes). Decisions are
counted per minute from the session's own decision marker stream (``…-decisions``) by
event: ``scheduled``, ``fired``, ``refused``, ``gated``. Samples lost are the session's
own stream statistics at the end (gaps, samples their timestamps say are missing, and
received against expected samples).

``--tracemalloc`` repeats each mode with ``tracemalloc`` running inside the session
process (``--trace-frames`` frames per trace) and reports the allocation sites (file and
line of the allocating frame) whose live size grew most between the warm-up and the end,
with their growth per minute (least squares over snapshots every ``--trace-every`` s)
and the call chain of each. tracemalloc sees Python objects and numpy buffers, not
liblsl's or glibc's own memory, so its total is printed beside the RSS growth of the same
run. Snapshots hold the GIL for a while: decisions and lost samples of a traced run are
not figures of the session.

Usage: ``python bench/soak.py [--duration 600] [--modes run demo] [--tracemalloc]
[--json] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from importlib import resources
from pathlib import Path

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()  # before liblsl loads: the soak's streams stay on this machine

import numpy as np
import psutil
import pylsl

MB = float(1 << 20)
DECISIONS = ("scheduled", "fired", "refused", "gated")


# -- the traced child ----------------------------------------------------------------------
def trace_child(out: str, warmup_s: float, every_s: float, frames: int, argv: list[str]) -> int:
    """Run ``stimloop ARGV`` in this process with tracemalloc; write the site series."""
    import tracemalloc

    from stimloop.loop.cli import main
    from stimloop.loop.session import Session

    # The warm-up counts from the start of the session's loop (after connecting and
    # warming up the kernels), as in the untraced runs; the harness only watches for it.
    running = threading.Event()
    session_run = Session.run

    def run_and_tell(self, *a, **kw):
        running.set()
        return session_run(self, *a, **kw)

    Session.run = run_and_tell
    tracemalloc.start(frames)
    t0 = time.monotonic()
    series: list[tuple[float, dict[str, tuple[int, int]]]] = []
    totals: list[tuple[float, int]] = []
    base: list = []  # the warm-up snapshot, for the call chains
    stop = threading.Event()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]

    def snap() -> None:
        s = tracemalloc.take_snapshot().filter_traces(ignore)
        t = (time.monotonic() - t0) / 60.0
        sites = {}
        for st in s.statistics("lineno"):
            f = st.traceback[0]
            sites[f"{f.filename}:{f.lineno}"] = (st.size, st.count)
        series.append((t, sites))
        totals.append((t, sum(v[0] for v in sites.values())))
        if not base:
            base.append(s)
        else:
            base[1:] = [s]

    def sampler() -> None:
        while not running.wait(0.5):
            if stop.is_set():
                return
        if stop.wait(warmup_s):
            return
        snap()
        while not stop.wait(every_s):
            snap()

    th = threading.Thread(target=sampler, name="soak-tracemalloc", daemon=True)
    th.start()
    try:
        rc = main(argv)
    finally:
        stop.set()
        th.join()
    if len(base) < 2:
        snap()
    chains = {}
    if len(base) == 2:
        for st in base[1].compare_to(base[0], "traceback")[:40]:
            if not len(st.traceback):
                continue
            newest = st.traceback[-1]  # tracemalloc orders frames oldest first
            key = f"{newest.filename}:{newest.lineno}"
            if key not in chains:
                chains[key] = [f"{fr.filename}:{fr.lineno}" for fr in st.traceback]
    Path(out).write_text(json.dumps({"series": series, "totals": totals, "chains": chains}))
    return rc


# -- monitoring ---------------------------------------------------------------------------
def _slope_per_min(t_min: np.ndarray, y: np.ndarray) -> float | None:
    if t_min.size < 3 or np.ptp(t_min) <= 0:
        return None
    return float(np.polyfit(t_min, y, 1)[0])


class DecisionCounter:
    """Counts a session's decision markers per minute (by event) from its LSL stream."""

    def __init__(self, predicate: str, t0: float) -> None:
        self.predicate = predicate
        self.t0 = t0
        self.found_s: float | None = None  # when the session's stream appeared, s after t0
        self.per_min: dict[int, dict[str, int]] = {}
        #: refusals by the gate's error code ("late", "stale_data", ...), and gated
        #: decisions by reason: a refusal count alone does not say whether it is right.
        self.why: dict[str, int] = {}
        self.found = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-decisions", daemon=True)

    def start(self) -> DecisionCounter:
        self._thread.start()
        return self

    def _run(self) -> None:
        infos = []
        while not infos and not self._stop.is_set():
            infos = pylsl.resolve_bypred(self.predicate, 1, 1.0)
        if not infos:
            return
        inlet = pylsl.StreamInlet(infos[0], max_buflen=60)
        inlet.open_stream(timeout=10.0)
        self.found_s = time.monotonic() - self.t0
        self.found.set()
        while not self._stop.is_set():
            try:
                samples, _ = inlet.pull_chunk(timeout=0.5)
            except pylsl.util.LostError:
                break
            minute = int((time.monotonic() - self.t0 - self.found_s) // 60)
            for (text,) in samples:
                try:
                    marker = json.loads(text)
                    event = marker.get("event")
                except (ValueError, AttributeError):
                    continue
                if event in DECISIONS:
                    row = self.per_min.setdefault(minute, dict.fromkeys(DECISIONS, 0))
                    row[event] += 1
                if event in ("refused", "gated"):
                    code = re.search(r"\[(\w+)\]", str(marker.get("error", "")))
                    key = f"{event}:{code.group(1) if code else marker.get('reason', '?')}"
                    self.why[key] = self.why.get(key, 0) + 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


def monitor(proc: subprocess.Popen, every_s: float, t0: float) -> list[dict]:
    """Sample RSS, threads and descriptors of ``proc`` (and its children) until it ends."""
    p = psutil.Process(proc.pid)
    rows = []
    while proc.poll() is None:
        try:
            with p.oneshot():
                row = {
                    "t_s": time.monotonic() - t0,
                    "rss_mb": p.memory_info().rss / MB,
                    "threads": p.num_threads(),
                    "fds": p.num_fds(),
                }
            kids = p.children(recursive=True)
            row["children_rss_mb"] = sum(k.memory_info().rss for k in kids) / MB
            rows.append(row)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            break
        try:
            proc.wait(every_s)
        except subprocess.TimeoutExpired:
            pass
    return rows


def session_file(prefix: str, folder: Path) -> Path:
    """The packaged demo session pointed at ``stimloop simulate --prefix PREFIX``."""
    text = resources.files("stimloop.loop").joinpath("configs/demo.toml").read_text()
    text = text.replace('name = "demo"', 'name = "soak"')
    text = text.replace('"stimloop-sim-', f'"{prefix}-')
    text = text.replace("# [sources.events]", "[sources.events]")
    text = text.replace(f'# source_id = "{prefix}-events"', f'source_id = "{prefix}-events"')
    path = folder / "soak.toml"
    path.write_text(text)
    return path


def soak(mode: str, args: argparse.Namespace, traced: bool, folder: Path) -> dict:
    """One session of ``mode`` ("run" or "demo"), monitored; its figures."""
    prefix = f"soak-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    stimloop = [sys.executable, "-m", "stimloop.loop.cli"]
    sim = None
    if mode == "run":
        sim = subprocess.Popen(
            [*stimloop, "simulate", "--prefix", prefix, "--duration", str(args.duration + 120)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        argv = ["run", str(session_file(prefix, folder)), "--headless", "--json",
                "--duration", str(args.duration)]  # fmt: skip
    else:
        argv = ["demo", "--headless", "--json", "--prefix", prefix,
                "--duration", str(args.duration)]  # fmt: skip
    trace_out = folder / f"{mode}-trace.json"
    if traced:
        cmd = [sys.executable, __file__, "--trace-child", str(trace_out), str(args.warmup),
               str(args.trace_every), str(args.trace_frames), *argv]  # fmt: skip
    else:
        cmd = [*stimloop, *argv]
    t0 = time.monotonic()
    session = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if mode == "run":
        pred = (f"starts-with(source_id,'stimloop-soak-{session.pid}-') and "
                "contains(source_id,'-decisions')")  # fmt: skip
    else:
        pred = f"source_id='{prefix}-session-decisions'"
    counter = DecisionCounter(pred, t0).start()
    out_box: dict[str, str] = {}
    reader = threading.Thread(
        target=lambda: out_box.update(zip(("out", "err"), session.communicate(), strict=True)),
        daemon=True,
    )
    reader.start()
    try:
        rows = monitor(session, args.every, t0)
        reader.join(60.0)
    finally:
        counter.stop()
        if session.poll() is None:
            session.kill()
        if sim is not None:
            sim.send_signal(signal.SIGINT)
            try:
                sim.wait(15.0)
            except subprocess.TimeoutExpired:
                sim.kill()
            sim.stderr.close()
    wall_s = time.monotonic() - t0
    if session.returncode != 0:
        raise RuntimeError(
            f"{mode} session exited with {session.returncode}:\n{out_box.get('err', '')[-3000:]}"
        )
    out = out_box["out"].strip()
    # The summary is the last JSON document printed (indented over several lines).
    summary = json.loads(out[out.rindex("\n{") + 1 :] if "\n{" in out else out)
    return figures(mode, traced, args, rows, counter, summary, wall_s, trace_out)


def figures(mode, traced, args, rows, counter, summary, wall_s, trace_out) -> dict:
    t = np.array([r["t_s"] for r in rows]) / 60.0
    rss = np.array([r["rss_mb"] for r in rows])
    kids = np.array([r["children_rss_mb"] for r in rows])
    # The session runs for --duration after its start-up (connecting, warming up the
    # kernels), which ends when its decision stream appears; the warm-up counts from then.
    t_open = (counter.found_s or 0.0) / 60.0
    sel = (t >= t_open + args.warmup / 60.0) & (t <= t_open + args.duration / 60.0)
    growth = _slope_per_min(t[sel], rss[sel])
    kid_growth = _slope_per_min(t[sel], kids[sel])
    minutes = sorted(counter.per_min)
    per_min = [{"minute": m, **counter.per_min[m]} for m in minutes]
    # Whole minutes of the session only (the last one is partial).
    whole = [r for r in per_min if r["minute"] < args.duration // 60]
    decisions = {e: (float(np.mean([r[e] for r in whole])) if whole else None) for e in DECISIONS}
    if mode == "demo":
        pulses, refused = summary["pulses"]["delivered"], summary["pulses"]["refused"]
    else:
        # `stimloop run --json` counts pulses per recording, and this session records
        # nothing: the pulses are the session's own decision markers, counted whole.
        pulses = sum(r["fired"] for r in per_min)
        refused = sum(r["refused"] for r in per_min)
    lost = {
        role: {
            "samples": s["samples"],
            "expected": s["expected_samples"],
            "gaps": s["gaps"],
            "lost_samples": s["lost_samples"],
        }
        # run: the session's own stream health; demo: its report, where the health sits
        # beside the table of the recorded streams
        for role, s in (summary.get("health") or summary["streams"]).items()
    }
    out = {
        "mode": mode,
        "traced": traced,
        "duration_s": args.duration,
        "wall_s": wall_s,
        "warmup_s": args.warmup,
        "session_open_s": counter.found_s,
        "rss_mb_first": float(rss[sel][0]) if sel.any() else None,
        "rss_mb_last": float(rss[-1]) if rss.size else None,
        "rss_growth_mb_per_min": growth,
        "children_rss_growth_mb_per_min": kid_growth,
        "threads": [int(r["threads"]) for r in rows],
        "fds": [int(r["fds"]) for r in rows],
        "threads_after_warmup": _span([r["threads"] for r, s in zip(rows, sel, strict=True) if s]),
        "fds_after_warmup": _span([r["fds"] for r, s in zip(rows, sel, strict=True) if s]),
        "samples": rows,
        "decisions_per_min": decisions,
        "decisions_by_minute": per_min,
        "pulses": pulses,
        "refused": refused,
        "refused_and_gated_by_reason": dict(sorted(counter.why.items())),
        "streams": lost,
        "samples_lost": int(sum(v["lost_samples"] for v in lost.values())),
    }
    if traced and trace_out.exists():
        out["tracemalloc"] = trace_sites(json.loads(trace_out.read_text()), args.top)
    return out


def _span(values: list) -> dict | None:
    return (
        {"min": int(min(values)), "max": int(max(values)), "last": int(values[-1])}
        if values
        else None
    )


def trace_sites(trace: dict, top: int) -> dict:
    """The sites that grew most from the first snapshot to the last, with slopes."""
    series = trace["series"]
    if len(series) < 2:
        return {"sites": [], "total_growth_mb_per_min": None}
    t = np.array([s[0] for s in series])
    first, last = series[0][1], series[-1][1]
    diffs = sorted(((last[k][0] - first.get(k, (0, 0))[0], k) for k in last), reverse=True)[:top]
    sites = []
    for diff, key in diffs:
        size = np.array([s[1].get(key, (0, 0))[0] for s in series], dtype=float) / MB
        count = np.array([s[1].get(key, (0, 0))[1] for s in series], dtype=float)
        sites.append({
            "site": _short(key),
            "mb_first": float(size[0]),
            "mb_last": float(size[-1]),
            "growth_mb": diff / MB,
            "growth_mb_per_min": _slope_per_min(t, size),
            "blocks_per_min": _slope_per_min(t, count),
            "chain": [_short(c) for c in trace["chains"].get(key, [])],
        })  # fmt: skip
    tot = np.array([x[1] for x in trace["totals"]], dtype=float) / MB
    return {
        "sites": sites,
        "minutes": [float(t[0]), float(t[-1])],
        "total_mb_first": float(tot[0]),
        "total_mb_last": float(tot[-1]),
        "total_growth_mb_per_min": _slope_per_min(np.array([x[0] for x in trace["totals"]]), tot),
    }


def _short(path_line: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path_line:
            return path_line.split(marker, 1)[1]
    root = str(Path(__file__).resolve().parents[1]) + "/"
    return path_line.replace(root, "")


def _range(span: dict) -> str:
    return f"{span['min']}–{span['max']}" if span else "-"


def _fmt(x, spec=".2f", none="-") -> str:
    return none if x is None else format(x, spec)


def report(results: list[dict]) -> str:
    lines = [
        f"{'mode':<6} {'traced':<6} {'min':>5} {'RSS MB':>13} {'MB/min':>7} {'child MB/min':>12} "
        f"{'threads':>9} {'fds':>9} {'sched/min':>9} {'fired/min':>9} {'refused/min':>11} "
        f"{'gated/min':>9} {'lost':>5}"
    ]
    for r in results:
        th, fd, d = (
            r["threads_after_warmup"] or {},
            r["fds_after_warmup"] or {},
            r["decisions_per_min"],
        )
        rss = f"{_fmt(r['rss_mb_first'], '.1f')}→{_fmt(r['rss_mb_last'], '.1f')}"
        lines.append(
            f"{r['mode']:<6} {'yes' if r['traced'] else 'no':<6} {r['duration_s'] / 60:>5.1f} "
            f"{rss:>13} {_fmt(r['rss_growth_mb_per_min'], '+.3f'):>7} "
            f"{_fmt(r['children_rss_growth_mb_per_min'], '+.3f'):>12} "
            f"{_range(th):>9} {_range(fd):>9} "
            f"{_fmt(d['scheduled'], '.1f'):>9} {_fmt(d['fired'], '.1f'):>9} "
            f"{_fmt(d['refused'], '.1f'):>11} {_fmt(d['gated'], '.1f'):>9} {r['samples_lost']:>5}"
        )
    lines.append("target (issue #15): RSS growth <= 0.1 MB/min or bounded, 0 samples lost")
    lines.append("")
    lines.append("samples received / expected (gaps, lost) per stream:")
    for r in results:
        parts = [f"{role} {s['samples']}/{s['expected']} ({s['gaps']}, {s['lost_samples']})"
                 for role, s in r["streams"].items()]  # fmt: skip
        lines.append(f"  {r['mode']}{' traced' if r['traced'] else ''}: " + "; ".join(parts))
    lines.append("refused and gated decisions by reason:")
    for r in results:
        why = ", ".join(f"{k} {v}" for k, v in r["refused_and_gated_by_reason"].items())
        lines.append(f"  {r['mode']}{' traced' if r['traced'] else ''}: {why or 'none'}")
    for r in results:
        tm = r.get("tracemalloc")
        if not tm:
            continue
        lines += [
            "",
            f"tracemalloc, {r['mode']}: traced total {tm['total_mb_first']:.1f} → "
            f"{tm['total_mb_last']:.1f} MB ({_fmt(tm['total_growth_mb_per_min'], '+.3f')} MB/min) "
            f"vs RSS {_fmt(r['rss_growth_mb_per_min'], '+.3f')} MB/min in the same run; "
            f"minutes {tm['minutes'][0]:.1f}–{tm['minutes'][1]:.1f}",
            f"  {'MB/min':>7} {'MB first→last':>15} {'blocks/min':>10}  allocating line",
        ]
        for s in tm["sites"]:
            span = f"{s['mb_first']:.2f}→{s['mb_last']:.2f}"
            lines.append(
                f"  {_fmt(s['growth_mb_per_min'], '+.3f'):>7} {span:>15} "
                f"{_fmt(s['blocks_per_min'], '+.0f'):>10}  {s['site']}"
            )
            callers = list(reversed(s["chain"][:-1]))[:4]  # nearest caller first
            if callers:
                lines.append(f"  {'':>35}  called from {' < '.join(callers)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="session length, s (600)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="s excluded from the fits (default min(60, duration / 5))")  # fmt: skip
    ap.add_argument("--every", type=float, default=5.0, help="sampling period, s")
    ap.add_argument("--modes", nargs="+", default=["run", "demo"], choices=["run", "demo"])
    ap.add_argument("--tracemalloc", action="store_true",
                    help="also run each mode under tracemalloc and list growing sites")  # fmt: skip
    ap.add_argument("--trace-only", action="store_true", help="only the traced runs")
    ap.add_argument("--trace-every", type=float, default=30.0, help="snapshot period, s")
    ap.add_argument("--trace-frames", type=int, default=8)
    ap.add_argument("--top", type=int, default=12, help="sites listed")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    ap.add_argument("--out", type=Path, help="also write the raw figures to this JSON file")
    args = ap.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(60.0, args.duration / 5)
    results = []
    with tempfile.TemporaryDirectory(prefix="stimloop-soak-") as tmp:
        for mode in args.modes:
            plain = [] if args.trace_only else [False]
            for traced in plain + ([True] if args.tracemalloc or args.trace_only else []):
                print(f"soak: {mode}{' (tracemalloc)' if traced else ''}, "
                      f"{args.duration:g} s ...", file=sys.stderr, flush=True)  # fmt: skip
                results.append(soak(mode, args, traced, Path(tmp)))
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
            "load_avg_1min_end": os.getloadavg()[0], "argv": sys.argv[1:]}  # fmt: skip
    doc = {"meta": meta, "results": results}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc, indent=1) if args.json else report(results))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--trace-child":
        out, warm, every, frames = (
            sys.argv[2],
            float(sys.argv[3]),
            float(sys.argv[4]),
            int(sys.argv[5]),
        )
        sys.exit(trace_child(out, warm, every, frames, sys.argv[6:]))
    sys.exit(main())
