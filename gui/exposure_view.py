"""The exposure session in the session window: window-of-tolerance biofeedback for the
therapist, exercise markers, and the per-exercise figures (issue #19, docs/exposure.md).

Shown while the session's status has an ``exposure`` entry. It draws:

- a large, calm **band indicator** (below / within / above the window, calibrating, no
  reading) from the status, and an **alert** when the session says the client has been
  above the window for longer than ``alert_after_s``;
- the **arousal index** of the catalog's ``arousal`` stream with the band edges;
- the **exercise controls**: start (with a label) and end, expectancy, SUDS at start,
  peak and end, outcome (0-100), a "what I learned" note, and a cue. Each builds its
  marker with the schema's own builders (:mod:`stimloop.loop.client` re-exports them)
  and sends it with the ``mark`` command; the session validates it again and publishes
  it on its ``exposure`` stream, from which this view learns what is open;
- the **exercise table**: labels and ratings from the ``exposure`` stream, physiology
  from the ``exercises`` stream (each exercise's figures, final ``settle_s`` after its
  end), and the habituation curve (peak arousal per exercise, in order).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from stimloop.gui.feed import LiveFeed
from stimloop.gui.panels import BAND_COLOURS, GREY, band_state, fit_y, time_plot
from stimloop.gui.plotting import minmax_decimate
from stimloop.loop import client

if TYPE_CHECKING:
    from stimloop.loop.exposure_markers import Exercise

#: Arousal history shown, s.
INDEX_WINDOW_S = 300.0
#: What the therapist's indicator says in each state: headline, and the line under it.
BAND_TEXT = {
    "hypo": ("below the window", "hypo-arousal: little activation"),
    "within": ("within the window", "arousal within the window of tolerance"),
    "hyper": ("above the window", "hyper-arousal: above the window of tolerance"),
    "unknown": ("no reading", "no arousal index now: EDA lost or invalid"),
    "uncalibrated": ("calibrating", "resting baseline: the index starts after it"),
    "none": ("no session", "the session's status is not arriving"),
}
#: Band codes of the ``arousal`` stream's ``band`` channel, as the catalog documents them.
BAND_CODES = {0: "unknown", 1: "hypo", 2: "within", 3: "hyper"}
HYPER_CODE = 3
ALERT_STYLE = (
    "background: #e6550d; color: white; font-weight: bold; font-size: 17px; "
    "padding: 8px; border-radius: 4px;"
)
TABLE_COLUMNS = (
    "#", "exercise", "min", "expect.", "outcome", "SUDS s/p/e",
    "peak arousal", "above s", "SCRs", "ΔSCL µS", "ΔHR bpm",
)  # fmt: skip


class BandIndicator(QtWidgets.QFrame):
    """A large, calm panel in the band's colour with what the band means."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ""
        lay = QtWidgets.QVBoxLayout(self)
        self.headline = QtWidgets.QLabel()
        self.headline.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.headline.setStyleSheet("font-size: 30px; font-weight: bold; color: #222;")
        self.detail = QtWidgets.QLabel()
        self.detail.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.detail.setWordWrap(True)
        self.detail.setStyleSheet("font-size: 14px; color: #333;")
        lay.addWidget(self.headline)
        lay.addWidget(self.detail)
        self.setMinimumHeight(110)
        self.set_state("none")

    def set_state(self, state: str, detail: str = "") -> None:
        """Show ``state`` (a key of :data:`BAND_TEXT`); ``detail`` replaces its line."""
        if state != self.state:
            self.state = state
            self.setStyleSheet(
                f"BandIndicator {{background: {BAND_COLOURS[state]}; border-radius: 12px;}}"
            )
            self.headline.setText(BAND_TEXT[state][0])
        self.detail.setText(detail or BAND_TEXT[state][1])


