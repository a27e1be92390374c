"""Plot panels shared by the live window and the offline session figure
(``stimloop analyze --plot``), so that both draw a session the same way."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore

from stimloop.dsp.circular import circular_stats

RED = "#d62728"
GREEN = "#2ca02c"
GREY = "#7f7f7f"
N_PHASE_BINS = 18
COLOURS = {
    "eeg": "#1f77b4",
    "ecg": RED,
    "eda": GREEN,
    "hr": RED,
    "scl": GREEN,
    "scr": "#ff7f0e",
    "alpha": "#9467bd",
    "confidence": "#8c564b",
}


def time_plot(title: str, left: str = "", bottom: str = "s") -> pg.PlotWidget:
    """A plot of a signal or trend against time.

    Parameters
    ----------
    title : str
        Panel title.
    left : str
        Unit of the vertical axis (µV, bpm, µS …).
    bottom : str
        Unit of the time axis.
    """
    w = pg.PlotWidget(title=title)
    w.setLabel("left", left)
    w.setLabel("bottom", bottom)
    # No grid: its translucent lines cost more to paint than the traces (measured).
    w.setMenuEnabled(False)
    # Ranges are set by the caller (the window with hysteresis): autorange would re-lay
    # the axes out, tick labels included, on every frame.
    w.getPlotItem().vb.disableAutoRange()
    w.setMinimumSize(10, 10)
    w.getPlotItem().setClipToView(True)
    return w


def fit_y(plot: pg.PlotWidget, y: np.ndarray) -> None:
    """Fit the y range of ``plot`` to the values ``y`` (NaN ignored), changing it only
    when the data leave it or use less than half of it (a steady axis costs no tick
    re-layout)."""
    finite = y[np.isfinite(y)]
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    span = max(hi - lo, 1e-9)
    (cur_lo, cur_hi) = plot.getPlotItem().vb.viewRange()[1]
    if lo < cur_lo or hi > cur_hi or span < 0.5 * (cur_hi - cur_lo):
        pad = 0.1 * span if hi > lo else max(abs(hi) * 0.01, 1e-3)
        plot.setYRange(lo - pad, hi + pad, padding=0)


def polar_plot(title: str) -> pg.PlotWidget:
    """An empty phase dial: unit circle, half circle, and 0° (peak) / 180° (trough)."""
    w = pg.PlotWidget(title=title)
    w.setAspectLocked(True)
    w.hideAxis("left")
    w.hideAxis("bottom")
    w.setMenuEnabled(False)
    w.setMouseEnabled(False, False)
    w.setMinimumSize(10, 10)
    a = np.linspace(0, 2 * np.pi, 181)
    for r in (0.5, 1.0):
        w.plot(r * np.cos(a), r * np.sin(a), pen=pg.mkPen(GREY, width=1))
    labels = (
        (0, "0°\npeak", (0, 0.5)),
        (np.pi, "180°\ntrough", (1, 0.5)),
        (np.pi / 2, "90°", (0.5, 1)),
        (-np.pi / 2, "-90°", (0.5, 0)),
    )
    for ang, text, anchor in labels:
        t = pg.TextItem(text, color=GREY, anchor=anchor)
        t.setPos(1.03 * np.cos(ang), 1.03 * np.sin(ang))
        w.addItem(t)
    w.setRange(xRange=(-1.6, 1.6), yRange=(-1.25, 1.25), padding=0)
    return w


def target_line(plot: pg.PlotWidget) -> pg.PlotDataItem:
    """A dashed red radius for the target phase (set with :func:`show_target`)."""
    return plot.plot(pen=pg.mkPen(RED, width=2, style=QtCore.Qt.PenStyle.DashLine))


def show_target(line: pg.PlotDataItem, target_deg: float | None) -> None:
    """Point a :func:`target_line` at ``target_deg`` (degrees; None hides it)."""
    if target_deg is None or not math.isfinite(float(target_deg)):
        line.setData([], [])
        return
    a = math.radians(float(target_deg))
    line.setData([0, 1.1 * math.cos(a)], [0, 1.1 * math.sin(a)])


class PhaseHistogram:
    """Polar histogram of pulse phases with their mean vector and the target.

    Parameters
    ----------
    title : str
        Panel title.
    n_bins : int
        Bins over the circle.
    """

    def __init__(self, title: str = "pulse phases", n_bins: int = N_PHASE_BINS) -> None:
        self.n_bins = n_bins
        self.plot = polar_plot(title)
        self.bars = self.plot.plot(
            pen=pg.mkPen(COLOURS["scr"], width=1),
            brush=pg.mkBrush(255, 127, 14, 90),
            fillLevel=None,
        )
        self.mean = self.plot.plot(pen=pg.mkPen("#000000", width=3))
        self.target = target_line(self.plot)

    def show(self, phases_rad: np.ndarray, target_deg: float | None) -> dict[str, float]:
        """Draw ``phases_rad`` (NaN ignored); bars are scaled to the fullest bin.

        Returns
        -------
        dict
            :func:`~stimloop.dsp.circular.circular_stats` of the phases.
        """
        show_target(self.target, target_deg)
        phases = np.asarray(phases_rad, dtype=float)
        finite = phases[np.isfinite(phases)]
        stats = circular_stats(finite)
        if finite.size == 0:
            self.bars.setData([], [])
            self.mean.setData([], [])
            return stats
        counts, edges = np.histogram(np.mod(finite, 2 * np.pi), self.n_bins, (0, 2 * np.pi))
        r = counts / counts.max()
        xs, ys = [], []
        for c, a0, a1 in zip(r, edges[:-1], edges[1:], strict=True):
            arc = np.linspace(a0, a1, 6)
            xs += [0, *(c * np.cos(arc)), 0]
            ys += [0, *(c * np.sin(arc)), 0]
        self.bars.setData(xs, ys)
        z = np.mean(np.exp(1j * finite))
        self.mean.setData([0, z.real], [0, z.imag])
        return stats


def phase_summary(stats: dict[str, float], n_true: int, target_deg: float | None) -> str:
    """The line under the pulse-phase histogram, live and offline alike.

    Parameters
    ----------
    stats : dict
        :func:`~stimloop.dsp.circular.circular_stats` of the shown phases.
    n_true : int
        How many of them are true phases (the rest are the session's estimates).
    target_deg : float, optional
        Target phase, degrees.
    """
    n = int(stats["n"])
    if n == 0:
        return "pulses: –"
    source = "true" if n_true == n else ("estimated" if n_true == 0 else "true/estimated")
    text = (
        f"pulses {n} ({source} phase): circular mean {stats['mean_deg']:.0f}°, "
        f"SD {stats['sd_deg']:.0f}°"
    )
    return text + (f"   target {float(target_deg):g}°" if target_deg is not None else "")


class TrendPanels:
    """The slow trends of a session: heart rate, SCL with SCR markers, alpha amplitude
    and phase-estimate confidence (one plot each, with its curve)."""

    def __init__(self) -> None:
        self.hr_plot = time_plot("heart rate", "bpm")
        self.hr_curve = self.hr_plot.plot(pen=pg.mkPen(COLOURS["hr"], width=2))
        self.scl_plot = time_plot("skin conductance with SCRs", "µS")
        self.scl_curve = self.scl_plot.plot(pen=pg.mkPen(COLOURS["scl"], width=2))
        self.scr_marks = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(COLOURS["scr"]), symbol="o")
        self.scl_plot.addItem(self.scr_marks)
        self.alpha_plot = time_plot("alpha amplitude (target)", "µV")
        self.alpha_curve = self.alpha_plot.plot(pen=pg.mkPen(COLOURS["alpha"], width=1))
        self.conf_plot = time_plot("phase confidence", "")
        self.conf_plot.setYRange(0, 1)
        self.conf_curve = self.conf_plot.plot(pen=pg.mkPen(COLOURS["confidence"], width=1))

    @property
    def plots(self) -> list[pg.PlotWidget]:
        """Top to bottom."""
        return [self.hr_plot, self.scl_plot, self.alpha_plot, self.conf_plot]


#: Window-of-tolerance states as the views show them: soft, calm colours (no red: the
#: band is information, the therapist's alert is separate).
BAND_COLOURS = {
    "hypo": "#9ecae1",  # soft blue: below the window
    "within": "#a1d99b",  # soft green
    "hyper": "#fdae6b",  # soft orange: above the window
    "unknown": "#d9d9d9",  # no index now (EDA lost or invalid)
    "uncalibrated": "#d9d9d9",  # the calibration rest is still running
    "none": "#d9d9d9",  # no session status
}


def band_state(status: dict | None, max_age_s: float = 1.0, age_s: float = 0.0) -> str:
    """The window-of-tolerance state to show, from a session status.

    Parameters
    ----------
    status : dict, optional
        The session's status snapshot (its ``exposure`` entry).
    max_age_s : float
        A status older than this (s) shows as ``"none"``: the session is not answering.
    age_s : float
        Age of ``status``, s.

    Returns
    -------
    str
        ``"none"`` (no session, or no exposure), ``"uncalibrated"``, or the band:
        ``"unknown"``, ``"hypo"``, ``"within"``, ``"hyper"``.
    """
    ex = (status or {}).get("exposure")
    if not isinstance(ex, dict) or age_s > max_age_s:
        return "none"
    if not ex.get("calibrated"):
        return "uncalibrated"
    band = ex.get("band")
    return band if band in ("hypo", "within", "hyper") else "unknown"
