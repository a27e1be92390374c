"""The live window's cost: frame rate and CPU at 64 ch × 1 kHz EEG + ECG + EDA, and the
closed loop's latency with and without the window, in the same run.

Setup: ``bench/loop_latency.py``'s producer (its own process, like a device's LSL app)
pushes 64-channel EEG at 1000 Hz one sample at a time, ECG at 500 Hz and EDA at 100 Hz,
with a trigger sample every ``--every`` ms. This process is the session: it runs
``loop_latency.run_engine`` (the real engine, HAL gate and simulated stimulator, with the
phase and heart DSP load) once for the whole benchmark, and publishes a status stream and
a control channel as a session does. A toggler process opens the window
(``python -m stimloop.gui``, its own process, offscreen Qt unless a display is set) for
``--on`` s, closes it for ``--off`` s, ``--cycles`` times. The window attaches exactly as
to a session: SCHED_IDLE with the starvation guard (``gui/priority.py``), on the display
CPU, announcing itself so the session keeps to the other CPUs (``loop/cpus.py``).

Each trigger is classed by when its sample was pushed: *with window* from ``--warm`` s
after the window's launch, and at least 1 s after it announced itself, until it starts
closing; *without* from 1 s after a window has exited (or the toggler started) until the
next launch; launch and close form a third class, reported but not compared. One engine
run, alternating conditions every ``--on``/``--off`` s, keeps slow changes of the
machine (other tenants of a virtual machine, thermal state) from landing on one
condition. Reported: p99 of each condition pooled over the run and its increase with the
window (the acceptance figure), and the median over cycles of the paired increases (each
on-period against the off-period before it).

References in the same design: ``--no-split`` (the session ignores the window, so
neither is confined: the window at SCHED_IDLE only), and ``--stand-in busy`` (a
SCHED_IDLE busy loop taking ``--busy-duty`` of a core instead of the window, on the
display CPU unless ``--no-split``).
Latency = push of the trigger sample → the stimulator driver's fire call.

Usage: ``python bench/gui.py [--cycles 8] [--on 20] [--off 20] [--no-split]
[--stand-in busy] [--json]``
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
import pylsl
from loop_latency import run_engine

from stimloop.loop.control import ControlServer, send_command
from stimloop.loop.cpus import SessionPinning
from stimloop.stream.outlet import marker_outlet


def publish_status(
    prefix: str, pinning: SessionPinning, stop: threading.Event, split: bool = True
) -> tuple[ControlServer, list[bool]]:
    """A session's status stream (10 Hz) naming the producer's streams, and its control
    channel, on which windows announce themselves (``gui_open``/``gui_closed``). With
    ``split`` False the session ignores them (the reference without the CPU split).
    Returns the channel and, per ``gui_open``, whether every thread moved."""
    moved: list[bool] = []

    def command(cmd: str, args: dict) -> None:
        if cmd == "gui_open" and split:
            pinning.window_opened()
            moved.append(pinning.pinned)
        elif cmd == "gui_closed" and args.get("attached") and split:
            pinning.window_closed()

    control = ControlServer(command, lambda cmd, msg: print(f"command {cmd}: {msg}"))
    out = marker_outlet("bench status", f"{prefix}-session-status", stype="Status")

    def run() -> None:
        while not stop.wait(0.1):
            snap = {
                "session": "bench",
                "prefix": f"{prefix}-session",
                "control_port": control.port,
                "cpus": pinning.describe(),
                "source_ids": {r: f"{prefix}-{r}" for r in ("eeg", "ecg", "eda")},
                "truth_source_ids": {},
            }
            out.push_marker(json.dumps(snap))
        out.close()
        control.close()

    threading.Thread(target=run, daemon=True).start()
    return control, moved


# A stand-in for the window (``--stand-in busy``): a SCHED_IDLE busy loop taking
# ``duty`` of a core in 30 ms periods, on the display CPUs when given.
BUSY = """
import os, sys, time
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
if sys.argv[2]:
    os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(",")})