class ExposureView(QtWidgets.QWidget):
    """The exposure panel (see module docstring).

    Parameters
    ----------
    feed : LiveFeed
        The session's feed.
    command : callable
        ``command(cmd, on_result=None, **args) -> bool`` (:meth:`SessionWindow.command`);
        ``on_result(error or None)`` runs on the command thread.
    open_participant : callable, optional
        Opens or closes the participant display (the button is hidden without it).
    """

    def __init__(
        self,
        feed: LiveFeed,
        command: Callable[..., bool],
        open_participant: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.feed = feed
        self.command = command
        self.open_participant = open_participant
        self._markers: list[tuple[float, str]] = []  # (LSL t, JSON) of the exposure stream
        self._taken = {"exposure": 0, "exercises": 0}
        self.log = client.parse_exercises([])
        self.figures: dict[int, dict] = {}  # exercise number -> its figures
        self.calibration_note = ""
        self._pending: str | None = None  # what was sent and not yet answered
        self._result: tuple[str, str | None] | None = None  # (what, error) from the worker
        self.last_sent: str | None = None  # the last marker the session accepted (JSON)
        self._build()

    # -- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        top = QtWidgets.QHBoxLayout()
        left = QtWidgets.QVBoxLayout()
        self.indicator = BandIndicator()
        left.addWidget(self.indicator, 1)  # the room left over makes it larger
        self.alert_label = QtWidgets.QLabel()
        self.alert_label.setWordWrap(True)
        self.alert_label.setStyleSheet(ALERT_STYLE)
        self.alert_label.hide()
        left.addWidget(self.alert_label)
        left.addWidget(self._controls())
        self.participant_button = QtWidgets.QPushButton("Participant display")
        self.participant_button.setCheckable(True)
        self.participant_button.setToolTip(
            "a calm full-screen view of the band for the client (second monitor)"
        )
        self.participant_button.clicked.connect(self._toggle_participant)
        self.participant_button.setVisible(self.open_participant is not None)
        left.addWidget(self.participant_button)
        top.addLayout(left, 1)
        right = QtWidgets.QVBoxLayout()
        self.index_plot = time_plot("arousal index (z against the rest)", "z")
        self.within_region = pg.LinearRegionItem(
            values=(1, 4),
            orientation="horizontal",
            movable=False,
            brush=pg.mkBrush(161, 217, 155, 70),
            pen=pg.mkPen(None),
        )
        self.index_plot.addItem(self.within_region)
        self.edges = []
        for name in ("low", "high"):
            line = pg.InfiniteLine(
                angle=0,
                pen=pg.mkPen("#31a354", width=1, style=QtCore.Qt.PenStyle.DashLine),
                label=name,
                labelOpts={"position": 0.03, "color": "#31a354", "anchors": [(0, 1), (0, 1)]},
            )
            self.index_plot.addItem(line)
            self.edges.append(line)
        self.index_curve = self.index_plot.plot(pen=pg.mkPen("#3182bd", width=2))
        right.addWidget(self.index_plot, 3)
        self.habituation_plot = time_plot("habituation: peak arousal per exercise", "z", "")
        self.habituation_plot.setLabel("bottom", "exercise")
        self.habituation_plot.getPlotItem().setClipToView(False)
        self.habituation_curve = self.habituation_plot.plot(
            pen=pg.mkPen("#3182bd", width=2), symbol="o", symbolSize=8,
            symbolBrush="#3182bd", symbolPen=None,
        )  # fmt: skip
        self.habituation_high = pg.InfiniteLine(
            angle=0, pen=pg.mkPen("#31a354", width=1, style=QtCore.Qt.PenStyle.DashLine)
        )
        self.habituation_plot.addItem(self.habituation_high)
        right.addWidget(self.habituation_plot, 2)
        top.addLayout(right, 1)
        outer.addLayout(top, 4)
        self.table = QtWidgets.QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(120)
        outer.addWidget(self.table, 2)

    def _controls(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Exercise")
        g = QtWidgets.QGridLayout(box)
        g.setVerticalSpacing(4)
        self.label_edit = QtWidgets.QLineEdit()
        self.label_edit.setPlaceholderText("exercise label (e.g. lift, 3rd floor)")
        self.label_edit.setMaxLength(200)
        self.start_button = QtWidgets.QPushButton("Start")
        self.end_button = QtWidgets.QPushButton("End")
        self.start_button.clicked.connect(self.start_exercise)
        self.end_button.clicked.connect(self.end_exercise)
        g.addWidget(self.label_edit, 0, 0, 1, 3)
        g.addWidget(self.start_button, 0, 3)
        g.addWidget(self.end_button, 0, 4)
        self.expectancy_spin = _rating_spin("how likely is the feared outcome (before)")
        self.outcome_spin = _rating_spin("did the feared outcome happen (after)")
        self.suds_spin = _rating_spin("distress, SUDS")
        self.expectancy_button = QtWidgets.QPushButton("Send")
        self.outcome_button = QtWidgets.QPushButton("Send")
        self.expectancy_button.clicked.connect(lambda: self.send_rating("expectancy"))
        self.outcome_button.clicked.connect(lambda: self.send_rating("outcome"))
        g.addWidget(QtWidgets.QLabel("expectancy"), 1, 0)
        g.addWidget(self.expectancy_spin, 1, 1)
        g.addWidget(self.expectancy_button, 1, 2)
        g.addWidget(QtWidgets.QLabel("outcome"), 2, 0)
        g.addWidget(self.outcome_spin, 2, 1)
        g.addWidget(self.outcome_button, 2, 2)
        g.addWidget(QtWidgets.QLabel("SUDS"), 3, 0)
        g.addWidget(self.suds_spin, 3, 1)
        self.suds_buttons = {}
        suds_row = QtWidgets.QHBoxLayout()
        for moment in ("start", "peak", "end"):
            b = QtWidgets.QPushButton(moment)
            b.clicked.connect(lambda _=False, m=moment: self.send_rating("suds", m))
            self.suds_buttons[moment] = b
            suds_row.addWidget(b)
        g.addLayout(suds_row, 3, 2, 1, 3)
        self.cue_edit = QtWidgets.QLineEdit()
        self.cue_edit.setPlaceholderText("cue label (optional)")
        self.cue_edit.setMaxLength(200)
        self.cue_button = QtWidgets.QPushButton("Cue")
        self.cue_button.setToolTip("an event inside the exercise: its evoked SCR is scored")
        self.cue_button.clicked.connect(self.send_cue)
        g.addWidget(self.cue_edit, 1, 3)
        g.addWidget(self.cue_button, 1, 4)
        self.note_edit = QtWidgets.QPlainTextEdit()
        self.note_edit.setPlaceholderText("what I learned")
        self.note_edit.setMaximumHeight(54)
        self.note_button = QtWidgets.QPushButton("Save note")
        self.note_button.clicked.connect(self.send_note)
        g.addWidget(self.note_edit, 4, 0, 1, 4)
        g.addWidget(self.note_button, 4, 4)
        self.state_label = QtWidgets.QLabel("no exercise yet")
        self.state_label.setStyleSheet("font-weight: bold;")
        self.feedback = QtWidgets.QLabel("")
        self.feedback.setWordWrap(True)
        g.addWidget(self.state_label, 5, 0, 1, 5)
        g.addWidget(self.feedback, 6, 0, 1, 5)
        return box

    # -- actions -------------------------------------------------------------------------
    def _send(self, what: str, build: Callable[[], str]) -> bool:
        """Build a marker (refused input is named in the view, nothing sent) and send it."""
        try:
            marker = build()
        except client.ExposureMarkerError as exc:
            self._show_feedback(f"not sent: {exc}", error=True)
            return False

        def done(error: str | None) -> None:  # command thread: no Qt here
            self._result = (what, error)
            if error is None:
                self.last_sent = marker

        if not self.command("mark", on_result=done, marker=marker):
            self._show_feedback(f"not sent ({what}): no session status yet", error=True)
            return False
        self._pending = what
        self._show_feedback(f"sending {what}…")
        return True

    def start_exercise(self) -> None:
        """Send ``exercise_start`` with the label typed."""
        label = self.label_edit.text()
        if self._send(f"start '{label.strip()}'", lambda: client.exercise_start(label)):
            self.start_button.setEnabled(False)

    def end_exercise(self) -> None:
        """Send ``exercise_end`` for the open exercise (with its label)."""
        ex = self.open_exercise()
        label = ex.label if ex is not None else None
        if self._send("end", lambda: client.exercise_end(label)):
            self.end_button.setEnabled(False)

    def send_rating(self, scale: str, moment: str | None = None) -> None:
        """Send a rating (0-100) of ``scale`` (SUDS at ``moment``)."""
        spin = {"expectancy": self.expectancy_spin, "outcome": self.outcome_spin}.get(
            scale, self.suds_spin
        )
        value = spin.value()
        name = f"SUDS {moment}" if moment else scale
        self._send(f"{name} {value}", lambda: client.rating(scale, value, moment))

    def send_cue(self) -> None:
        """Send a cue (its label optional)."""
        label = self.cue_edit.text()
        self._send("cue", lambda: client.cue(label))

    def send_note(self) -> None:
        """Send the "what I learned" note; the field clears once the session has it."""
        text = self.note_edit.toPlainText()
        self._send("note", lambda: client.learned(text))

    def _toggle_participant(self) -> None:
        if self.open_participant is not None:
            self.open_participant()

    def _show_feedback(self, text: str, error: bool = False) -> None:
        self.feedback.setText(text)
        self.feedback.setStyleSheet(f"color: {'#d62728' if error else GREY};")

    def open_exercise(self) -> Exercise | None:
        """The exercise now open (per the session's ``exposure`` stream), or None."""
        if self.log.exercises and not self.log.exercises[-1].ended:
            return self.log.exercises[-1]
        return None

    # -- redraw --------------------------------------------------------------------------
    def refresh(self, status: dict, now: float) -> None:
        """Redraw from the newest status and events (Qt thread; ``now``: LSL s)."""
        ex = status.get("exposure") or {}
        self._take_events()
        self._draw_band(status, ex, now)
        self._draw_index(ex, now)
        self._draw_controls()
        self._draw_table(ex)

    def _take_events(self) -> None:
        events, self._taken["exposure"] = self.feed.marker_events(
            "exposure", self._taken["exposure"]
        )
        new = False
        for msg, t in events:
            if "kind" in msg:
                self._markers.append((t, json.dumps(msg)))
                new = True
            elif msg.get("event") == "calibrated":
                self.calibration_note = "calibrated"
            elif msg.get("event") == "calibration_failed":
                self.calibration_note = f"calibration failed: {msg.get('error')}"
        if new:
            self.log = client.parse_exercises(self._markers)
        figs, self._taken["exercises"] = self.feed.marker_events(
            "exercises", self._taken["exercises"]
        )
        for msg, _ in figs:
            if isinstance(msg.get("number"), int):
                self.figures[msg["number"]] = msg

    def _draw_band(self, status: dict, ex: dict, now: float) -> None:
        state = band_state(status, age_s=self.feed.status_age_s())
        detail = ""
        if state == "uncalibrated" and self.calibration_note.startswith("calibration failed"):
            detail = self.calibration_note
        self.indicator.set_state(state, detail)
        if ex.get("alert") and state != "none":
            above = self._time_in_band(HYPER_CODE, now)
            since = f" for {above:.0f} s" if math.isfinite(above) else ""
            self.alert_label.setText(
                f"ALERT: above the window{since} (alert after {_g(ex.get('alert_after_s'))} s)"
            )
            self.alert_label.show()
        else:
            self.alert_label.hide()

    def _time_in_band(self, code: int, now: float) -> float:
        """How long the ``arousal`` stream's band has been ``code`` up to now, s."""
        tr = self.feed.track("arousal")
        if tr is None:
            return math.nan
        data, ts, _ = tr.latest(INDEX_WINDOW_S)
        if not ts.size or data.shape[1] < 5:
            return math.nan
        other = np.flatnonzero(data[:, 4] != code)
        first = other[-1] + 1 if other.size else 0
        return now - ts[first] if first < ts.size else math.nan

    def _draw_index(self, ex: dict, now: float) -> None:
        low, high = _float(ex.get("band_low")), _float(ex.get("band_high"))
        if math.isfinite(low) and math.isfinite(high):
            self.within_region.setRegion((low, high))
            for line, value, name in zip(self.edges, (low, high), ("low", "high"), strict=True):
                line.setPos(value)
                line.label.setFormat(f"{name} {value:g}")
            self.habituation_high.setPos(high)
        tr = self.feed.track("arousal")
        y = np.empty(0)
        if tr is not None:
            data, ts, _ = tr.latest(INDEX_WINDOW_S)
            keep = ts > now - INDEX_WINDOW_S
            if keep.any() and data.shape[1]:
                bins = max(2, int(self.index_plot.getPlotItem().vb.width()) // 2)
                t, y = minmax_decimate(ts[keep] - now, data[keep, 0], bins)
                self.index_curve.setData(t, y, connect="finite")
        self.index_plot.setXRange(-INDEX_WINDOW_S, 0, padding=0)
        fit_y(self.index_plot, np.concatenate([y, [v for v in (low, high) if math.isfinite(v)]]))

    def _draw_controls(self) -> None:
        if self._result is not None:
            what, error = self._result
            self._result = self._pending = None
            if error:
                self._show_feedback(f"refused ({what}): {error}", error=True)
            else:
                self._show_feedback(f"sent: {what}")
                if what == "note":
                    self.note_edit.clear()
        ex = self.open_exercise()
        waiting = self._pending is not None
        self.start_button.setEnabled(ex is None and not waiting)
        self.end_button.setEnabled(ex is not None and not waiting)
        if ex is not None:
            self.state_label.setText(f"exercise {ex.number} running: {ex.label}")
        elif self.log.exercises:
            last = self.log.exercises[-1]
            self.state_label.setText(f"exercise {last.number} ended: {last.label}")
        else:
            self.state_label.setText("no exercise yet")

    def _draw_table(self, ex: dict) -> None:
        exercises = self.log.exercises
        if self.table.rowCount() != len(exercises):
            self.table.setRowCount(len(exercises))
        for r, e in enumerate(exercises):
            fig = self.figures.get(e.number)
            if fig is None:
                state = "running" if not e.ended else "…"
                physiology = [state, "", "", "", ""]
            else:
                physiology = [
                    _fmt(fig.get("arousal_peak"), 1),
                    _fmt(fig.get("time_hyper_s"), 0),
                    _fmt(fig.get("scr_count"), 0),
                    _fmt(fig.get("scl_change_us"), 2),
                    _fmt(fig.get("hr_peak_change_bpm"), 1),
                ]
            suds = "/".join(_fmt(v, 0) for v in (e.suds_start, e.suds_peak, e.suds_end))
            cells = [
                str(e.number),
                e.label,
                _fmt(e.duration_s / 60.0, 1),
                _fmt(e.expectancy, 0),
                _fmt(e.outcome, 0),
                suds,
                *physiology,
            ]
            tip = "\n".join([*e.issues, *((fig or {}).get("issues") or [])])
            for c, text in enumerate(cells):
                item = self.table.item(r, c)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    self.table.setItem(r, c, item)
                item.setText(text)
                item.setToolTip(tip or (e.learned and f"learned: {e.learned}") or "")
                invalid = fig is not None and not fig.get("eda_valid", True)
                item.setForeground(QtGui.QColor(GREY if invalid else "#000000"))
        n = np.array(sorted(self.figures), float)
        peaks = np.array([_float(self.figures[int(k)].get("arousal_peak")) for k in n])
        ok = np.isfinite(peaks)
        self.habituation_curve.setData(n[ok], peaks[ok])
        if ok.any():
            last = int(max(n[ok].max(), 3))
            self.habituation_plot.setXRange(0.5, last + 0.5, padding=0)
            step = max(1, last // 10)
            ticks = [(k, str(k)) for k in range(1, last + 1, step)]
            self.habituation_plot.getAxis("bottom").setTicks([ticks])
            high = _float(ex.get("band_high"))
            fit_y(self.habituation_plot, np.append(peaks[ok], high if math.isfinite(high) else []))


def _rating_spin(tip: str) -> QtWidgets.QSpinBox:
    spin = QtWidgets.QSpinBox()
    spin.setRange(0, 100)
    spin.setToolTip(f"{tip}: 0-100")
    return spin


def _float(x: object) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _fmt(x: object, digits: int) -> str:
    v = _float(x)
    return f"{v:.{digits}f}" if math.isfinite(v) else "–"


def _g(x: object) -> str:
    v = _float(x)
    return f"{v:g}" if math.isfinite(v) else "–"
