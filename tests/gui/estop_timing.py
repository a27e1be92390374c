"""Emergency-stop latency of the session window, shared by the GUI test and
``bench/gui_estop.py``: input posted while a frame is drawn → the session's HAL gate
disarmed, timed on the shared LSL clock (the gate stamps its ``estop`` marker with
``local_clock()`` right after disarming)."""

from __future__ import annotations

import json
import time

import pylsl
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from stimloop.gui.window import SessionWindow
from stimloop.stream.inlet import MarkerInlet


def post_estop_input(window: SessionWindow, how: str) -> None:
    """Queue the operator's stop: a click on the button, Esc or F12 (even while the
    marker label field has the focus)."""
    if how == "click":
        pos = QtCore.QPointF(window.estop_button.rect().center())
        for kind in (QtCore.QEvent.Type.MouseButtonPress, QtCore.QEvent.Type.MouseButtonRelease):
            ev = QtGui.QMouseEvent(kind, pos, window.estop_button.mapToGlobal(pos),
                                   QtCore.Qt.MouseButton.LeftButton,
                                   QtCore.Qt.MouseButton.LeftButton,
                                   QtCore.Qt.KeyboardModifier.NoModifier)  # fmt: skip
            QtWidgets.QApplication.postEvent(window.estop_button, ev)
        return
    key = {"escape": QtCore.Qt.Key.Key_Escape, "f12": QtCore.Qt.Key.Key_F12}[how]
    window.marker_text.setFocus()
    for kind in (QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.KeyRelease):
        ev = QtGui.QKeyEvent(kind, key, QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.postEvent(window.marker_text, ev)


def _wait_estop_marker(gate: MarkerInlet, timeout_s: float) -> float:
    """LSL time of the gate's next ``estop`` marker, handling Qt events meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for text, t in gate.pull():
            if json.loads(text).get("event") == "estop":
                return t
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.001)
    raise TimeoutError(f"the gate published no estop marker within {timeout_s} s")


def measure_estop(window: SessionWindow, live_session, how: str, presses: int = 5):
    """Press the emergency stop ``presses`` times, re-arming the session between presses.

    Each input is queued while a frame is being drawn, as a click during a redraw would
    be: it is handled only after the frame, and that wait is measured.

    Returns
    -------
    latencies_ms, handled_ms : list of float
        Input → gate disarmed, and input → the window's handler entered, in ms.
    """
    gate = MarkerInlet(live_session.gate_markers).connect()
    latencies, handled = [], []
    try:
        for _ in range(presses):
            if not live_session.rearm()["armed"]:
                raise RuntimeError("the session did not re-arm")
            gate.pull()
            t0 = pylsl.local_clock()
            post_estop_input(window, how)
            window.redraw()
            latencies.append((_wait_estop_marker(gate, 5.0) - t0) * 1e3)
            handled.append((window.estop_handled_t - t0) * 1e3)
            if live_session.state()["armed"]:
                raise RuntimeError("the stop was published but the session is still armed")
    finally:
        live_session.rearm()
        gate.close()
    return latencies, handled
