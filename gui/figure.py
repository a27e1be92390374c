"""The offline figure of a recorded session (``stimloop analyze --plot``).

It is drawn with the live window's own panels (:mod:`stimloop.gui.panels`): the same
polar histogram of pulse phases (true phase where the truth was recorded, the estimate
otherwise), the same trends and colours, so a session looks the same live and after.
Rendered offscreen when no display is set; no window is shown.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _application():
    """The running QApplication, or a new one (offscreen when there is no display)."""
    if not any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from pyqtgraph.Qt import QtWidgets

    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["stimloop analyze"])


def save_session_figure(
    data: Mapping[str, Any], path: str | Path, size: tuple[int, int] = (1400, 860)
) -> dict[str, Any]:
    """Draw a recorded session and save it as a PNG.

    Parameters
    ----------
    data : mapping
        The arrays of ``stimloop.loop.report.figure_data`` (times in s from the
        recording's start): ``hr_t``/``hr``, ``eda_t``/``eda``, ``alpha_t``/``alpha``/
        ``confidence``, ``scr_t``/``scr_level``, ``pulse_t``/``pulse_phase``, ``n_true``,
        ``target_deg``, ``t_end``, ``name``, ``file_name``, ``refused``, ``damage``.
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

    d = {k: np.asarray(v) for k, v in data.items()}
    points: dict[str, int] = {}
    curves = {
        "heart rate": (trends.hr_plot, trends.hr_curve, d["hr_t"], d["hr"]),
        "skin conductance": (trends.scl_plot, trends.scl_curve, d["eda_t"], d["eda"]),
        "alpha amplitude": (trends.alpha_plot, trends.alpha_curve, d["alpha_t"], d["alpha"]),
        "confidence": (trends.conf_plot, trends.conf_curve, d["alpha_t"], d["confidence"]),
    }
    t_end = float(d["t_end"])
    for name, (plot, curve, t, y) in curves.items():
        points[name] = int(np.isfinite(y).sum())
        curve.setData(t, y, connect="finite")
        # One time axis for all trends, the whole recording; y fits the data except for
        # the confidence, which keeps its 0-1 scale.
        plot.setXRange(0.0, t_end, padding=0.01)
        if plot is not trends.conf_plot:
            plot.enableAutoRange(axis="y")
    shown = np.isfinite(d["scr_level"])
    trends.scr_marks.setData(d["scr_t"][shown], d["scr_level"][shown])
    points["SCR"] = int(d["scr_t"].size)
    for t in d["pulse_t"]:
        trends.hr_plot.addItem(pg.InfiniteLine(t, angle=90, pen=pg.mkPen(COLOURS["scr"], width=1)))
    target = float(d["target_deg"])
    stats = histogram.show(d["pulse_phase"], None if np.isnan(target) else target)
    n_true = int(d["n_true"])
    phase_text = phase_summary(stats, n_true, target)
    label.setText(phase_text)
    damage = str(d["damage"])
    summary.setText(
        f"session {str(d['name'])!r}\n{d['file_name']}\n"
        f"{d['pulse_t'].size} pulses delivered (orange lines on the heart rate), "
        f"{int(d['refused'])} refused\n" + (f"file damaged: {damage}" if damage else "")
    )
    root.show()
    app.processEvents()
    image = root.grab()
    root.close()
    if not image.save(str(path), "PNG"):
        raise OSError(f"could not write the figure to {path}")
    return {"phase": stats, "phase_text": phase_text, "n_true": n_true, "points": points}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stimloop.gui.figure DATA.npz OUT.png``: draw, print the result as JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m stimloop.gui.figure DATA.npz OUT.png", file=sys.stderr)
        return 2
    with np.load(args[0]) as npz:
        data = {k: npz[k] for k in npz.files}
    print(json.dumps(save_session_figure(data, args[1]), default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
