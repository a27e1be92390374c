"""The live window's cost: frame rate and CPU at 64 ch × 1 kHz EEG + ECG + EDA, and the
closed loop's latency with and without the window, in the same run.

Setup: ``bench/loop_latency.py``'s producer pushes 64-channel EEG at 1000 Hz one sample
at a time, ECG at 500 Hz and EDA at 100 Hz, with a trigger sample every ``--every`` ms.
This process runs ``loop_latency.run_engine`` (the real engine, HAL gate and simulated
stimulator, with the phase and heart DSP load) and publishes a session status stream
naming those sources, so that ``python -m stimloop.gui`` (its own process, offscreen Qt
unless a display is set) attaches to them exactly as to a session. The engine runs
``--rounds`` times without the window and ``--rounds`` times with it, alternating; the
reference is the same engine without a window. The p99 increase is the median over rounds
of the paired differences. The window runs as ``stimloop gui`` does: SCHED_IDLE with a
starvation guard (``gui/priority.py``), or nice 10 where it may not use SCHED_IDLE.
Latency = push of the trigger sample → the stimulator driver's fire call.

Usage: ``python bench/gui.py [--triggers 750] [--every 40] [--rounds 1] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stimloop.stream.lslconfig import use_machine_scope

use_machine_scope()

import numpy as np
from loop_latency import run_engine

from stimloop.stream.outlet import marker_outlet


def publish_status(prefix: str, stop: threading.Event) -> threading.Thread:
    """A minimal session status stream naming the producer's streams (10 Hz)."""
    out = marker_outlet("bench status", f"{prefix}-session-status", stype="Status")
    snap = json.dumps(
        {
            "session": "bench",
            "prefix": f"{prefix}-session",
            "source_ids": {r: f"{prefix}-{r}" for r in ("eeg", "ecg", "eda")},
            "truth_source_ids": {},
        }
    )

    def run() -> None:
        while not stop.wait(0.1):
            out.push_marker(snap)
        out.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


# A stand-in for the window's main thread: it beats every 20 ms (as the frame timer does)
# under gui/priority.py's policy and prints its beat intervals, in ms, as one JSON line.
BEATER = """
import json, sys, time
from stimloop.gui.priority import IdlePriority
p = IdlePriority(starve_s=float(sys.argv[2]), recover_s=5.0, nice=10)
p.start()
t_end = time.monotonic() + float(sys.argv[1])
last, gaps = time.monotonic(), []
while time.monotonic() < t_end:
    p.beat()
    time.sleep(0.02)
    now = time.monotonic()
    gaps.append((now - last) * 1e3)
    last = now
p.close()
print(json.dumps({"mode": p.state.mode, "raises": p.state.promotions, "gaps_ms": gaps}))
"""


