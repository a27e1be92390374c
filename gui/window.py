"""The session window: signals, trends, phase, stimulator, stream health and controls.

Everything is drawn from :class:`~stimloop.gui.feed.LiveFeed` copies by a QTimer
(:attr:`SessionWindow.fps` Hz). A redraw does a bounded amount of work whatever the
channel count or rate: every trace is min/max-decimated to about the plot's width in
pixels, and the multichannel EEG is drawn as a single polyline. The emergency stop
sends its datagram from the click (or key) handler itself, before anything else, so it
waits for at most the one redraw that may be running when the click arrives.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, TimeoutError

import numpy as np
import pylsl
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from stimloop.dsp.series import value_at
from stimloop.gui.exposure_view import ExposureView
from stimloop.gui.feed import DISPLAY_BAND_HZ, STALE_AFTER_S, LiveFeed
from stimloop.gui.hbc_view import HBCView
from stimloop.gui.panels import (
    COLOURS,
    GREEN,
    GREY,
    RED,
    PhaseHistogram,
    TrendPanels,
    fit_y,
    phase_summary,
    polar_plot,
    show_target,
    target_line,
    time_plot,
)
from stimloop.gui.participant import ParticipantView, show_participant
from stimloop.gui.plotting import (
    merge_envelope,
    minmax_decimate,
    stack_channels,
)
from stimloop.loop import client

EEG_WINDOW_S = 10.0
TREND_WINDOW_S = 120.0
ECG_WINDOW_S = 6.0
EDA_WINDOW_S = 60.0


class SessionWindow(QtWidgets.QMainWindow):
    """The live window of one session.

    Parameters
    ----------
    feed : LiveFeed
        The started feed of the session (the window closes it on close).
    fps : float
        Redraw rate in Hz.
    exit_with_session : bool
        Close the window once the session's status has been silent for
        ``exit_after_s`` (the session ended); used when a session starts its own window.
    exit_after_s : float
        Silence of the status stream, in s, that counts as the end of the session.
    """

    closing = QtCore.Signal()  # emitted first thing on close, before the frame timer stops

    def __init__(
        self,
        feed: LiveFeed,
        fps: float = 32.0,
        exit_with_session: bool = False,
        exit_after_s: float = 5.0,
    ) -> None:
        super().__init__()
        # Light theme, no antialiasing (cheaper lines); set before any plot exists.
        pg.setConfigOptions(antialias=False, background="w", foreground="k")
        self.feed = feed
        self.fps = fps
        self.exit_with_session = exit_with_session
        self.exit_after_s = exit_after_s
        self.setWindowTitle(f"stimloop: {feed.prefix}")
        self.frames = 0
        self.frame_ms: list[float] = []
        self.last_error: str | None = None  # the last frame that failed to draw
        self.command_error: str | None = None  # the last command the session refused
        self.estop_sent_t: float | None = None
        self.estop_handled_t: float | None = None  # local LSL clock at the last stop, s
        self.estop_reply: client.EstopReply | None = None  # the session's acknowledgement
        self._estop_answered = False
        # Commands go out on one worker thread, in order: the Qt thread never waits on a
        # session (an arm waits for the device to be ready).
        self._commands = ThreadPoolExecutor(1, thread_name_prefix="gui-command")
        self._eeg_gen = -1
        self._scales = np.zeros(0)
        self._shown = np.zeros(0, bool)
        self._announced = False  # gui_open sent to the session
        self.announced_t: float | None = None  # local LSL clock at gui_open, s
        self.closed_t: float | None = None  # local LSL clock at close, s
        self.participant: ParticipantView | None = None  # the client's display, if open
        self._layout_key: tuple | None = None  # what the panels were last laid out for
        self._build()
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.redraw)
        self.timer.start(max(1, int(1000 / fps)))

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        root = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(root)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addLayout(self._controls())
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.signals_column = self._signals()
        self.trends_column = self._trends()
        self.side_column = self._side()
        split.addWidget(self.signals_column)
        split.addWidget(self.trends_column)
        split.addWidget(self.side_column)
        split.setSizes([700, 380, 380])
        split.setChildrenCollapsible(True)
        self.columns_split = split
        # The protocol's or the session kind's own view (HBC localisation, exposure) goes
        # left of the signals, hidden until the session's status asks for it.
        self.outer_split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.views_column = QtWidgets.QWidget()
        views = QtWidgets.QVBoxLayout(self.views_column)
        views.setContentsMargins(0, 0, 0, 0)
        self.hbc_view = HBCView(self.feed, self.command)
        self.exposure_view = ExposureView(self.feed, self.command, self.toggle_participant)
        for view in (self.hbc_view, self.exposure_view):
            view.hide()
            views.addWidget(view, 1)
        self.views_column.hide()
        self.outer_split.addWidget(self.views_column)
        self.outer_split.addWidget(split)
        self.outer_split.setChildrenCollapsible(True)
        outer.addWidget(self.outer_split, 1)
        self.setCentralWidget(root)
        self.resize(1500, 900)

    def _controls(self) -> QtWidgets.QLayout:
        bar = QtWidgets.QHBoxLayout()
        self.estop_button = QtWidgets.QPushButton("EMERGENCY STOP  (Esc / F12)")
        self.estop_button.setStyleSheet(
            f"QPushButton {{background: {RED}; color: white; font-weight: bold; "
            "font-size: 18px; padding: 10px 24px; border-radius: 6px;}"
        )
        self.estop_button.setMinimumHeight(48)
        # pressed, not clicked: the stop goes out on the press, without waiting for release.
        self.estop_button.pressed.connect(self.emergency_stop)
        for key in (QtCore.Qt.Key.Key_Escape, QtCore.Qt.Key.Key_F12):
            sc = QtGui.QShortcut(QtGui.QKeySequence(key), self)
            sc.setContext(QtCore.Qt.ShortcutContext.ApplicationShortcut)
            sc.activated.connect(self.emergency_stop)
        bar.addWidget(self.estop_button)
        self.arm_button = QtWidgets.QPushButton("Arm")
        self.disarm_button = QtWidgets.QPushButton("Disarm")
        self.start_button = QtWidgets.QPushButton("Start protocol")
        self.stop_button = QtWidgets.QPushButton("Stop protocol")
        self.arm_button.clicked.connect(lambda: self.command("arm"))
        self.disarm_button.clicked.connect(lambda: self.command("disarm"))
        self.start_button.clicked.connect(lambda: self.command("resume"))
        self.stop_button.clicked.connect(lambda: self.command("pause"))
        # A weak phase calibration asks the operator (loop/phase_calibration.py); the
        # localisation view has its own Confirm for the coil prompts.
        self.confirm_button = QtWidgets.QPushButton("Confirm calibration")
        self.confirm_button.setToolTip(
            "the alpha peak is weak: phase-lock in the measured band anyway (or stop the session)"
        )
        self.confirm_button.clicked.connect(
            lambda: self.command("confirm", text="weak calibration accepted in the window")
        )
        self.confirm_button.setVisible(False)
        for b in (
            self.arm_button,
            self.disarm_button,
            self.start_button,
            self.stop_button,
            self.confirm_button,
        ):
            bar.addWidget(b)
        self.marker_text = QtWidgets.QLineEdit()
        self.marker_text.setPlaceholderText("event marker label (e.g. exposure 1 start)")
        self.marker_button = QtWidgets.QPushButton("Mark")
        self.marker_button.clicked.connect(self.send_marker)
        self.marker_text.returnPressed.connect(self.send_marker)
        bar.addWidget(self.marker_text, 1)
        bar.addWidget(self.marker_button)
        self.banner = QtWidgets.QLabel("waiting for the session status…")
        self.banner.setMinimumWidth(10)
        bar.addWidget(self.banner, 1)
        return bar

    def _signals(self) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        self.eeg_box = QtWidgets.QWidget()
        eeg_lay = QtWidgets.QVBoxLayout(self.eeg_box)
        eeg_lay.setContentsMargins(0, 0, 0, 0)
        row = QtWidgets.QHBoxLayout()
        self.filter_box = QtWidgets.QCheckBox(
            f"display filter {DISPLAY_BAND_HZ[0]:g}-{DISPLAY_BAND_HZ[1]:g} Hz"
        )
        self.filter_box.setChecked(True)
        self.scale_spin = QtWidgets.QDoubleSpinBox()
        self.scale_spin.setRange(0.1, 100000.0)
        self.scale_spin.setValue(50.0)
        self.scale_spin.setSuffix(" µV/row")
        self.scale_spin.setToolTip("scale of the selected channels (all when none is selected)")
        self.scale_spin.valueChanged.connect(self._apply_scale)
        row.addWidget(self.filter_box)
        row.addWidget(self.scale_spin)
        row.addStretch(1)
        eeg_lay.addLayout(row)
        inner = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.channel_list = QtWidgets.QListWidget()
        self.channel_list.setSelectionMode(
            QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection
        )
        self.channel_list.setMaximumWidth(90)
        self.channel_list.itemChanged.connect(self._channels_changed)
        self.eeg_plot = time_plot("EEG", "", "s")
        self.eeg_plot.getAxis("left").setStyle(tickLength=0)
        self.eeg_curve = self.eeg_plot.plot(pen=pg.mkPen(COLOURS["eeg"], width=1))
        self.eeg_curve.setSkipFiniteCheck(True)
        inner.addWidget(self.channel_list)
        inner.addWidget(self.eeg_plot)
        inner.setSizes([70, 630])
        eeg_lay.addWidget(inner, 1)
        lay.addWidget(self.eeg_box, 5)
        self.ecg_plot = time_plot("ECG with R peaks", "mV")
        self.ecg_curve = self.ecg_plot.plot(pen=pg.mkPen(COLOURS["ecg"]))
        self.beat_marks = pg.ScatterPlotItem(size=8, brush=pg.mkBrush("#000000"), symbol="t")
        self.ecg_plot.addItem(self.beat_marks)
        lay.addWidget(self.ecg_plot, 2)
        self.eda_plot = time_plot("EDA", "µS")
        self.eda_curve = self.eda_plot.plot(pen=pg.mkPen(COLOURS["eda"]))
        lay.addWidget(self.eda_plot, 2)
        return box

    def _trends(self) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        self.trends = TrendPanels()
        t = self.trends
        self.hr_plot, self.hr_curve = t.hr_plot, t.hr_curve
        self.scl_plot, self.scl_curve, self.scr_marks = t.scl_plot, t.scl_curve, t.scr_marks
        self.alpha_plot, self.alpha_curve = t.alpha_plot, t.alpha_curve
        self.conf_plot, self.conf_curve = t.conf_plot, t.conf_curve
        self.hrv_label = QtWidgets.QLabel("HRV: –")
        self.hrv_label.setWordWrap(True)  # its width must not set the column's minimum
        for w in (self.hr_plot, self.hrv_label, self.scl_plot, self.alpha_plot, self.conf_plot):
            lay.addWidget(w, 0 if w is self.hrv_label else 1)
        return box

    def _side(self) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        self.phase_box = QtWidgets.QWidget()
        phase_lay = QtWidgets.QVBoxLayout(self.phase_box)
        phase_lay.setContentsMargins(0, 0, 0, 0)
        dials = QtWidgets.QHBoxLayout()
        self.dial_plot = polar_plot("phase now")
        self.dial_needle = self.dial_plot.plot(pen=pg.mkPen(COLOURS["eeg"], width=4))
        self.dial_target = target_line(self.dial_plot)
        self.histogram = PhaseHistogram("pulse phases")
        self.hist_plot = self.histogram.plot
        dials.addWidget(self.dial_plot)
        dials.addWidget(self.hist_plot)
        phase_lay.addLayout(dials, 1)
        self.phase_label = QtWidgets.QLabel("pulses: –")
        phase_lay.addWidget(self.phase_label)
        lay.addWidget(self.phase_box, 3)
        stim = QtWidgets.QGroupBox("Stimulator")
        self.stim_box = stim
        grid = QtWidgets.QFormLayout(stim)
        self.stim_fields: dict[str, QtWidgets.QLabel] = {}
        for key in ("state", "intensity", "coil", "pulses", "refusals", "headroom", "protocol"):
            lab = QtWidgets.QLabel("–")
            lab.setWordWrap(True)
            self.stim_fields[key] = lab
            grid.addRow(key, lab)
        lay.addWidget(stim, 2)
        self.health = QtWidgets.QTableWidget(0, 6)
        self.health.setHorizontalHeaderLabels(
            ["stream", "age ms", "rate Hz", "gaps", "lost", "NaN"]
        )
        self.health.verticalHeader().setVisible(False)
        self.health.horizontalHeader().setSectionResizeMode(
            QtWidgets.QHeaderView.ResizeMode.ResizeToContents
        )
        self.health.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        lay.addWidget(self.health, 3)
        return box

    # -- actions -----------------------------------------------------------------------
    def emergency_stop(self) -> None:
        """Send the emergency stop to the session now, and show its acknowledgement.

        The request goes out on its own thread (the session answers once disarmed, in
        well under a millisecond; a hung session must not freeze the window), and the
        banner says STOP SENT until the answer says ENGAGED, or NOT CONFIRMED.
        """
        self.estop_handled_t = pylsl.local_clock()
        self.estop_sent_t = time.perf_counter()
        self.estop_reply = None
        self.banner.setText("EMERGENCY STOP SENT")
        self.banner.setStyleSheet(f"color: {RED}; font-weight: bold;")

        def send() -> None:
            replies = client.emergency_stop("window emergency stop", self.feed.prefix)
            self.estop_reply = replies[0] if replies else None
            self._estop_answered = True

        self._estop_answered = False
        threading.Thread(target=send, name="gui-estop", daemon=True).start()

    def command(
        self,
        cmd: str,
        wait_s: float = 0.0,
        on_result: Callable[[str | None], None] | None = None,
        **args,
    ) -> bool:
        """Send a control command (checked by the session's HAL gate) from a worker
        thread. False if no session yet.

        Parameters
        ----------
        cmd : str
            The command (:data:`stimloop.loop.client.COMMANDS`).
        wait_s : float
            > 0: wait that long for the session's answer (used on close).
        on_result : callable, optional
            Called on the worker thread with None (done) or the session's refusal; the
            caller shows it. Without it a refusal shows in the banner.
        **args
            The command's arguments.
        """
        if self.feed.status() is None:
            if on_result is None:
                self.command_error = f"{cmd}: no session status yet"
                self.banner.setText(self.command_error)
            return False

        def send() -> None:
            error = None
            try:
                client.send_command(self.feed.prefix, cmd, **args)
            except Exception as exc:  # ControlError, or anything else: never lost
                error = str(exc)
                if on_result is None:
                    self.command_error = error
            if on_result is not None:
                on_result(error)

        done = self._commands.submit(send)
        if wait_s > 0:
            try:
                done.result(wait_s)
            except TimeoutError:
                self.command_error = f"{cmd}: no answer within {wait_s:g} s"
        return True

    def send_marker(self) -> None:
        """Send the marker label as a ``user_marker`` event (empty labels are refused)."""
        text = self.marker_text.text().strip()
        if not text:
            self.banner.setText("marker needs a label")
            return
        if self.command("marker", text=text):
            self.marker_text.clear()

    def _apply_scale(self, value: float) -> None:
        rows = [self.channel_list.row(i) for i in self.channel_list.selectedItems()]
        if self._scales.size:
            idx = np.asarray(rows, int) if rows else np.arange(self._scales.size)
            self._scales[idx] = value

    def _channels_changed(self, _item=None) -> None:
        n = self.channel_list.count()
        self._shown = np.array(
            [
                self.channel_list.item(i).checkState() == QtCore.Qt.CheckState.Checked
                for i in range(n)
            ],
            bool,
        )

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Tell the session the GUI is gone; it decides (by config) whether to disarm."""
        first_close = self.closed_t is None  # a signal and a timer may both close it
        self.closed_t = self.closed_t or pylsl.local_clock()
        self.closing.emit()
        self.timer.stop()
        if self.participant is not None:
            self.participant.close()
        # "attached": this window announced itself (gui_open), so the session counts it
        # out; one closed before its first status never counted in. Sent before the
        # process can end, so the session surely hears it.
        if first_close:
            self.command("gui_closed", wait_s=3.0, attached=self._announced)
        self.feed.close()
        super().closeEvent(event)

    # -- redraw ------------------------------------------------------------------------
    def redraw(self) -> None:
        """One frame: copy from the feed, decimate, draw. Never blocks on LSL."""
        t0 = time.perf_counter()
        now = pylsl.local_clock()
        k = self.frames
        if not self._announced and k % 3 == 0:
            self._announce()
        try:
            # Fast signals every frame; slow trends, dials and text at a fraction of it,
            # which is all they change at (status arrives at 10 Hz, HR at 4 Hz).
            self._draw_eeg(now)
            self._draw_ecg(now)
            if k % 3 == 0:
                self._draw_phase()
                self._draw_status()
                self._draw_views(now)
            if k % 6 == 1:
                self._line(self.eda_curve, self.eda_plot, "eda", EDA_WINDOW_S, now)
                self._draw_trends(now)
        except Exception as exc:  # a bad frame must never take the window down
            self.last_error = f"redraw: {exc!r}"
            self.banner.setText(self.last_error)
        self.frames += 1
        self.frame_ms.append((time.perf_counter() - t0) * 1e3)
        if len(self.frame_ms) > 2000:
            del self.frame_ms[:1000]

    def _announce(self) -> None:
        """Send ``gui_open`` once the session's status is known, outside the drawing (a
        frame that fails must not keep the window from announcing itself). The session
        keeps its threads off this window's CPU while it is attached (loop/cpus.py);
        closeEvent's ``gui_closed`` gives them back."""
        if self.feed.status() is not None:
            self._announced = self.command("gui_open")
            self.announced_t = pylsl.local_clock()

    def _bins(self, plot: pg.PlotWidget, px_per_bin: int = 2) -> int:
        """Decimation bins for ``plot``: one (min, max) pair per ``px_per_bin`` pixels."""
        return max(2, int(plot.getPlotItem().vb.width()) // px_per_bin)

    def _draw_eeg(self, now: float) -> None:
        tr = self.feed.track("eeg")
        if tr is None:
            return
        filtered = self.filter_box.isChecked()
        env = tr.latest_envelope(EEG_WINDOW_S, filtered)
        if env is not None:  # the reader's block min/max: 8x fewer values to copy
            ts, lo, hi, gen = env
            n_ch = lo.shape[1]
        else:
            data, ts, gen = tr.latest(EEG_WINDOW_S, filtered=filtered)
            n_ch = data.shape[1]
        if gen != self._eeg_gen:
            self._rebuild_channels(tr.labels)
            self._eeg_gen = gen
        if ts.size == 0 or n_ch != self._shown.size:
            self.eeg_curve.setData([], [])
            return
        idx = np.flatnonzero(self._shown)
        if idx.size == 0:
            self.eeg_curve.setData([], [])
            return
        # 3 px per (min, max) pair: 64 stacked rows are ~7 px high, so finer detail is not
        # visible, and every point costs paint time.
        bins = self._bins(self.eeg_plot, 3)
        if env is not None:
            t, y = merge_envelope(ts - now, lo[:, idx], hi[:, idx], bins)
        else:
            t, y = minmax_decimate(ts - now, data[:, idx], bins)
        x, yy, conn = stack_channels(t, y, self._scales[idx])
        self.eeg_curve.setData(x, yy, connect=conn)
        ticks = [((idx.size - 1 - k), tr.labels[i]) for k, i in enumerate(idx)]
        step = max(1, len(ticks) // 24)
        self.eeg_plot.getAxis("left").setTicks([ticks[::step]])
        self.eeg_plot.setXRange(-EEG_WINDOW_S, 0, padding=0)
        self.eeg_plot.setYRange(-1, idx.size, padding=0)

    def _rebuild_channels(self, labels: list[str]) -> None:
        self.channel_list.blockSignals(True)
        self.channel_list.clear()
        for lab in labels:
            item = QtWidgets.QListWidgetItem(lab)
            item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(QtCore.Qt.CheckState.Checked)
            self.channel_list.addItem(item)
        self.channel_list.blockSignals(False)
        self._scales = np.full(len(labels), self.scale_spin.value())
        self._shown = np.ones(len(labels), bool)

    def _draw_ecg(self, now: float) -> None:
        self._line(self.ecg_curve, self.ecg_plot, "ecg", ECG_WINDOW_S, now)
        beats = self.feed.beats() - now
        beats = beats[beats > -ECG_WINDOW_S]
        tr = self.feed.track("ecg")
        if tr is not None and beats.size:
            data, ts, _ = tr.latest(ECG_WINDOW_S)
            if ts.size and data.shape[1]:
                # NaN where a beat lies outside the shown ECG or on a NaN sample: no mark.
                y = value_at(ts, data[:, 0], beats + now)
                ok = np.isfinite(y)
                self.beat_marks.setData(beats[ok], y[ok])
        else:
            self.beat_marks.setData([], [])

    def _line(self, curve, plot, role: str, seconds: float, now: float,
              col: int | tuple[int, ...] = 0) -> np.ndarray:  # fmt: skip
        """Draw one column of a track (or the sum of several columns)."""
        tr = self.feed.track(role)
        if tr is None:
            return np.empty(0)
        data, ts, _ = tr.latest(seconds)
        cols = (col,) if isinstance(col, int) else col
        if ts.size == 0 or data.shape[1] <= max(cols):
            curve.setData([], [])
            return np.empty(0)
        values = data[:, list(cols)].sum(axis=1)
        t, y = minmax_decimate(ts - now, values, self._bins(plot))
        curve.setData(t, y, connect="finite")
        plot.setXRange(-seconds, 0, padding=0)
        if plot is not self.conf_plot:
            fit_y(plot, y)
        return values

    def _draw_trends(self, now: float) -> None:
        self._line(self.hr_curve, self.hr_plot, "heart_hr", TREND_WINDOW_S, now, 0)
        hr = self.feed.track("heart_hr")
        if hr is not None:
            data, _, _ = hr.latest(1.0)
            if data.shape[0] and data.shape[1] >= 4:
                bpm, ibi, rmssd, sdnn = data[-1, :4]
                self.hrv_label.setText(
                    f"HR {bpm:.0f} bpm   IBI {ibi:.0f} ms   "
                    f"RMSSD {rmssd:.0f} ms   SDNN {sdnn:.0f} ms"
                )
        level = self.feed.track("eda_level")
        if level is not None and level.connected:
            # SCL + phasic: the conductance the SCRs were scored on, as the offline figure
            # draws it, so each SCR mark sits at the foot of its rise.
            self.scl_plot.setTitle("skin conductance with SCRs (EDA stage)")
            self._line(self.scl_curve, self.scl_plot, "eda_level", TREND_WINDOW_S, now, (0, 1))
        else:
            self.scl_plot.setTitle("skin conductance (raw EDA)")
            self._line(self.scl_curve, self.scl_plot, "eda", TREND_WINDOW_S, now, 0)
        scr = self.feed.track("eda_scr")
        if scr is not None and scr.connected:
            data, _, _ = scr.latest(0)
            onset = data[:, 0] - now if data.shape[1] >= 4 else np.empty(0)
            onset = onset[onset > -TREND_WINDOW_S]
            lvl = self.feed.track("eda_level")
            y = np.full(onset.size, np.nan)
            if lvl is not None and onset.size:
                ld, lt, _ = lvl.latest(TREND_WINDOW_S)
                if ld.shape[1] >= 2:
                    y = value_at(lt, ld[:, 0] + ld[:, 1], onset + now)  # at each onset
            ok = np.isfinite(y)
            self.scr_marks.setData(onset[ok], y[ok])
        self._line(self.alpha_curve, self.alpha_plot, "phase", TREND_WINDOW_S / 4, now, 1)
        self._line(self.conf_curve, self.conf_plot, "phase", TREND_WINDOW_S / 4, now, 2)

    def _draw_phase(self) -> None:
        status = self.feed.status() or {}
        target = (status.get("protocol") or {}).get("target_phase_deg")
        tr = self.feed.track("phase")
        if tr is not None:
            data, _, _ = tr.latest(0)
            if data.shape[0] and data.shape[1] >= 3:
                ph, _, conf = data[-1, :3]
                r = float(np.clip(conf, 0.05, 1.0)) if math.isfinite(conf) else 0.05
                if math.isfinite(ph):
                    self.dial_needle.setData([0, r * math.cos(ph)], [0, r * math.sin(ph)])
        show_target(self.dial_target, target)
        pulses = self.feed.pulses()
        phases = np.array([p.phase_rad for p in pulses])
        n_true = sum(math.isfinite(p.phase_true_rad) for p in pulses)
        stats = self.histogram.show(phases, target)
        if stats["n"]:
            self.phase_label.setText(phase_summary(stats, n_true, target))

    def _draw_status(self) -> None:
        status = self.feed.status()
        age = self.feed.status_age_s()
        if self.exit_with_session and status is not None and age > self.exit_after_s:
            self.close()
            return
        if status is None or age > 1.0:
            self.banner.setText(
                "session not responding" if status else "waiting for the session status…"
            )
            self.banner.setStyleSheet(f"color: {RED}; font-weight: bold;")
        elif self._estop_answered:
            r = self.estop_reply
            self.banner.setText(
                f"EMERGENCY STOP ENGAGED: {r.session}" if r is not None and r.engaged
                else "EMERGENCY STOP NOT CONFIRMED by the session: use the stimulator's own stop"
            )  # fmt: skip
            self.banner.setStyleSheet(f"color: {RED}; font-weight: bold;")
        elif self.estop_sent_t is None:
            engaged = status.get("estop_engaged")
            refused = f"  —  {self.command_error}" if self.command_error else ""
            self.banner.setText(
                f"session {status.get('session')} ({status.get('prefix')})"
                + ("  —  EMERGENCY STOP ENGAGED" if engaged else "")
                + refused
            )
            bad = engaged or refused
            self.banner.setStyleSheet(f"color: {RED if bad else GREEN}; font-weight: bold;")
        st = (status or {}).get("stimulator") or {}
        if st:
            f = self.stim_fields
            armed = st.get("armed")
            f["state"].setText(
                f"{'ARMED' if armed else 'disarmed'}, {'ready' if st.get('ready') else 'not ready'}"
                + (f", error: {st['error']}" if st.get("error") else "")
                + f"  ({st.get('driver')})"
            )
            f["state"].setStyleSheet(f"color: {RED if armed else GREY}; font-weight: bold;")
            f["intensity"].setText(f"{_num(st.get('intensity_pct'))} % MSO")
            f["coil"].setText(
                f"{'present' if st.get('coil_present') else 'ABSENT'}, "
                f"{_num(st.get('coil_temperature_c'))} °C"
            )
            f["pulses"].setText(f"{st.get('pulses_delivered')} delivered")
            f["refusals"].setText(f"{st.get('refusals')}; last: {st.get('last_refusal') or '–'}")
            f["headroom"].setText(
                f"{st.get('pulse_headroom')} of {st.get('max_pulses')} pulses, "
                f"{_num(st.get('intensity_headroom_pct'))} % below the "
                f"{_num(st.get('max_intensity_pct'))} % limit, IPI ≥ {_num(st.get('min_ipi_s'))} s"
            )
            pr = status.get("protocol") or {}
            text = f"{pr.get('name')} {'running' if pr.get('running') else 'PAUSED'}"
            if pr.get("site"):
                sites = pr.get("sites") or []
                text += f", site {pr['site']} ({pr.get('site_number')} of {len(sites)}), "
                text += "waiting for the operator" if pr.get("waiting") else str(pr.get("state"))
            elif pr:
                text += f", target {pr.get('target_phase_deg')}° ({pr.get('control')})"
                text += calibration_text(pr.get("calibration"))
            f["protocol"].setText(text if pr else "none")
            self.confirm_button.setVisible(
                bool(pr.get("waiting")) and pr.get("name") == "phase_locked"
            )
        if status is not None:
            self._apply_layout(status)
        self._draw_health(status)

    def _apply_layout(self, status: dict) -> None:
        """Show the panels this session has data for, and its kind's view (HBC
        localisation, exposure); the rest are hidden, so that an ECG-only localisation
        or an EDA and ECG exposure session gets the room. Changes only when the session's
        make-up does."""
        ids = status.get("source_ids") or {}
        eeg, ecg, eda = ("eeg" in ids), ("ecg" in ids), ("eda" in ids)
        phase = "phase" in (status.get("catalog") or {})
        stim = status.get("stimulator") is not None and status.get("protocol") is not None
        hbc = (status.get("protocol") or {}).get("name") == "hbc"
        exposure = status.get("exposure") is not None
        key = (eeg, ecg, eda, phase, stim, hbc, exposure)
        if key == self._layout_key:
            return
        self._layout_key = key
        self.eeg_box.setVisible(eeg)
        self.ecg_plot.setVisible(ecg)
        self.eda_plot.setVisible(eda)
        self.signals_column.setVisible(eeg or ecg or eda)
        self.hr_plot.setVisible(ecg)
        self.hrv_label.setVisible(ecg)
        self.scl_plot.setVisible(eda)
        self.alpha_plot.setVisible(phase)
        self.conf_plot.setVisible(phase)
        self.trends_column.setVisible(ecg or eda or phase)
        self.phase_box.setVisible(phase)
        self.stim_box.setVisible(status.get("stimulator") is not None)
        for b in (self.arm_button, self.disarm_button, self.start_button, self.stop_button):
            b.setEnabled(stim)
        self.hbc_view.setVisible(hbc)
        self.exposure_view.setVisible(exposure)
        was = self.views_column.isVisible()
        self.views_column.setVisible(hbc or exposure)
        if (hbc or exposure) and not was:
            # The view takes over half; beside it the signals, trends and side panels in
            # equal parts (the EEG, whose rows need the width, is absent or secondary).
            w = max(self.outer_split.width(), 2)
            view_w = int(0.55 * w)
            self.outer_split.setSizes([view_w, w - view_w])
            self.columns_split.setSizes([(w - view_w) // 3] * 3)

    def _draw_views(self, now: float) -> None:
        """Redraw the session kind's views (at the status rate)."""
        status = self.feed.status()
        if status is None:
            return
        if self.hbc_view.isVisible():
            self.hbc_view.refresh(status, now)
        if self.exposure_view.isVisible():
            self.exposure_view.refresh(status, now)
        if self.participant is not None and not self.participant.isVisible():
            self.participant = None  # closed by the window manager
        self.exposure_view.participant_button.setChecked(self.participant is not None)

    def toggle_participant(self) -> None:
        """Open the participant display (full screen on a second screen, if any), or
        close it if open."""
        if self.participant is not None:
            self.participant.close()
            self.participant = None
        else:
            self.participant = ParticipantView(self.feed)
            show_participant(self.participant, avoid=self)
        self.exposure_view.participant_button.setChecked(self.participant is not None)

    def _draw_health(self, status: dict | None) -> None:
        session_streams = (status or {}).get("streams") or {}
        # Optional derived streams (an EDA stage) get a row once they have appeared.
        catalog = (status or {}).get("catalog") or {}
        derived = [
            k for k, e in catalog.items()
            if not e.get("marker") and e.get("display_s") and e.get("continuous")
        ]  # fmt: skip
        roles = [
            r
            for r in ("eeg", "ecg", "eda", *derived)
            if (tr := self.feed.track(r)) is not None
            and (r in ("eeg", "ecg", "eda") or tr.generation)
        ]
        if self.health.rowCount() != len(roles):
            self.health.setRowCount(len(roles))
        for row, role in enumerate(roles):
            tr = self.feed.track(role)
            s = session_streams.get(role) or {}
            stale = tr.is_stale() or (
                bool(s.get("stale")) and (s.get("age_s") or 0) > STALE_AFTER_S
            )
            age = tr.age_s()
            cells = [
                role + (" STALE" if stale else ""),
                "–" if not math.isfinite(age) else f"{age * 1e3:.0f}",
                _num(s.get("rate_hz", tr.rate_hz)) if tr.rate_hz > 0 else "irregular",
                str(s.get("gaps", tr.gaps)),
                str(s.get("lost_samples", tr.lost_samples)),
                str(s.get("nonfinite", tr.nonfinite)),
            ]
            color = QtGui.QColor(RED if stale else "#ffffff")
            fg = QtGui.QColor("#ffffff" if stale else "#000000")
            for col, text in enumerate(cells):
                item = self.health.item(row, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    self.health.setItem(row, col, item)
                item.setText(text)
                item.setBackground(color)
                item.setForeground(fg)

    def stale_roles(self) -> set[str]:
        """Roles whose health row is currently red (for tests and scripts)."""
        out = set()
        for row in range(self.health.rowCount()):
            item = self.health.item(row, 0)
            if item is not None and item.text().endswith(" STALE"):
                out.add(item.text().split()[0])
        return out


def _num(x: object) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.1f}" if math.isfinite(v) else "–"


def calibration_text(cal: dict | None) -> str:
    """The phase calibration for the protocol line (empty without one)."""
    if not cal:
        return ""
    state = cal.get("state")
    if state == "running":
        return (
            f"; calibrating {100 * (cal.get('progress') or 0.0):.0f} % of {cal['duration_s']:g} s"
        )
    figures = (
        f"IAF {_num(cal.get('iaf_hz'))} Hz, SNR {_num(cal.get('snr_db'))} dB, "
        f"expected SD {_num(cal.get('expected_sd_deg'))}°"
    )
    if state == "awaiting_confirm":
        return f"; calibration {cal.get('recommendation')} ({figures}): Confirm or stop"
    if state == "tracking":
        return f"; no alpha peak ({cal.get('reason')}): tracking the IAF"
    lo, hi = cal.get("band_hz") or (math.nan, math.nan)
    return f"; band {lo:.2f}-{hi:.2f} Hz locked ({figures})"
