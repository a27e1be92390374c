"""Wall time of a whole study: ``stimloop study analyze`` on 1 and on 2 Dask workers.

One demo session is recorded (``--duration`` s, the full simulated closed loop) and
copied under ``--sessions`` BIDS-like paths (sub-XX/ses-YY). The study is analysed from
scratch on a local Dask cluster of 1 worker and of 2 workers (cluster start included:
it is part of what a user waits for), and once more with nothing changed (every result
kept). Starting a local cluster of 1 and of 2 workers is also timed alone (it is part of both
study times). The reference, side by side: the same per-session analysis in one process,
one file after another (``read_session`` + ``session_report`` per file: what a researcher's
loop over ``stimloop analyze`` does), without tables or figures.

Each run is repeated ``--repeat`` times, interleaved, and the minimum is reported (the
machine is shared: other jobs only ever add time); ``--json`` also gives every run.

Usage: ``python bench/study.py [--json] [--sessions 24] [--duration 30] [--repeat 3]
[--recording FILE.xdf]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()

from stimloop.loop.cluster import open_client
from stimloop.loop.report import read_session, session_report
from stimloop.loop.study import run_study


def build_study(recording: Path, root: Path, n: int) -> list[Path]:
    """``n`` copies of the recording, 4 sessions per participant."""
    files = []
    for k in range(n):
        d = root / f"sub-{k // 4 + 1:02d}" / f"ses-{k % 4 + 1}"
        d.mkdir(parents=True)
        files.append(Path(shutil.copy(recording, d / "rec.xdf")))
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print raw figures as JSON")
    ap.add_argument("--sessions", type=int, default=24)
    ap.add_argument("--duration", type=float, default=30.0, help="demo length, s")
    ap.add_argument("--recording", help="use this session recording instead of a new demo")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the minimum is reported")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stimloop-bench-study-") as tmp:
        tmp = Path(tmp)
        if args.recording:
            rec = Path(args.recording)
        else:
            from stimloop.loop.demo import run_demo

            rec = tmp / "demo.xdf"
            run_demo(args.duration, recording=str(rec))
        files = build_study(rec, tmp / "study", args.sessions)
        load_before = os.getloadavg()[0]
        times: dict[str, list[float]] = {k: [] for k in ("serial", "w1", "w2", "s1", "s2")}
        # Rounds interleave the runs, so a burst of other load hits each alike; the
        # minimum over rounds is the figure least disturbed by other jobs.
        for k in range(args.repeat):
            t = time.perf_counter()
            for f in files:
                session_report(read_session(f))
            times["serial"].append(time.perf_counter() - t)
            for workers in (1, 2):
                t = time.perf_counter()
                with open_client(workers=workers):
                    times[f"s{workers}"].append(time.perf_counter() - t)
                r = run_study([str(tmp / "study")], tmp / f"out-{workers}-{k}", workers=workers)
                assert len(r.analysed) == args.sessions and not r.failed, r.failed
                times[f"w{workers}"].append(r.wall_s)
        r = run_study([str(tmp / "study")], tmp / "out-2-0", workers=2)
        assert not r.analysed
        unchanged = r.wall_s
        best = {k: min(v) for k, v in times.items()}
        figures = {
            "sessions": args.sessions,
            "repeat": args.repeat,
            "recording_mb": rec.stat().st_size / 1e6,
            "recording_s": args.duration if not args.recording else None,
            "serial_reports_s": best["serial"],
            "study_1_worker_s": best["w1"],
            "study_2_workers_s": best["w2"],
            "cluster_start_1_worker_s": best["s1"],
            "cluster_start_2_workers_s": best["s2"],
            "speedup_2_vs_1": best["w1"] / best["w2"],
            "rerun_unchanged_s": unchanged,
            "all_runs_s": times,
            "load_average_1min": [load_before, os.getloadavg()[0]],
            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        }
        runs, starts, serial = (
            {1: best["w1"], 2: best["w2"]},
            {1: best["s1"], 2: best["s2"]},
            best["serial"],
        )
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    n = figures["sessions"]
    print(f"study of {n} session recordings ({figures['recording_mb']:.1f} MB each"
          + (f", {args.duration:g} s demo" if not args.recording else "") + ")")  # fmt: skip
    print(f"{'run (minimum of ' + str(args.repeat) + ' rounds)':44s} {'wall s':>8s} "
          f"{'s/session':>10s}")  # fmt: skip
    rows = [
        ("reference: report per file, one process", serial),
        ("study analyze, 1 worker (tables, figures)", runs[1]),
        ("study analyze, 2 workers (tables, figures)", runs[2]),
        ("study analyze again, nothing changed", unchanged),
    ]
    for name, s in rows:
        print(f"{name:44s} {s:8.1f} {s / n:10.2f}")
    print(f"speed-up 2 workers vs 1: {figures['speedup_2_vs_1']:.2f}x on {figures['machine']}")
    print(
        f"of which starting the local cluster (alone): {starts[1]:.1f} s (1 worker), "
        f"{starts[2]:.1f} s (2 workers)"
    )
    lo, hi = figures["load_average_1min"]
    busy = f"load average (1 min) {lo:.1f} before, {hi:.1f} after: other jobs were running"
    print(busy if max(lo, hi) > 1.0 else "machine otherwise idle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