duty, x = float(sys.argv[1]), 0
while True:
    t0 = time.monotonic()
    while time.monotonic() - t0 < duty * 0.03:
        x += 1
    time.sleep((1 - duty) * 0.03)
"""


def run_stand_in(args: argparse.Namespace, port: int, display: str) -> dict:
    """One on-period of the busy-loop stand-in, announced to the session as a window."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY, str(args.busy_duty), display])
    try:
        time.sleep(0.5)  # interpreter start-up
        send_command(port, "gui_open")
        t_announced = pylsl.local_clock()
        time.sleep(args.warm + args.on)
        t_closed = pylsl.local_clock()
        send_command(port, "gui_closed", attached=True)
    finally:
        busy.kill()
        busy.wait()
    return {"t_announced": t_announced, "t_closed": t_closed, "fps": 0.0,
            "cpu_pct": 100.0 * args.busy_duty, "update_ms_p50": 0.0, "update_ms_p99": 0.0,
            "priority": "idle (busy loop)", "cpus": display}  # fmt: skip


def toggle_window(prefix: str, args: argparse.Namespace, out: Path) -> None:
    """The toggler process: ``--cycles`` times, wait ``--off`` s, then run the window for
    ``--warm`` + ``--on`` s; then ``--off`` s more. Writes launch/exit times (local LSL
    clock) and the window's reports (with its own gui_open and close times)."""
    env = {**os.environ}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    t_start = pylsl.local_clock()  # after this process's own start-up
    port, display = int(args.toggle[2]), args.toggle[3]
    cycles = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.cycles):
            time.sleep(args.off)
            report = Path(tmp) / f"gui{k}.json"
            t_launch = pylsl.local_clock()
            if args.stand_in == "busy":
                window = run_stand_in(args, port, display)
            else:
                subprocess.run(
                    [sys.executable, "-m", "stimloop.gui", "--session", f"{prefix}-session",
                     "--duration", str(args.warm + args.on), "--report", str(report),
                     "--fps", str(args.window_fps)],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    timeout=120,
                )  # fmt: skip
                window = json.loads(report.read_text())
            cycles.append({"t_launch": t_launch, "t_exit": pylsl.local_clock(), "window": window})
        time.sleep(args.off)
    out.write_text(json.dumps({"t_start": t_start, "t_end": pylsl.local_clock(),
                               "cycles": cycles}))  # fmt: skip


def classify(engine: dict, schedule: dict, warm: float) -> dict:
    """Class each pulse by the push time of its trigger sample:

    - ``with``: from ``warm`` s after the launch, and at least 1 s after the window's
      ``gui_open``, until the window starts closing;
    - ``without``: from 1 s after a window exited (or after the toggler started) until
      the next launch;
    - ``transition``: launch to ``with``, and closing to 1 s after the exit (reported,
      not part of the comparison).

    Also per cycle: ``"cycles"``, a list of (without, with) arrays.
    """
    t = np.asarray(engine["t_sample"])
    lat = np.asarray(engine["from_push_ms"])
    masks = {k: np.zeros(t.size, bool) for k in ("with", "without", "transition")}
    cycles, t_free = [], max(t[0] + 2.0, schedule["t_start"] + 1.0)
    for c in schedule["cycles"]:
        w = c["window"]
        t_on = max(c["t_launch"] + warm, (w.get("t_announced") or np.inf) + 1.0)
        t_off = w.get("t_closed") or c["t_exit"]
        off = (t >= t_free) & (t < c["t_launch"])
        on = (t >= t_on) & (t < t_off)
        t_free = c["t_exit"] + 1.0
        masks["without"] |= off
        masks["with"] |= on
        masks["transition"] |= (t >= c["t_launch"]) & (t < t_free) & ~on
        cycles.append((lat[off], lat[on]))
    masks["without"] |= (t >= t_free) & (t < schedule["t_end"])
    return {**{k: lat[m] for k, m in masks.items()}, "cycles": cycles}


