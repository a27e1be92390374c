"""Emergency-stop latency of the session window against its ≤ 50 ms requirement.

Setup as ``tests/gui/test_window.py``: the demo session (simulators + session) runs in
its own process (``tests/gui/session_child.py``), the window in this one (offscreen Qt
unless a display is set), attached over LSL as to any session. Each press is queued while
a frame is drawn, so it waits for that frame; latency = input → the session's HAL gate
disarmed, timed by the gate's own ``estop`` marker on the shared LSL clock
(``tests/gui/estop_timing.py``, the same code the test runs). Between presses the session
resets its emergency stop and re-arms. Reported per input (button click, Esc, F12):
median, p90 and max against the requirement on the median (docs/gui.md).

Usage: ``python bench/gui_estop.py [--presses 10] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
TESTS_GUI = Path(__file__).resolve().parents[1] / "tests" / "gui"
sys.path.insert(0, str(TESTS_GUI))

import numpy as np
from conftest import LiveSession
from estop_timing import measure_estop
from pyqtgraph.Qt import QtCore, QtWidgets

from stimloop.gui.feed import LiveFeed
from stimloop.gui.window import SessionWindow

REQUIREMENT_MS = 50.0


def _wait_live(win: SessionWindow, timeout_s: float = 60.0) -> None:
    """Until the window shows the session's status and every input's trace."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
        f = win.feed
        tracks = [f.track(r) for r in ("eeg", "ecg", "eda")]
        if f.status() is not None and all(t is not None and t.received for t in tracks):
            return
        time.sleep(0.01)
    raise TimeoutError("the window got no live data from the session")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presses", type=int, default=10, help="per input kind")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    live = LiveSession()
    win = None
    res = {}
    try:
        win = SessionWindow(LiveFeed(live.prefix).start())
        win.resize(1500, 900)
        win.show()
        _wait_live(win)
        for how in ("click", "escape", "f12"):
            lat, handled = measure_estop(win, live, how, args.presses)
            res[how] = {"latency_ms": lat, "handler_ms": handled}
    finally:
        if win is not None:
            win.close()
        live.close()
        app.processEvents()
    if args.json:
        print(json.dumps(res))
        return
    print(f"load average {os.getloadavg()[0]:.2f}; requirement: median <= {REQUIREMENT_MS} ms")
    print(
        f"{'input':<7} {'n':>3} {'median ms':>10} {'p90 ms':>7} {'max ms':>7} "
        f"{'handler p50 ms':>15}"
    )
    for how, r in res.items():
        lat = np.asarray(r["latency_ms"])
        ok = "met" if np.median(lat) <= REQUIREMENT_MS else "NOT MET"
        print(
            f"{how:<7} {lat.size:>3} {np.median(lat):>10.1f} {np.percentile(lat, 90):>7.1f} "
            f"{lat.max():>7.1f} {np.median(r['handler_ms']):>15.1f}  {ok}"
        )


if __name__ == "__main__":
    main()
