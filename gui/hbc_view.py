"""The heart-brain-coupled localisation in the session window (NCG-TMS, issue #17).

Shown while the session's protocol is ``hbc``. Everything comes from what the session
publishes: the status (``protocol``: site, order, state, waiting), the ``hbc`` marker
stream (the plan, each site's start, each cycle's HR change and HBC, each finished
site's ranking), the decision stream (each ``fired`` train, the operator ``prompt``,
an ``alert`` from the cardiac stop rule) and the heart stage's HR series. The ranking
of a site still running is computed here from its cycles with the session's own
:func:`stimloop.dsp.hbc.summarise_site`, so it reads as the session will rank it.

The operator confirms the coil position with the Confirm button (the ``confirm``
command; the session then arms and starts the site). It is enabled only while the
session says it is waiting, and once per prompt.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from stimloop.dsp.hbc import CYCLE_DTYPE, DEFAULT_THRESHOLD, Cycle, HBCParams, summarise_site
from stimloop.gui.feed import LiveFeed
from stimloop.gui.panels import COLOURS, GREY, RED, fit_y, time_plot
from stimloop.gui.plotting import minmax_decimate

#: HR history shown, s: one site (16 cycles of 16 s) with its baseline.
HR_WINDOW_S = 300.0
#: Display names of the protocol's intensity units.
UNITS = {"pct_rmt": "% rMT", "pct_mso": "% MSO"}
#: Colours: trains (translucent orange), the best site's row (pale green).
TRAIN_BRUSH = (255, 127, 14, 70)
BEST_ROW = "#c7e9c0"
#: A confirm the session has not answered, nor acted on, within this long may be sent
#: again, s.
CONFIRM_RETRY_S = 5.0


@dataclass
class HBCProgress:
    """What the ``hbc`` marker stream has said so far (plain data, no Qt).

    Attributes
    ----------
    plan : dict or None
        The ``plan`` event: order, order_seed, intensities, unit, train
        [frequency Hz, pulses], cycle_s, threshold.
    site_starts : list of (str, float)
        Each site's start: its name and the onset of its rest cycle (LSL s).
    cycles : dict
        Site -> its ``cycle`` events, in arrival order (a restarted site's cycles are
        replaced by the new ones of the same index).
    ranking : dict or None
        The newest ``site_done`` ranking (every finished site).
    refused : list of dict
        ``train_refused`` events.
    """

    plan: dict | None = None
    site_starts: list[tuple[str, float]] = field(default_factory=list)
    cycles: dict[str, dict[int, dict]] = field(default_factory=dict)
    ranking: dict | None = None
    refused: list[dict] = field(default_factory=list)

    def add(self, msg: dict) -> None:
        """Take one event of the ``hbc`` stream (unknown events are ignored)."""
        event = msg.get("event")
        if event == "plan":
            self.plan = msg
        elif event == "site_start" and isinstance(msg.get("site"), str):
            self.site_starts.append((msg["site"], _float(msg.get("onset_s"))))
            self.cycles.setdefault(msg["site"], {})
        elif event == "cycle" and isinstance(msg.get("site"), str):
            index = msg.get("index")
            if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
                self.cycles.setdefault(msg["site"], {})[index] = msg
        elif event == "site_done" and isinstance(msg.get("ranking"), dict):
            self.ranking = msg["ranking"]
        elif event == "train_refused":
            self.refused.append(msg)

    @property
    def threshold(self) -> float:
        """The coupling threshold, ln(bpm²) (the published default without the plan: a
        window that attached after the session published it)."""
        return _float((self.plan or {}).get("threshold"), DEFAULT_THRESHOLD)

    @property
    def threshold_known(self) -> bool:
        """Whether the plan (with the session's threshold) has been received."""
        return math.isfinite(_float((self.plan or {}).get("threshold")))

    def unit(self, fired: str = "") -> str:
        """The intensity unit as shown (``% rMT`` or ``% MSO``): the plan's, else
        ``fired`` (the unit a fired train was announced with), else ""."""
        unit = (self.plan or {}).get("unit") or fired
        return UNITS.get(unit, str(unit))

    def intensities(self) -> list[float]:
        """The plan's intensities, else those of the cycles seen so far."""
        planned = [_float(v) for v in (self.plan or {}).get("intensities", [])]
        if not planned:
            planned = [_float(c.get("intensity")) for cs in self.cycles.values()
                       for k, c in cs.items() if k > 0]  # fmt: skip
        return sorted(v for v in planned if math.isfinite(v))

    def points(self, site: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """HBC by intensity of ``site``'s stimulation cycles.

        Returns
        -------
        intensity, hbc : ndarray
            Sorted by intensity; HBC in ln(bpm²), NaN where not finite.
        valid : ndarray of bool
            The session counted the cycle (enough HR, no gap).
        rest_hbc : float
            HBC of the rest cycle (NaN if none yet, or invalid).
        """
        rows = [c for k, c in sorted(self.cycles.get(site, {}).items()) if k > 0]
        x = np.array([_float(c.get("intensity")) for c in rows])
        y = np.array([_float(c.get("hbc")) for c in rows])
        ok = np.array([bool(c.get("valid")) for c in rows], bool)
        order = np.argsort(x, kind="stable")
        rest = self.cycles.get(site, {}).get(0)
        rest_hbc = _float(rest.get("hbc")) if rest and rest.get("valid") else math.nan
        return x[order], y[order], ok[order], rest_hbc

    def provisional(self, site: str) -> dict | None:
        """The ranking row of a site still running, from its cycles so far (the
        session's :func:`~stimloop.dsp.hbc.summarise_site`), or None without any."""
        by_index = self.cycles.get(site, {})
        if not any(k > 0 for k in by_index):
            return None
        cycles, metrics = [], np.zeros(len(by_index), CYCLE_DTYPE)
        for j, (k, c) in enumerate(sorted(by_index.items())):
            cycles.append(Cycle(site, k, _float(c.get("intensity"), 0.0), _float(c.get("onset_s"))))
            for name in CYCLE_DTYPE.names:
                metrics[name][j] = bool(c.get(name)) if name == "valid" else _float(c.get(name))
        s = summarise_site(site, cycles, metrics, HBCParams(threshold=self.threshold))
        return {
            "site": site,
            "n_above": s.n_above,
            "mean_hbc": s.mean_hbc,
            "slope": s.slope,
            "passes": None,  # the session's min_above is not published: decided at the end
        }

    def table(self, running: str | None) -> list[dict]:
        """Rows of the ranking table: the finished sites in the session's ranking order,
        then the running site (``running`` True), if it has cycles and is not ranked."""
        ranking = self.ranking or {}
        best = ranking.get("best_site")
        rows = [
            {**r, "best": r.get("site") == best, "running": False}
            for r in ranking.get("sites", [])
            if isinstance(r, dict)
        ]
        ranked = {r.get("site") for r in rows}
        if running and running not in ranked and (p := self.provisional(running)) is not None:
            rows.append({**p, "best": False, "running": True})
        return rows


class HBCView(QtWidgets.QWidget):
    """The localisation panel: prompt and Confirm, cardiac alert, HR with the trains,
    HBC by intensity for the current site, the site ranking so far.

    Parameters
    ----------
    feed : LiveFeed
        The session's feed.
    command : callable
        ``command(cmd, on_result=None, **args) -> bool``: sends a control command from
        a worker thread (:meth:`SessionWindow.command`); ``on_result(error or None)`` is
        called on that thread once the session answered.
    """

    def __init__(self, feed: LiveFeed, command: Callable[..., bool]) -> None:
        super().__init__()
        self.feed = feed
        self.command = command
        self.progress = HBCProgress()
        self._taken = 0
        self._confirm_sent: float | None = None  # monotonic time of an unanswered confirm
        self._confirm_result: str | None = None  # set by the worker: "" ok, else the error
        self._confirm_for: tuple | None = None  # (site, site_number) confirmed
        self._n_alerts = 0
        self._build()

    # -- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.alert_label = QtWidgets.QLabel()
        self.alert_label.setWordWrap(True)
        self.alert_label.setStyleSheet(
            f"background: {RED}; color: white; font-weight: bold; font-size: 18px; "
            "padding: 8px; border-radius: 4px;"
        )
        self.alert_label.hide()
        lay.addWidget(self.alert_label)
        coil = QtWidgets.QGroupBox("Heart-brain-coupled localisation")
        row = QtWidgets.QHBoxLayout(coil)
        text = QtWidgets.QVBoxLayout()
        self.prompt_label = QtWidgets.QLabel("waiting for the session…")
        self.prompt_label.setWordWrap(True)
        self.prompt_label.setStyleSheet("font-size: 16px; font-weight: bold;")
        self.info_label = QtWidgets.QLabel("")
        self.info_label.setWordWrap(True)
        self.info_label.setStyleSheet(f"color: {GREY};")
        text.addWidget(self.prompt_label)
        text.addWidget(self.info_label)
        row.addLayout(text, 1)
        self.confirm_button = QtWidgets.QPushButton("Confirm coil position")
        self.confirm_button.setMinimumHeight(48)
        self.confirm_button.setStyleSheet(
            "QPushButton {font-size: 15px; font-weight: bold; padding: 8px 16px;}"
            "QPushButton:enabled {background: #1f77b4; color: white; border-radius: 6px;}"
        )
        self.confirm_button.setToolTip(
            "the coil is on the site named: the session arms and starts the site"
        )
        self.confirm_button.setEnabled(False)
        self.confirm_button.clicked.connect(self.confirm)
        row.addWidget(self.confirm_button)
        lay.addWidget(coil)
        self.hr_plot = time_plot("heart rate, trains shaded", "bpm")
        self.hr_curve = self.hr_plot.plot(pen=pg.mkPen(COLOURS["hr"], width=2))
        self.trains = pg.BarGraphItem(
            x0=[], width=[], y0=[], height=[], brush=pg.mkBrush(*TRAIN_BRUSH), pen=None
        )
        self.hr_plot.addItem(self.trains)
        self._site_lines: list[pg.InfiniteLine] = []
        lay.addWidget(self.hr_plot, 3)
        low = QtWidgets.QHBoxLayout()
        self.hbc_plot = time_plot("HBC by intensity", "HBC, ln(bpm²)", "intensity")
        self.hbc_plot.getPlotItem().setClipToView(False)
        self.others: list[pg.PlotDataItem] = []
        self.hbc_curve = self.hbc_plot.plot(
            pen=pg.mkPen(COLOURS["hr"], width=2),
            symbol="o",
            symbolSize=9,
            symbolBrush=COLOURS["hr"],
            symbolPen=None,
        )
        self.hbc_invalid = pg.ScatterPlotItem(
            size=9, pen=pg.mkPen(GREY, width=1.5), brush=pg.mkBrush(0, 0, 0, 0)
        )
        self.hbc_plot.addItem(self.hbc_invalid)
        dash = QtCore.Qt.PenStyle.DashLine
        self.threshold_line = pg.InfiniteLine(
            angle=0,
            pen=pg.mkPen(RED, width=1.5, style=dash),
            label="threshold",
            labelOpts={"position": 0.08, "color": RED, "anchors": [(0, 1), (0, 1)]},
        )
        self.rest_line = pg.InfiniteLine(
            angle=0,
            pen=pg.mkPen(GREY, width=1, style=QtCore.Qt.PenStyle.DotLine),
            label="rest",
            labelOpts={"position": 0.95, "color": GREY, "anchors": [(1, 1), (1, 1)]},
        )
        self.hbc_plot.addItem(self.threshold_line)
        self.hbc_plot.addItem(self.rest_line)
        self.rest_line.hide()
        low.addWidget(self.hbc_plot, 3)
        rank = QtWidgets.QVBoxLayout()
        self.ranking = QtWidgets.QTableWidget(0, 5)
        self.ranking.setHorizontalHeaderLabels(["site", "n above", "mean HBC", "slope", "passes"])
        self.ranking.verticalHeader().setVisible(False)
        self.ranking.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.ranking.horizontalHeader().setSectionResizeMode(
            QtWidgets.QHeaderView.ResizeMode.Stretch
        )
        self.ranking.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.best_label = QtWidgets.QLabel("ranking: no site finished yet")
        self.best_label.setWordWrap(True)
        rank.addWidget(QtWidgets.QLabel("site ranking so far"))
        rank.addWidget(self.ranking, 1)
        rank.addWidget(self.best_label)
        low.addLayout(rank, 2)
        lay.addLayout(low, 3)

    # -- actions -------------------------------------------------------------------------
    def confirm(self) -> None:
        """Send ``confirm`` for the site the session waits at (once per prompt)."""
        pr = (self.feed.status() or {}).get("protocol") or {}
        if not pr.get("waiting") or self._confirm_sent is not None:
            return
        site = pr.get("site")
        self._confirm_result = None

        def done(error: str | None) -> None:  # worker thread: no Qt here
            self._confirm_result = error or ""

        if self.command("confirm", on_result=done, text=f"window: coil placed on {site}"):
            self._confirm_sent = time.monotonic()
            self._confirm_for = (site, pr.get("site_number"))
            self.confirm_button.setEnabled(False)

    # -- redraw --------------------------------------------------------------------------
    def refresh(self, status: dict, now: float) -> None:
        """Redraw from the newest status and events (Qt thread; ``now``: LSL s)."""
        events, self._taken = self.feed.marker_events("hbc", self._taken)
        for msg, _ in events:
            self.progress.add(msg)
        pr = status.get("protocol") or {}
        self._draw_prompt(pr)
        self._draw_alerts()
        self._draw_hr(now)
        current = pr.get("site") or (self.progress.site_starts or [(None, 0)])[-1][0]
        self._draw_hbc(current)
        self._draw_ranking(current if pr.get("state") != "done" else None)

    def _draw_prompt(self, pr: dict) -> None:
        site, n, sites = pr.get("site"), pr.get("site_number"), pr.get("sites") or []
        where = f"{site} (site {n} of {len(sites)})" if site else "the next site"
        waiting = bool(pr.get("waiting"))
        result = self._confirm_result
        if self._confirm_sent is not None:
            answered_error = bool(result)
            moved_on = not waiting or (site, n) != self._confirm_for
            expired = time.monotonic() - self._confirm_sent > CONFIRM_RETRY_S
            if answered_error or moved_on or expired:
                self._confirm_sent = None
        state = pr.get("state")
        if waiting:
            prompt = self.feed.prompt()
            text = f"Place the coil on {where}, then confirm."
            if prompt and prompt.get("site") == site and prompt.get("message"):
                text = f"{str(prompt['message'])[:1].upper()}{str(prompt['message'])[1:]}."
            style = "background: #fff3cd; padding: 6px;"
        elif state == "running":
            text, style = f"Stimulating {where}.", ""
        elif state == "paused":
            text = f"Paused at {where}: waiting for a valid ECG (the site starts over)."
            style = "background: #fff3cd; padding: 6px;"
        elif state == "done":
            best = (self.progress.ranking or {}).get("best_site")
            stopped = any(a.get("reason") == "cardiac_stop" for a in self.feed.alerts())
            text = "Localisation stopped by the cardiac stop rule." if stopped else (
                f"Localisation done: best site {best}." if best else "Localisation done."
            )  # fmt: skip
            style = ""
        else:
            text, style = f"Protocol {pr.get('name')}: {state or '–'}", ""
        self.prompt_label.setText(text)
        self.prompt_label.setStyleSheet(f"font-size: 16px; font-weight: bold; {style}")
        self.confirm_button.setEnabled(waiting and self._confirm_sent is None)
        self.confirm_button.setText(f"Coil on {site}: confirm" if waiting and site else "Confirm")
        info = []
        if sites:
            info.append("order " + " → ".join(map(str, sites)))
        if self.progress.plan and "order_seed" in self.progress.plan:
            info.append(f"seed {self.progress.plan['order_seed']}")
        if not pr.get("running", True):
            info.append("protocol PAUSED (Start protocol resumes)")
        if self.progress.refused:
            r = self.progress.refused[-1]
            info.append(f"{len(self.progress.refused)} train(s) refused, last: {r.get('error')}")
        if result:
            info.append(f"confirm refused: {result}")
        self.info_label.setText("; ".join(info))

    def _draw_alerts(self) -> None:
        alerts = self.feed.alerts()
        if len(alerts) == self._n_alerts:
            return
        self._n_alerts = len(alerts)
        self.alert_label.setText("\n".join(alert_text(a) for a in alerts[-3:]))
        self.alert_label.setVisible(bool(alerts))

    def _draw_hr(self, now: float) -> None:
        tr = self.feed.track("heart_hr")
        y = np.empty(0)
        if tr is not None:
            data, ts, _ = tr.latest(HR_WINDOW_S)
            if ts.size and data.shape[1]:
                bins = max(2, int(self.hr_plot.getPlotItem().vb.width()) // 2)
                t, y = minmax_decimate(ts - now, data[:, 0], bins)
                self.hr_curve.setData(t, y, connect="finite")
        self.hr_plot.setXRange(-HR_WINDOW_S, 0, padding=0)
        fit_y(self.hr_plot, y)
        lo, hi = self.hr_plot.getPlotItem().vb.viewRange()[1]
        # The gate's own record of each train (start, length), not the plan.
        trains = np.array(self.feed.trains(), float).reshape(-1, 2)
        trains[:, 0] -= now
        trains = trains[trains[:, 0] + trains[:, 1] > -HR_WINDOW_S]
        n = len(trains)
        self.trains.setOpts(
            x0=trains[:, 0], width=trains[:, 1], y0=np.full(n, lo), height=np.full(n, hi - lo)
        )
        shown = [(s, t - now) for s, t in self.progress.site_starts if t - now > -HR_WINDOW_S]
        while len(self._site_lines) < len(shown):
            line = pg.InfiniteLine(
                angle=90,
                pen=pg.mkPen(GREY, width=1, style=QtCore.Qt.PenStyle.DashLine),
                label="",
                labelOpts={"position": 0.92, "color": "k", "anchors": [(0, 0.5), (0, 0.5)]},
            )
            self.hr_plot.addItem(line)
            self._site_lines.append(line)
        for k, line in enumerate(self._site_lines):
            if k < len(shown):
                line.setPos(shown[k][1])
                line.label.setFormat(f" {shown[k][0]}")
                line.show()
            else:
                line.hide()

    def _draw_hbc(self, site: str | None) -> None:
        prog = self.progress
        self.hbc_plot.setTitle(f"HBC by intensity: {site}" if site else "HBC by intensity")
        fired = next((p.info.get("intensity_unit", "") for p in self.feed.pulses()[-1:]), "")
        unit = prog.unit(fired)
        self.hbc_plot.setLabel("bottom", f"intensity ({unit})" if unit else "intensity")
        thr = prog.threshold
        self.threshold_line.setPos(thr)
        known = "" if prog.threshold_known else " (default: the plan was not received)"
        self.threshold_line.label.setFormat(f"threshold {thr:g}{known}")
        values = [thr]
        if site:
            x, y, ok, rest = prog.points(site)
            good = ok & np.isfinite(y)
            self.hbc_curve.setData(x[good], y[good])
            bad = ~ok & np.isfinite(y)
            self.hbc_invalid.setData(x[bad], y[bad])
            self.rest_line.setVisible(math.isfinite(rest))
            if math.isfinite(rest):
                self.rest_line.setPos(rest)
                values.append(rest)
            values += list(y[np.isfinite(y)])
        others = [s for s in prog.cycles if s != site]
        while len(self.others) < len(others):
            self.others.append(
                self.hbc_plot.plot(pen=pg.mkPen(200, 200, 200, width=1.5), symbol="o",
                                   symbolSize=5, symbolBrush=(200, 200, 200), symbolPen=None)
            )  # fmt: skip
        for k, item in enumerate(self.others):
            if k < len(others):
                x, y, ok, _ = prog.points(others[k])
                good = ok & np.isfinite(y)
                item.setData(x[good], y[good])
                values += list(y[good])
            else:
                item.setData([], [])
        inten = prog.intensities()
        if inten:
            pad = max(2.0, 0.05 * (max(inten) - min(inten)))
            self.hbc_plot.setXRange(min(inten) - pad, max(inten) + pad, padding=0)
        fit_y(self.hbc_plot, np.asarray(values, float))

    def _draw_ranking(self, running: str | None) -> None:
        rows = self.progress.table(running)
        if self.ranking.rowCount() != len(rows):
            self.ranking.setRowCount(len(rows))
        for r, row in enumerate(rows):
            passes = row.get("passes")
            cells = [
                str(row.get("site")) + (" (running)" if row["running"] else ""),
                str(row.get("n_above", "–")),
                _fmt(row.get("mean_hbc")),
                _fmt(row.get("slope"), 3),
                "–" if passes is None else ("yes" if passes else "no"),
            ]
            for c, text in enumerate(cells):
                item = self.ranking.item(r, c)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    self.ranking.setItem(r, c, item)
                item.setText(text)
                font = item.font()
                font.setBold(row["best"])
                font.setItalic(row["running"])
                item.setFont(font)
                item.setBackground(QtGui.QColor(BEST_ROW if row["best"] else "#ffffff"))
                item.setForeground(QtGui.QColor(GREY if row["running"] else "#000000"))
        ranking = self.progress.ranking
        if ranking:
            best, alt = ranking.get("best_site"), ranking.get("best_site_alt")
            found = "target found" if ranking.get("target_found") else "no site passes yet"
            self.best_label.setText(f"best so far: {best} ({found}); alternative rule: {alt}")
        else:
            self.best_label.setText("ranking: no site finished yet")

    def best_row(self) -> str | None:
        """The site whose row is highlighted as best (for tests and scripts)."""
        for r in range(self.ranking.rowCount()):
            item = self.ranking.item(r, 0)
            if item is not None and item.font().bold():
                return item.text()
        return None


def alert_text(alert: dict) -> str:
    """One line for an ``alert`` decision (the cardiac stop rule names its rule)."""
    if alert.get("reason") != "cardiac_stop":
        return f"ALERT: {alert.get('reason')}: stimulator disarmed"
    site, rule = alert.get("site"), alert.get("rule")
    if rule == "floor":
        why = (f"HR {_fmt(alert.get('hr_bpm'), 0)} bpm below the "
               f"{_fmt(alert.get('floor_bpm'), 0)} bpm floor")  # fmt: skip
    elif rule == "drop":
        why = (f"HR {_fmt(alert.get('hr_bpm'), 0)} bpm, more than "
               f"{_fmt(alert.get('max_drop_bpm'), 0)} bpm below the site's baseline "
               f"{_fmt(alert.get('baseline_bpm'), 0)} bpm")  # fmt: skip
    elif rule == "asystole":
        why = (f"no beat for {_fmt(alert.get('no_beat_s'), 1)} s "
               f"(limit {_fmt(alert.get('asystole_s'), 1)} s)")  # fmt: skip
    else:
        why = str(rule)
    return f"CARDIAC STOP at {site}: {why}. Stimulator disarmed, protocol ended."


def _float(x: object, default: float = math.nan) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _fmt(x: object, digits: int = 2) -> str:
    v = _float(x)
    return f"{v:.{digits}f}" if math.isfinite(v) else "–"