def stats(lat: np.ndarray) -> dict:
    if lat.size == 0:
        return {"n": 0}
    return {"n": int(lat.size), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}  # fmt: skip


# A stand-in for the window's main thread: it beats every 20 ms (as the frame timer does)
# under gui/priority.py's policy and prints its beat intervals, in ms, as one JSON line.
BEATER = """
import json, sys, time
from stimloop.gui.priority import IdlePriority
from stimloop.loop.cpus import allowed_cpus, split_cpus
p = IdlePriority(starve_s=float(sys.argv[2]), recover_s=5.0, nice=10)
p.start()
p.confine(split_cpus(allowed_cpus())[1])  # on its display CPU, as an attached window
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
    ap.add_argument("--cycles", type=int, default=8, help="window on/off cycles")
    ap.add_argument("--on", type=float, default=20.0, help="s of drawing per cycle")
    ap.add_argument("--off", type=float, default=20.0, help="s without a window per cycle")
    ap.add_argument("--warm", type=float, default=6.0,
                    help="s from launch until the window counts as drawing")  # fmt: skip
    ap.add_argument("--every", type=int, default=40, help="ms between trigger samples")
    ap.add_argument("--window-fps", type=float, default=32.0,
                    help="window redraw rate, Hz (1: mostly its LSL readers' cost)")  # fmt: skip
    ap.add_argument("--starve-seconds", type=float, default=10.0,
                    help="length of each saturated-machine run (0: skip)")  # fmt: skip
    ap.add_argument("--no-split", action="store_true",
                    help="the session ignores the window (no CPU split)")  # fmt: skip
    ap.add_argument("--stand-in", choices=("window", "busy"), default="window",
                    help="busy: a SCHED_IDLE busy loop instead of the window")  # fmt: skip
    ap.add_argument("--busy-duty", type=float, default=0.36,
                    help="share of a core the busy loop takes (the window's CPU)")  # fmt: skip
    ap.add_argument("--json", action="store_true")
    # prefix, output file, control port, display CPUs ("" = any)
    ap.add_argument("--toggle", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.toggle:
        toggle_window(args.toggle[0], args, Path(args.toggle[1]))
        return
    prefix = f"bench-gui-{uuid.uuid4().hex[:8]}"
    # Window launch and exit take a few s on top of warm + on (imports, Qt, LSL resolve).
    cycle_s = args.off + args.warm + args.on + 6.0
    run_s = 10.0 + args.cycles * cycle_s + args.off
    here = Path(__file__).resolve().parent
    producer = subprocess.Popen(
        [sys.executable, str(here / "loop_latency.py"), "--produce", prefix,
         "--every", str(args.every), "--seconds", str(run_s + 60.0)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    producer.stdout.readline()
    stop = threading.Event()
    pinning = SessionPinning()
    control, moved = publish_status(prefix, pinning, stop, split=not args.no_split)
    display = "" if args.no_split else ",".join(map(str, sorted(pinning.display)))
    toggler = None
    try:
        # The first engine of a process loads kernels and pages in code, and its p99 is
        # several ms worse (measured): one short run, discarded.
        run_engine(prefix, 100)
        with tempfile.TemporaryDirectory() as tmp:
            sched_file = Path(tmp) / "schedule.json"
            toggler = subprocess.Popen(
                [sys.executable, __file__, "--toggle", prefix, str(sched_file),
                 str(control.port), display,
                 "--cycles", str(args.cycles), "--on", str(args.on), "--off", str(args.off),
                 "--warm", str(args.warm), "--window-fps", str(args.window_fps),
                 "--stand-in", args.stand_in, "--busy-duty", str(args.busy_duty)],
            )  # fmt: skip
            engine = run_engine(prefix, int(run_s * 1000 / args.every), per_pulse=True)
            toggler.wait(180.0)
            schedule = json.loads(sched_file.read_text())
    finally:
        stop.set()
        producer.kill()
        if toggler is not None and toggler.poll() is None:
            toggler.kill()
    split = classify(engine, schedule, args.warm)
    windows = [c["window"] for c in schedule["cycles"]]
    starvation = {}
    if args.starve_seconds > 0:
        starvation = {"guard": starved_beats(args.starve_seconds, 0.25),
                      "no guard": starved_beats(args.starve_seconds, 1e9)}  # fmt: skip
    without, with_gui = stats(split["without"]), stats(split["with"])
    transition = stats(split["transition"])
    per_cycle = [(stats(a), stats(b)) for a, b in split["cycles"]]
    paired = [b["p99_ms"] - a["p99_ms"] for a, b in per_cycle if a["n"] and b["n"]]
    result = {
        "window": windows,
        "engine_without_gui": without,
        "engine_with_gui": with_gui,
        "engine_launch_and_close": transition,
        "p99_increase_ms": with_gui["p99_ms"] - without["p99_ms"],
        "p99_increase_cycle_median_ms": float(np.median(paired)),
        "p99_per_cycle_ms": [(a.get("p99_ms"), b.get("p99_ms")) for a, b in per_cycle],
        "engine": {k: engine[k] for k in ("realtime_priority", "gc_collections", "refused")},
        "saturated_main_thread": starvation,
        "setup": {"eeg": "64 ch x 1000 Hz, 1-sample pushes", "ecg_hz": 500, "eda_hz": 100,
                  "trigger_every_ms": args.every, "cycles": args.cycles, "on_s": args.on,
                  "off_s": args.off, "cpus": os.cpu_count(),
                  "split": not args.no_split, "stand_in": args.stand_in,
                  "session_cpus_with_window": pinning.describe()["session"],
                  "session_moved_per_window": moved,
                  "qt_platform": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
                  "window_scheduling": windows[0].get("priority", "?") if windows else "?",
                  "window_cpus": windows[0].get("cpus") if windows else None},
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    setup = result["setup"]
    moved_txt = (f"session moved off CPU {display} for {sum(moved)} of {len(windows)} windows"
                 if setup["split"] else "no CPU split (--no-split)")  # fmt: skip
    print(f"{'busy-loop stand-in' if args.stand_in == 'busy' else 'session window'} at "
          "64 ch x 1 kHz EEG + ECG 500 Hz + EDA 100 Hz "
          f"(Qt platform {setup['qt_platform']}, {setup['window_scheduling']}, window on "
          f"CPU {setup['window_cpus']}; {moved_txt})")  # fmt: skip
    print(f"{'cycle':<6} {'fps':>6} {'CPU %':>6} {'update p50 ms':>14} {'p99 ms':>7} "
          f"{'raised':>7} {'engine p99 without':>19} {'with':>6}")  # fmt: skip
    for k, (w, (a, b)) in enumerate(zip(windows, per_cycle, strict=False)):
        print(f"{k:<6} {w['fps']:>6.1f} {w['cpu_pct']:>6.1f} {w['update_ms_p50']:>14.2f} "
              f"{w['update_ms_p99']:>7.2f} {w.get('priority_raises', 0):>7} "
              f"{a.get('p99_ms', np.nan):>19.3f} {b.get('p99_ms', np.nan):>6.3f}")  # fmt: skip
    print()
    print("engine loop latency over the whole run, push of the trigger sample -> fire call "
          f"(ms; real-time priority {engine['realtime_priority']})")  # fmt: skip
    print(f"{'engine':<16} {'p50':>7} {'p99':>7} {'max':>7} {'n':>6}")
    for name, r in (("without window", without), ("with window", with_gui),
                    ("launch/close", transition)):  # fmt: skip
        if r["n"]:
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
    print(f"p99 increase with the window: {result['p99_increase_ms']:+.3f} ms (pooled); "
          f"median over cycles {result['p99_increase_cycle_median_ms']:+.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
