"""The session window against a live simulated session (offscreen Qt, real LSL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pylsl
import pytest
from estop_timing import measure_estop
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from stimloop.gui.app import NoSessionError, choose_session
from stimloop.gui.feed import STALE_AFTER_S, LiveFeed
from stimloop.gui.window import SessionWindow
from stimloop.loop.cpus import split_cpus
from stimloop.stream.inlet import MarkerInlet
from stimloop.stream.outlet import Outlet, channel_specs, marker_outlet

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def window(qtbot, live_session):
    feed = LiveFeed(live_session.prefix).start()
    win = SessionWindow(feed)
    qtbot.addWidget(win)
    win.resize(1500, 900)
    win.show()
    yield win
    win.close()


def _wait_live(qtbot, win: SessionWindow, pulses: int = 1) -> None:
    """Until every panel has data: status, EEG, ECG with beats, HR, phase, pulses."""

    def ready() -> bool:
        f = win.feed
        tracks = [f.track(r) for r in ("eeg", "ecg", "eda", "phase", "heart_hr")]
        assert f.status() is not None
        assert all(t is not None and t.received > 0 for t in tracks)
        assert f.beats().size >= 3
        assert len(f.pulses()) >= pulses

    qtbot.waitUntil(ready, timeout=40_000)
    qtbot.wait(300)  # a few frames with everything present


def _painted_fraction(img: QtGui.QImage, rect: QtCore.QRect, rgb: tuple[int, int, int]) -> float:
    """Fraction of pixels in ``rect`` within 60 of colour ``rgb`` (per channel)."""
    img = img.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    ptr = img.constBits()
    arr = np.frombuffer(ptr, np.uint8, img.sizeInBytes()).reshape(img.height(), -1)
    arr = arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[:, :, 2::-1]
    sub = arr[rect.top() : rect.bottom(), rect.left() : rect.right()].astype(int)
    return float((np.abs(sub - np.array(rgb)).max(axis=2) < 60).mean())


def _rect_in(win: QtWidgets.QWidget, widget: QtWidgets.QWidget) -> QtCore.QRect:
    top_left = widget.mapTo(win, QtCore.QPoint(0, 0))
    return QtCore.QRect(top_left, widget.size())


def test_window_shows_live_panels(qtbot, window, live_session, tmp_path):
    _wait_live(qtbot, window)
    # every panel has drawn data from the session, not placeholders
    x, y = window.eeg_curve.getData()
    n_ch = window.feed.track("eeg").ring.data.shape[1]
    assert n_ch == 64 and window.channel_list.count() == 64
    assert x is not None and x.size >= 64 * 100 and np.isfinite(y).all()
    assert x.size <= 64 * 2 * (window.eeg_plot.width() + 2)  # decimated to the pixel width
    for curve in (window.ecg_curve, window.eda_curve, window.hr_curve, window.alpha_curve):
        cx, _ = curve.getData()
        assert cx is not None and cx.size > 2, curve
    assert window.beat_marks.data.size >= 1
    # the beat marks sit on the R peaks: the top of the ECG trace they are drawn on
    _, ecg_y = window.ecg_curve.getData()
    marks_y = np.array([p.pos().y() for p in window.beat_marks.points()])
    assert (marks_y >= np.nanpercentile(ecg_y, 95)).all(), (marks_y, np.nanmax(ecg_y))
    assert "bpm" in window.hrv_label.text()
    # The first pulse's phase is known once the simulator's truth covers it (a few
    # frames after its marker): until then the summary says "pulses: –". The truth is
    # used rather than the estimate.
    qtbot.waitUntil(lambda: "(true phase)" in window.phase_label.text(), timeout=5000)
    assert window.phase_label.text().startswith("pulses ")
    assert window.stim_fields["state"].text().startswith(("ARMED", "disarmed"))
    assert window.stim_fields["intensity"].text() == "50.0 % MSO"
    assert window.health.rowCount() >= 5
    assert window.stale_roles() == set()
    # a phase-locked session: every panel, and neither the localisation nor exposure view
    assert window.eeg_box.isVisible() and window.phase_box.isVisible()
    assert not window.views_column.isVisible()
    assert not window.hbc_view.isVisible() and not window.exposure_view.isVisible()
    # the screenshot is not blank, and the EEG and ECG plots hold their trace colours
    img = window.grab().toImage()
    img.save(str(tmp_path / "window.png"))
    gray = np.array([QtGui.QColor(img.pixel(i, j)).value() for i in range(0, 1500, 7)
                     for j in range(0, 900, 7)])  # fmt: skip
    assert gray.std() > 20
    assert _painted_fraction(img, _rect_in(window, window.eeg_plot), (31, 119, 180)) > 0.01
    assert _painted_fraction(img, _rect_in(window, window.ecg_plot), (214, 39, 40)) > 0.002
    assert _painted_fraction(img, _rect_in(window, window.estop_button), (214, 39, 40)) > 0.5
    # redraws stay bounded at 64 ch x 1 kHz
    assert np.median(window.frame_ms[-20:]) < 1000 / window.fps


@pytest.mark.parametrize("how", ["click", "escape", "f12"])
def test_emergency_stop_disarms_while_busy_redrawing(qtbot, window, live_session, how):
    """Input queued during a redraw → the session's HAL gate disarmed (tests/gui/
    estop_timing.py). The ≤ 50 ms requirement is a speed figure: ``bench/gui_estop.py``
    measures it (docs/benchmarks.md). Here the stop must work from every input and come
    within 150 ms at the median, three times the requirement, so that a loaded CI machine
    passes (one loaded run gave 52.9 ms) while a stop that waited for a timer, a frame
    backlog or the next status poll fails."""
    _wait_live(qtbot, window, pulses=0)
    latencies, handled = measure_estop(window, live_session, how)
    print(f"emergency stop ({how}) -> disarmed, ms: {np.round(latencies, 1)} "
          f"(handler entered after {np.round(handled, 1)})")  # fmt: skip
    assert window.estop_sent_t is not None
    assert np.median(latencies) <= 150.0, latencies


def test_stale_stream_turns_red_and_recovers(qtbot, window, live_session):
    _wait_live(qtbot, window, pulses=0)
    assert "ecg" not in window.stale_roles()
    track = window.feed.track("ecg")
    live_session.command("pause ecg 2.0")
    seen = {}

    def red() -> None:
        assert "ecg" in window.stale_roles()
        seen.setdefault("age", pylsl.local_clock() - track.last_arrival)

    qtbot.waitUntil(red, timeout=3000)
    print(f"ecg shown stale {seen['age']:.3f} s after its last sample")
    assert seen["age"] <= 0.5
    assert STALE_AFTER_S <= seen["age"]
    qtbot.waitUntil(lambda: "ecg" not in window.stale_roles(), timeout=5000)
    assert window.feed.track("ecg").age_s() < 0.5


def _fake_session(prefix: str, eeg_sid: str):
    status = marker_outlet("fake status", f"{prefix}-status", stype="Status")
    return status, {"session": "fake", "prefix": prefix, "source_ids": {"eeg": eeg_sid}}


def _eeg_outlet(sid: str, n_ch: int) -> Outlet:
    labels = [f"E{i}" for i in range(n_ch)]
    return Outlet("fake EEG", "EEG", sid, channel_specs(labels, "uV", "EEG"), 500.0, "float32")


def _push(out: Outlet, n_ch: int, seconds: float, t0: list, nan: bool) -> None:
    n = int(500 * seconds)
    x = np.random.default_rng(0).normal(0, 10, (n, n_ch)).astype(np.float32)
    if nan:
        x[::7, 1] = np.nan
        x[50:200, :] = np.nan
    out.push(x)


def test_nan_stream_channel_change_and_tiny_window(qtbot):
    """NaNs, a stream replaced by one with another channel count, a tiny window."""
    prefix = f"test-gui-fake-{uuid.uuid4().hex[:8]}"
    eeg_sid = f"{prefix}-eeg"
    status, snap = _fake_session(prefix, eeg_sid)
    eeg = _eeg_outlet(eeg_sid, 8)
    feed = LiveFeed(prefix, retry_s=0.2).start()
    win = SessionWindow(feed)
    qtbot.addWidget(win)
    win.show()
    try:

        def pump(out, n_ch, nan):
            status.push_marker(json.dumps(snap))
            _push(out, n_ch, 0.1, [], nan)

        timer = QtCore.QTimer()
        state = {"out": eeg, "n": 8}
        timer.timeout.connect(lambda: pump(state["out"], state["n"], True))
        timer.start(100)
        qtbot.waitUntil(lambda: win.channel_list.count() == 8, timeout=15_000)
        qtbot.waitUntil(lambda: win.feed.track("eeg").nonfinite > 0, timeout=5000)
        qtbot.wait(300)
        x, y = win.eeg_curve.getData()
        assert x.size > 0 and np.isfinite(y).all()  # NaNs become breaks, not values
        gen = win.feed.track("eeg").generation
        # the stream goes away and comes back with 3 channels under the same source_id
        state["out"] = None
        timer.stop()
        eeg.close()
        qtbot.waitUntil(lambda: "eeg" in win.stale_roles(), timeout=5000)
        eeg3 = _eeg_outlet(eeg_sid, 3)
        state.update(out=eeg3, n=3)
        timer.start(100)
        qtbot.waitUntil(lambda: win.feed.track("eeg").generation > gen, timeout=20_000)
        qtbot.waitUntil(lambda: win.channel_list.count() == 3, timeout=5000)
        qtbot.waitUntil(lambda: "eeg" not in win.stale_roles(), timeout=5000)
        # a tiny window keeps redrawing without error
        for size in ((1, 1), (40, 30), (1500, 900)):
            win.resize(*size)
            qtbot.wait(150)
            win.redraw()
        assert win.last_error is None
        assert win.frames > 10
        timer.stop()
        eeg3.close()
    finally:
        win.close()
        status.close()


def test_choose_session_lists_several(live_session):
    assert choose_session("explicit-prefix") == "explicit-prefix"
    other = marker_outlet("other status", f"test-gui-other-{uuid.uuid4().hex[:6]}-status",
                          stype="Status")  # fmt: skip
    try:
        with pytest.raises(NoSessionError, match="choose one with --session") as err:
            choose_session(None, timeout=1.5)
        assert live_session.prefix in str(err.value)
    finally:
        other.close()


# The CPU split (loop/cpus.py) as this machine makes it; none where affinity is unknown.
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
SESSION, DISPLAY = (tuple(sorted(c)) for c in split_cpus(set(CPUS)))
needs_split = pytest.mark.skipif(SESSION == DISPLAY, reason="a split needs two CPUs")


def _thread_cpus(pid: int) -> set[tuple[int, ...]]:
    """The distinct CPU sets of the threads of process ``pid``."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out.add(tuple(sorted(os.sched_getaffinity(int(tid)))))
        except (ProcessLookupError, FileNotFoundError):  # the thread ended meanwhile
            continue
    return out