def starved_beats(seconds: float, starve_s: float) -> dict:
    """Beat intervals of an idle-policy main thread while busy processes (2 per core, at
    normal priority) saturate the machine; ``starve_s`` huge = no guard."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(2 * (os.cpu_count() or 1))]  # fmt: skip
    try:
        out = subprocess.run([sys.executable, "-c", BEATER, str(seconds), str(starve_s)],
                             capture_output=True, text=True, check=True)  # fmt: skip
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    res = json.loads(out.stdout.strip().splitlines()[-1])
    g = np.asarray(res.pop("gaps_ms"))
    res.update(beats=int(g.size), p50_ms=float(np.percentile(g, 50)),
               p99_ms=float(np.percentile(g, 99)), max_ms=float(g.max()))  # fmt: skip
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triggers", type=int, default=750, help="pulses per engine run")
    ap.add_argument("--every", type=int, default=40, help="ms between trigger samples")
    ap.add_argument("--rounds", type=int, default=1, help="runs with and without the window")
    ap.add_argument("--window-fps", type=float, default=32.0,
                    help="window redraw rate, Hz (1: mostly its LSL readers' cost)")  # fmt: skip
    ap.add_argument("--starve-seconds", type=float, default=10.0,
                    help="length of each saturated-machine run (0: skip)")  # fmt: skip
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    prefix = f"bench-gui-{uuid.uuid4().hex[:8]}"
    run_s = args.triggers * args.every / 1000.0
    seconds = 20.0 + 100 * args.every / 1000.0 + 2 * args.rounds * (run_s + 15.0)
    here = Path(__file__).resolve().parent
    producer = subprocess.Popen(
        [sys.executable, str(here / "loop_latency.py"), "--produce", prefix,
         "--every", str(args.every), "--seconds", str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    producer.stdout.readline()
    stop = threading.Event()
    publish_status(prefix, stop)
    without, with_gui, windows = [], [], []
    env = {**os.environ}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        # The first engine of a process loads kernels and pages in code, and its p99 is
        # several ms worse (measured): one short run, discarded, before the rounds.
        run_engine(prefix, 100)
        for _ in range(args.rounds):
            without.append(run_engine(prefix, args.triggers))
            with tempfile.TemporaryDirectory() as tmp:
                report = Path(tmp) / "gui.json"
                gui = subprocess.Popen(
                    [sys.executable, "-m", "stimloop.gui", "--session", f"{prefix}-session",
                     "--duration", str(run_s + 8.0), "--report", str(report),
                     "--fps", str(args.window_fps)],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(6.0)  # the window is up and drawing all streams
                with_gui.append(run_engine(prefix, args.triggers))
                gui.wait(60.0)
                windows.append(json.loads(report.read_text()))
    finally:
        stop.set()
        producer.kill()
    starvation = {}
    if args.starve_seconds > 0:
        starvation = {"guard": starved_beats(args.starve_seconds, 0.25),
                      "no guard": starved_beats(args.starve_seconds, 1e9)}  # fmt: skip
    # Rounds are paired (each run with the window follows one without it); the median of
    # the paired differences keeps one round disturbed by unrelated load from deciding.
    paired = [w["p99_ms"] - n["p99_ms"] for n, w in zip(without, with_gui, strict=True)]
    result = {
        "window": windows,
        "engine_without_gui": without,
        "engine_with_gui": with_gui,
        "p99_increase_ms": float(np.median(paired)),
        "p99_increase_per_round_ms": paired,
        "saturated_main_thread": starvation,
        "setup": {"eeg": "64 ch x 1000 Hz, 1-sample pushes", "ecg_hz": 500, "eda_hz": 100,
                  "trigger_every_ms": args.every, "triggers_per_run": args.triggers,
                  "cpus": os.cpu_count(),
                  "qt_platform": env["QT_QPA_PLATFORM"],
                  "window_scheduling": windows[0].get("priority", "?") if windows else "?"},
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    sched = result["setup"]["window_scheduling"]
    print("session window at 64 ch x 1 kHz EEG + ECG 500 Hz + EDA 100 Hz "
          f"(Qt platform {env['QT_QPA_PLATFORM']}, {sched})")  # fmt: skip
    print(f"{'window run':<11} {'fps':>6} {'CPU %':>6} {'update p50 ms':>14} {'p99 ms':>7} "
          f"{'raised':>7}")  # fmt: skip
    for k, w in enumerate(windows):
        print(f"{k:<11} {w['fps']:>6.1f} {w['cpu_pct']:>6.1f} {w['update_ms_p50']:>14.2f} "
              f"{w['update_ms_p99']:>7.2f} {w.get('priority_raises', 0):>7}")  # fmt: skip
    print()
    print("engine loop latency, push of the trigger sample -> fire call (ms)")
    print(f"{'engine':<16} {'p50':>7} {'p99':>7} {'max':>7} {'n':>6}")
    for name, runs in (("without window", without), ("with window", with_gui)):
        for r in runs:
            print(f"{name:<16} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} {r['max_ms']:>7.2f} "
                  f"{r['n']:>6}")  # fmt: skip
    if starvation:
        print()
        print("window main thread on a saturated machine (2 busy processes per core): "
              "interval between beats of a 20 ms timer (ms)")  # fmt: skip
        print(f"{'policy':<24} {'p50':>7} {'p99':>8} {'max':>8} {'beats':>6} {'raises':>7}")
        for name, r in starvation.items():
            label = f"{r['mode']}, {name}"
            print(f"{label:<24} {r['p50_ms']:>7.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
                  f"{r['beats']:>6} {r['raises']:>7}")  # fmt: skip
    rounds = ", ".join(f"{d:+.3f}" for d in paired)
    print(f"p99 increase with the window: {result['p99_increase_ms']:+.3f} ms "
          f"(median over rounds; per round {rounds})")  # fmt: skip


if __name__ == "__main__":
    main()
