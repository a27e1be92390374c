"""The offline figure of a recorded session (``stimloop analyze --plot``).

It is drawn with the live window's own panels (:mod:`stimloop.gui.panels`): the same
polar histogram of pulse phases (true phase where the truth was recorded, the estimate
otherwise), the same trends and colours, so a session looks the same live and after.
Rendered offscreen when no display is set; no window is shown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from stimloop.dsp.series import value_at
from stimloop.loop.report import RecordedSession


def _application():
    """The running QApplication, or a new one (offscreen when there is no display)."""
    if not any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from pyqtgraph.Qt import QtWidgets

    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["stimloop analyze"])


def save_session_figure(
    rec: RecordedSession, path: str | Path, size: tuple[int, int] = (1400, 860)
) -> dict[str, Any]:
    """Draw a recorded session and save it as a PNG.

    Parameters
    ----------
    rec : RecordedSession
        From :func:`stimloop.loop.report.read_session`.
    path : str or Path
        PNG file to write.
    size : tuple of int
        Width and height in pixels.

    Returns
    -------
    dict
        ``phase``: circular statistics of the histogram's phases, ``phase_text``: the
        line under it (as in the live window), ``n_true``: pulses with a true phase, and
        ``points``: samples drawn per trend panel.
    """
    app = _application()
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtWidgets

    from stimloop.gui.panels import COLOURS, PhaseHistogram, TrendPanels, phase_summary

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    root = QtWidgets.QWidget()
    root.resize(*size)
    grid = QtWidgets.QHBoxLayout(root)
    trends = TrendPanels()
    left = QtWidgets.QVBoxLayout()
    for plot in trends.plots:
        left.addWidget(plot, 1)
    grid.addLayout(left, 3)
    right = QtWidgets.QVBoxLayout()
    histogram = PhaseHistogram("pulse phases")
    right.addWidget(histogram.plot, 3)
    label = QtWidgets.QLabel()
    label.setWordWrap(True)
    right.addWidget(label)
    summary = QtWidgets.QLabel()
    summary.setWordWrap(True)
    right.addWidget(summary, 1)
    grid.addLayout(right, 2)

    t0 = _start_time(rec)
    points: dict[str, int] = {}
    curves = {
        "heart rate": (trends.hr_plot, trends.hr_curve, rec.series("heart-hr", 0)),
        "SCL": (trends.scl_plot, trends.scl_curve, rec.series("eda-level", 0)),
        "alpha amplitude": (trends.alpha_plot, trends.alpha_curve, rec.series("phase", 1)),
        "confidence": (trends.conf_plot, trends.conf_curve, rec.series("phase", 2)),
    }
    t_end = max((float(s.time_stamps[-1]) for s in rec.streams.values() if len(s.time_stamps)),
                default=t0)  # fmt: skip
    for name, (plot, curve, (t, y)) in curves.items():
        points[name] = int(np.isfinite(y).sum())
        curve.setData(t - t0, y, connect="finite")
        # One time axis for all trends, the whole recording; y fits the data except for
        # the confidence, which keeps its 0-1 scale.
        plot.setXRange(0.0, t_end - t0, padding=0.01)
        if plot is not trends.conf_plot:
            plot.enableAutoRange(axis="y")
    scr_t, _ = rec.series("eda-scr", 0)  # column 0: onset time, s (LSL clock)
    level_t, level = rec.series("eda-level", 0)
    at_onset = value_at(level_t, level, scr_t)
    shown = np.isfinite(at_onset)
    trends.scr_marks.setData(scr_t[shown] - t0, at_onset[shown])
    points["SCR"] = int(scr_t.size)
    for t in rec.pulse_t - t0:
        trends.hr_plot.addItem(pg.InfiniteLine(t, angle=90, pen=pg.mkPen(COLOURS["scr"], width=1)))
    target = rec.config.get("protocol", {}).get("target_phase_deg")
    stats = histogram.show(rec.pulse_phase, target)
    n_true = int(np.isfinite(rec.pulse_phase_true).sum())
    phase_text = phase_summary(stats, n_true, target)
    label.setText(phase_text)
    refused = sum(1 for e in rec.decisions if e.get("event") == "refused")
    summary.setText(
        f"session {rec.config.get('name')!r}\n{Path(rec.path).name}\n"
        f"{rec.pulse_t.size} pulses delivered (orange lines on the heart rate), "
        f"{refused} refused\n" + ("" if rec.damage is None else f"file damaged: {rec.damage}")
    )
    root.show()
    app.processEvents()
    image = root.grab()
    root.close()
    if not image.save(str(path), "PNG"):
        raise OSError(f"could not write the figure to {path}")
    return {"phase": stats, "phase_text": phase_text, "n_true": n_true, "points": points}


def _start_time(rec: RecordedSession) -> float:
    """The earliest recorded sample, s: time zero of the figure's axes."""
    times = [float(s.time_stamps[0]) for s in rec.streams.values() if len(s.time_stamps)]
    return min(times) if times else 0.0
