"""``stimloop gui``: attach a session window to a running session (its own process)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stimloop.dsp.errors import StimloopError
from stimloop.gui.feed import find_sessions
from stimloop.gui.priority import IdlePriority
from stimloop.loop.client import allowed_cpus

#: Period of the Qt thread's heartbeat to the priority guard, ms (its threshold: 250 ms).
HEARTBEAT_MS = 50


class NoSessionError(StimloopError, RuntimeError):
    """No session, or several and none chosen; the message lists what is visible."""


def choose_session(prefix: str | None, timeout: float = 2.0) -> str:
    """The session prefix to attach to.

    Parameters
    ----------
    prefix : str, optional
        The wanted session; when given it is returned as is (the window waits for it).
    timeout : float
        Seconds to look for sessions when ``prefix`` is None.

    Raises
    ------
    NoSessionError
        None visible, or several (they are listed) and none chosen.
    """
    if prefix:
        return prefix
    found = find_sessions(timeout)
    if len(found) == 1:
        return found[0]
    if not found:
        raise NoSessionError(f"no stimloop session is running (looked for {timeout:g} s)")
    raise NoSessionError(
        f"{len(found)} sessions are running; choose one with --session: " + ", ".join(found)
    )


def run_window(
    prefix: str,
    fps: float = 32.0,
    duration_s: float | None = None,
    screenshot: str | None = None,
    report: str | None = None,
    settle_s: float = 3.0,
    exit_with_session: bool = False,
    priority: IdlePriority | None = None,
) -> int:
    """Open the session window and run the Qt event loop until it closes.

    Parameters
    ----------
    prefix : str
        Session prefix (``{prefix}-status`` is its status stream).
    fps : float
        Redraw rate in Hz.
    duration_s : float, optional
        Close the window after this many seconds (benchmarks, scripts).
    screenshot : str, optional
        Save the window as this PNG just before closing after ``duration_s``.
    report : str, optional
        Write frame rate and CPU use (after the first ``settle_s`` s) to this JSON file
        when the window closes (``bench/gui.py``).
    settle_s : float
        Start-up time excluded from the report, in s.
    exit_with_session : bool
        Close when the session's status stream falls silent (the session ended).
    priority : IdlePriority, optional
        The process's started priority guard; a 50 ms timer on the Qt thread is its
        heartbeat (not the frame timer: below 4 fps frames are further apart than the
        guard's starvation threshold) and the status bar shows its state. Once the
        session reports that it keeps off its display CPU, the window is confined to
        that CPU (``IdlePriority.confine``).
    """
    from pyqtgraph.Qt import QtCore, QtWidgets

    from stimloop.gui.feed import LiveFeed
    from stimloop.gui.window import SessionWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    feed = LiveFeed(prefix).start()
    win = SessionWindow(feed, fps, exit_with_session=exit_with_session)
    if priority is not None:
        heartbeat = QtCore.QTimer(win)
        heartbeat.timeout.connect(priority.beat)
        heartbeat.start(HEARTBEAT_MS)
        win.closing.connect(priority.close)
        shown = [""]

        def show_priority() -> None:
            split = (feed.status() or {}).get("cpus") or {}
            if split.get("pinned") and priority.home_cpus is None:
                # The session has moved off its display CPU for this window: take it.
                priority.confine(set(split.get("display") or ()))
            text = priority.state.describe()
            if split.get("pinned") and priority.home_cpus is not None:
                session = ",".join(map(str, split.get("session", [])))
                window = ",".join(map(str, sorted(priority.home_cpus)))
                text += f"; CPUs: session {session}, window {window}"
            if text != shown[0]:
                shown[0] = text
                win.statusBar().showMessage(text)

        win.timer.timeout.connect(show_priority)
    win.show()
    mark: dict[str, float] = {}

    def settle() -> None:
        mark.update(frames=win.frames, t=time.perf_counter(), cpu=time.process_time())

    QtCore.QTimer.singleShot(int(settle_s * 1000), settle)
    if duration_s is not None:

        def finish() -> None:
            if screenshot:
                win.grab().save(screenshot)
            win.close()

        QtCore.QTimer.singleShot(int(duration_s * 1000), finish)
    # Ctrl-C, kill or a closed terminal close the window as its button does, so the
    # session hears gui_closed (it gives its CPUs back, and disarms if so configured).
    restore = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                sig = getattr(signal, name)
                restore[sig] = signal.signal(sig, lambda *_: win.close())
    try:
        app.exec()
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)
    if priority is not None:
        priority.close()
    if report and mark:
        dt = time.perf_counter() - mark["t"]
        ms = np.asarray(win.frame_ms[int(mark["frames"]) - win.frames :] or [np.nan])
        out = {
            "seconds": dt,
            "frames": win.frames - mark["frames"],
            "fps": (win.frames - mark["frames"]) / dt,
            "cpu_pct": 100.0 * (time.process_time() - mark["cpu"]) / dt,
            "update_ms_p50": float(np.percentile(ms, 50)),
            "update_ms_p99": float(np.percentile(ms, 99)),
            "eeg_samples": win.feed.track("eeg").received if win.feed.track("eeg") else 0,
            "priority": priority.state.mode if priority else "inherited",
            "priority_raises": priority.state.promotions if priority else 0,
            "cpus": sorted(allowed_cpus()),
            "status_bar": win.statusBar().currentMessage(),
            "t_announced": win.announced_t,  # local LSL clock, s
            "t_closed": win.closed_t,
        }
        Path(report).write_text(json.dumps(out))
    return 0


def run_participant(
    prefix: str,
    duration_s: float | None = None,
    screenshot: str | None = None,
    priority: IdlePriority | None = None,
) -> int:
    """Show only the participant display of session ``prefix``, full screen (on the
    last screen when there are several), until it is closed (Esc or Q).

    It reads only the session's status, sends nothing to the session and does not
    count as an attached window (the session keeps every CPU). Parameters as for
    :func:`run_window`.
    """
    from pyqtgraph.Qt import QtCore, QtWidgets

    from stimloop.gui.feed import LiveFeed
    from stimloop.gui.participant import ParticipantView, show_participant

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    feed = LiveFeed(prefix, only=()).start()
    view = ParticipantView(feed, closable=True)
    if priority is not None:
        heartbeat = QtCore.QTimer(view)
        heartbeat.timeout.connect(priority.beat)
        heartbeat.start(HEARTBEAT_MS)
    show_participant(view)
    if duration_s is not None:

        def finish() -> None:
            if screenshot:
                view.grab().save(screenshot)
            view.close()

        QtCore.QTimer.singleShot(int(duration_s * 1000), finish)
    restore = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                sig = getattr(signal, name)
                restore[sig] = signal.signal(sig, lambda *_: view.close())
    try:
        app.exec()
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)
        feed.close()
    if priority is not None:
        priority.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m stimloop.gui``."""
    ap = argparse.ArgumentParser(prog="stimloop gui", description=__doc__)
    ap.add_argument("--session", help="session prefix (default: the only one running)")
    ap.add_argument("--fps", type=float, default=32.0, help="redraw rate, Hz")
    ap.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--nice",
        type=int,
        default=10,
        help="niceness (0-19) of the window when it may not use SCHED_IDLE, or when it is "
        "raised out of it because the machine is saturated",
    )
    ap.add_argument(
        "--exit-with-session",
        action="store_true",
        help="close when the session ends (its status stream silent for 5 s)",
    )
    ap.add_argument(
        "--participant",
        action="store_true",
        help="show only the participant's display (the window-of-tolerance band, full "
        "screen, no numbers) of an exposure session; Esc or Q closes it",
    )
    ap.add_argument("--screenshot", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--report", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        # Qt's xcb plugin would abort the process (SIGABRT) with no display.
        print(
            "stimloop gui: error: no display (DISPLAY and WAYLAND_DISPLAY are unset); "
            "set QT_QPA_PLATFORM=offscreen to draw without a screen",
            file=sys.stderr,
        )
        return 2
    # Before Qt or the feed start any thread, so that they all inherit the policy.
    try:
        priority = IdlePriority(nice=args.nice)
    except ValueError as exc:
        print(f"stimloop gui: error: {exc}", file=sys.stderr)
        return 2
    priority.start()
    try:
        prefix = choose_session(args.session)
    except NoSessionError as exc:
        print(f"stimloop gui: error: {exc}", file=sys.stderr)
        return 2
    if args.participant:
        return run_participant(prefix, args.duration, args.screenshot, priority=priority)
    return run_window(
        prefix,
        args.fps,
        args.duration,
        args.screenshot,
        args.report,
        exit_with_session=args.exit_with_session,
        priority=priority,
    )