def _wait_cpus(pid: int, cpus: tuple[int, ...], timeout: float = 20.0) -> set:
    """Until every thread of ``pid`` is on ``cpus`` (or the timeout); the last reading."""
    deadline = time.monotonic() + timeout
    while (seen := _thread_cpus(pid)) != {cpus} and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def _gui_process(prefix: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen([sys.executable, "-m", "stimloop.gui", "--session", prefix, *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


@needs_split
def test_attached_window_keeps_the_session_off_its_cpu(qtbot, live_session):
    """While a window is attached, every thread of the session process (engine, pulse
    scheduler, liblsl, control) keeps off the window's CPU; closing gives them back."""
    pid = live_session.proc.pid
    assert _thread_cpus(pid) == {tuple(CPUS)}
    feed = LiveFeed(live_session.prefix).start()
    win = SessionWindow(feed)
    qtbot.addWidget(win)
    win.show()
    # (a callback returning None counts as done for waitUntil: compare explicitly)
    qtbot.waitUntil(lambda: (feed.status() or {}).get("cpus", {}).get("pinned") is True,
                    timeout=15_000)  # fmt: skip
    assert _thread_cpus(pid) == {SESSION}
    assert tuple(feed.status()["cpus"]["display"]) == DISPLAY
    win.close()
    assert _wait_cpus(pid, tuple(CPUS), 3.0) == {tuple(CPUS)}


@needs_split
def test_gui_process_runs_on_its_own_cpu_and_says_so(live_session, tmp_path):
    """``stimloop gui`` as a process: on the display CPU, the session on the others while
    it runs (its status bar says both), and every CPU back to the session after it."""
    pid = live_session.proc.pid
    report = tmp_path / "gui.json"
    proc = _gui_process(live_session.prefix, "--duration", "6", "--report", str(report))
    try:
        assert _wait_cpus(pid, SESSION) == {SESSION}
        assert _wait_cpus(proc.pid, DISPLAY) == {DISPLAY}  # once the session moved
        assert proc.wait(30.0) == 0, proc.stderr.read().decode(errors="replace")[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    out = json.loads(report.read_text())
    assert tuple(out["cpus"]) == DISPLAY
    cpus = f"CPUs: session {','.join(map(str, SESSION))}, window {','.join(map(str, DISPLAY))}"
    assert cpus in out["status_bar"]
    assert _wait_cpus(pid, tuple(CPUS), 3.0) == {tuple(CPUS)}


@needs_split
def test_gui_process_stopped_by_a_signal_still_says_it_left(live_session):
    """SIGTERM (kill) or SIGINT (Ctrl-C) close the window as its button does: the
    session hears gui_closed and takes every CPU back."""
    pid = live_session.proc.pid
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = _gui_process(live_session.prefix)
        try:
            assert _wait_cpus(pid, SESSION) == {SESSION}
            proc.send_signal(sig)
            assert proc.wait(15.0) == 0, proc.stderr.read().decode(errors="replace")[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()
        assert _wait_cpus(pid, tuple(CPUS), 3.0) == {tuple(CPUS)}, sig
    live_session.rearm()  # the demo config disarms when the window closes


def test_gui_process_crash_keeps_session_and_close_sends_gui_closed(qtbot, own_session):
    """SIGKILL of the GUI process changes nothing; closing a window sends gui_closed.
    Its own session: the killed window leaves it apart from the window's CPU."""
    live_session = own_session
    live_session.rearm()
    proc = _gui_process(live_session.prefix)
    try:
        # attached: the session has moved off the window's CPU, the window onto it
        if SESSION != DISPLAY:
            assert _wait_cpus(live_session.proc.pid, SESSION) == {SESSION}
            assert _wait_cpus(proc.pid, DISPLAY) == {DISPLAY}
        else:
            time.sleep(6.0)
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    time.sleep(0.3)
    state = live_session.state()
    assert state["running"] and state["armed"]  # a crash does not disarm
    # a clean close tells the session, which disarms because the demo config says so
    decisions = MarkerInlet(f"{live_session.prefix}-decisions").connect()
    feed = LiveFeed(live_session.prefix).start()
    win = SessionWindow(feed)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: feed.status() is not None, timeout=15_000)
    win.close()
    qtbot.waitUntil(lambda: not live_session.state()["armed"], timeout=3000)
    qtbot.wait(200)
    events = [json.loads(t) for t, _ in decisions.pull()]
    decisions.close()
    assert any(e.get("event") == "command" and e.get("cmd") == "gui_closed" for e in events)
    assert live_session.state()["running"]  # the session (and its recording) goes on
    # the killed window never said it left: the session stays apart
    if SESSION != DISPLAY:
        assert _thread_cpus(live_session.proc.pid) == {SESSION}
