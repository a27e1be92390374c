"""Exposure sessions live: exercise markers, per-exercise physiology, and the arousal
index with its window-of-tolerance band (docs/exposure.md).

The stage reads what the EDA stage (and the heart stage, when there is an ECG) publish,
in process (:class:`~stimloop.loop.stage.RowFeed`), and runs the same code ``stimloop
analyze`` runs offline: :class:`~stimloop.dsp.exposure.ExerciseTracker` for the
per-exercise figures and :class:`~stimloop.dsp.arousal.ArousalMonitor` for the index and
band. It publishes three catalog streams:

- ``exposure``: every exercise marker (schema ``stimloop-exposure/1``,
  :mod:`stimloop.loop.exposure_markers`), whoever sent it (``stimloop mark``, the
  window, the control channel, or a marker stream such as PsychoPy's);
- ``arousal``: one row per EDA level sample once calibrated: index, z_scl, z_rate,
  z_hr, band state (0 unknown, 1 hypo, 2 within, 3 hyper), alert (0/1);
- ``exercises``: each exercise's figures once its data are complete (JSON).

Calibration: the first ``calibration_s`` of EDA are the client's rest (or, with
``calibration_s`` unset, the interval the operator marks); until then there is no index.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
from collections.abc import Sequence

import numpy as np

from stimloop.dsp.arousal import ArousalMonitor, ArousalParams, BandParams, calibrate
from stimloop.dsp.exposure import EDALevel, ExerciseTracker, SCRTable, Series
from stimloop.loop import catalog
from stimloop.loop.config import ExposureConfig
from stimloop.loop.eda_stage import EDAStage
from stimloop.loop.errors import SessionError
from stimloop.loop.exposure_markers import (
    ExposureMarkerError,
    calibration_end,
    calibration_start,
    parse_marker,
)
from stimloop.loop.heart_stage import HeartStage
from stimloop.stream.inlet import Chunk
from stimloop.stream.outlet import Outlet

log = logging.getLogger("stimloop.loop")

#: Band states of the arousal stream, as the catalog documents them. The kernel
#: (:mod:`stimloop.dsp.arousal`) counts from -1 (unknown); the stream adds 1 so that a
#: reader can take 0 as "no band yet".
BANDS = {0: "unknown", 1: "hypo", 2: "within", 3: "hyper"}
_STREAM_CODE = 1  # kernel code + this = stream code


class ExposureStage:
    """The exposure part of a session (see module docstring).

    Parameters
    ----------
    cfg : ExposureConfig
        Bands, dwell, alert time, calibration length.
    eda : EDAStage
        The session's EDA stage (started before this one).
    heart : HeartStage or None
        The session's heart stage; None without an ECG (HR figures are then missing).
    """

    name = "exposure"
    role = "eda"

    def __init__(self, cfg: ExposureConfig, eda: EDAStage, heart: HeartStage | None) -> None:
        self.cfg = cfg
        self.eda = eda
        self.heart = heart
        self.bands = BandParams(
            cfg.band_low, cfg.band_high, cfg.hysteresis, cfg.min_dwell_s, cfg.alert_after_s
        )
        self.params = ArousalParams()
        self.tracker = ExerciseTracker(use_hr=heart is not None)
        self.monitor: ArousalMonitor | None = None
        self.state = 0  # the band now
        self.alerting = False
        self.calibration: dict | None = None
        self._cal_start = math.nan
        self._cal_end = math.nan
        self._cal: list[tuple[EDALevel, SCRTable, Series | None]] = []
        self._outs: dict[str, Outlet] = {}
        self._last_t = math.nan
        # An operator's ``mark`` runs on the control thread, ``update`` on the loop's: the
        # tracker's exercise list, the rest's bounds and the calibration must not change
        # half-way through either (an exercise started while update() trims the data its
        # baseline needs, a rest end read between its two bounds).
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, fs: float, channel_labels: Sequence[str], source_prefix: str) -> None:
        """Open the three outlets and start reading the EDA and heart stages."""
        for key in ("exposure", "arousal", "exercises"):
            self._outs[key] = catalog.outlet(key, source_prefix)
        self._level = self.eda.level.reader()
        self._scrs = self.eda.scrs.reader()
        self._hr = self.heart.series.reader() if self.heart is not None else None

    def close(self) -> None:
        """Release the outlets."""
        for out in self._outs.values():
            out.close()
        self._outs = {}

    # -- markers -------------------------------------------------------------------------
    def mark(self, text: str, t: float) -> dict:
        """Validate one exercise marker, publish it at LSL time ``t`` (s) and act on it.

        Raises
        ------
        SessionError
            The marker breaks the schema or the exercise order (an end without a start,
            a rating outside 0-100, ...); nothing is published.
        """
        with self._lock:
            try:
                m = parse_marker(text, lenient=False)
                self._route(m.kind, t)
            except ExposureMarkerError as exc:
                raise SessionError(f"exposure marker refused: {exc}") from None
            self._outs["exposure"].push_marker(text, t)
        return {"kind": m.kind, "label": m.label}

    def _route(self, kind: str, t: float) -> None:
        try:
            if kind == "exercise_start":
                self.tracker.start_exercise(t)
            elif kind == "exercise_end":
                self.tracker.end_exercise(t)
            elif kind == "cue":
                self.tracker.add_cue(t)
            elif kind == "calibration_start":
                self._cal_start = t
            elif kind == "calibration_end":
                self._cal_end = t
        except ValueError as exc:  # the tracker names what was wrong
            raise ExposureMarkerError(str(exc)) from None

    def add_event(self, t_lsl: float, text: str = "") -> None:
        """A marker from the session's ``events`` stream: an exercise marker when it
        follows the schema (PsychoPy, OpenViBE), otherwise a cue."""
        try:
            self.mark(text, t_lsl)
        except SessionError:
            self.tracker.add_cue(t_lsl)

    def note_pulses(self, t_lsl: np.ndarray) -> None:
        """Stimulation pulses leave no artifact this stage must remove (ignored)."""

    # -- data ----------------------------------------------------------------------------
    def update(self, chunk: Chunk) -> None:
        """Take what the EDA and heart stages made of the newest chunks."""
        with self._lock:
            self._update(chunk)

    def _update(self, chunk: Chunk) -> None:
        lv, sc = self._level.take(), self._scrs.take()
        hr = self._hr.take() if self._hr is not None else np.empty((0, 3))
        if not lv.size and not sc.size and not hr.size:
            return
        level = EDALevel(lv[:, 0], lv[:, 1], lv[:, 2])
        scrs = SCRTable(sc[:, 0], sc[:, 1], sc[:, 3], sc[:, 2], sc[:, 4])
        hr_s = Series(hr[:, 0], hr[:, 1]) if self._hr is not None else None
        self.tracker.add_level(level)
        self.tracker.add_scrs(scrs)
        if hr_s is not None:
            self.tracker.add_hr(hr_s)
        if len(level):
            self._last_t = float(level.t[-1])
        if self.monitor is None:
            self._calibrate(level, scrs, hr_s)
        else:
            self._index(level, scrs, hr_s)
        for fig in self.tracker.update():
            self._outs["exercises"].push_marker(json.dumps(fig.to_dict(), default=float))

    def _calibrate(self, level: EDALevel, scrs: SCRTable, hr: Series | None) -> None:
        """Collect the rest; once it is over, calibrate and start the index."""
        self._cal.append((level, scrs, hr))
        if self.cfg.calibration_s is not None and math.isnan(self._cal_start) and len(level):
            self._cal_start = float(level.t[0])
            self._cal_end = self._cal_start + self.cfg.calibration_s
            self._outs["exposure"].push_marker(calibration_start(), self._cal_start)
        if not (math.isfinite(self._cal_end) and self._last_t >= self._cal_end):
            return
        if self.cfg.calibration_s is not None:
            self._outs["exposure"].push_marker(calibration_end(), self._cal_end)
        lv = EDALevel.concat([c[0] for c in self._cal])
        sc = SCRTable.concat([c[1] for c in self._cal])
        hrs = [c[2] for c in self._cal if c[2] is not None and len(c[2])]
        hr = (
            Series(np.concatenate([h.t for h in hrs]), np.concatenate([h.values for h in hrs]))
            if hrs
            else None
        )
        try:
            cal = calibrate(lv, sc, hr, self._cal_start, self._cal_end, self.params)
        except ValueError as exc:
            log.error("exposure: calibration failed: %s; marking a new rest is needed", exc)
            self._outs["exposure"].push_marker(
                json.dumps({"event": "calibration_failed", "error": str(exc)}), self._last_t
            )
            self._cal, self._cal_start, self._cal_end = [], math.nan, math.nan
            return
        self.calibration = dataclasses.asdict(cal)
        self._outs["exposure"].push_marker(
            json.dumps({"event": "calibrated", **self.calibration}, default=float), self._last_t
        )
        self.monitor = ArousalMonitor(cal, self.params, self.bands, use_hr=hr is not None)
        after = lv.t >= self._cal_end  # the samples after the rest already start the index
        self._cal = []
        self._index(EDALevel(lv.t[after], lv.scl_us[after], lv.phasic_us[after]), sc, hr)

    def _index(self, level: EDALevel, scrs: SCRTable, hr: Series | None) -> None:
        self.monitor.add_scrs(scrs)
        if hr is not None:
            self.monitor.add_hr(hr)
        rows = self.monitor.update(level)
        if not rows.size:
            return
        out = np.column_stack(
            [
                rows["index"],
                rows["z_scl"],
                rows["z_rate"],
                rows["z_hr"],
                rows["state"].astype(float) + _STREAM_CODE,
                rows["alert"].astype(float),
            ]
        )
        self._outs["arousal"].push(out, rows["t"])
        self.state = int(rows["state"][-1]) + _STREAM_CODE
        self.tracker.add_arousal(
            Series(rows["t"], rows["index"]), Series(rows["t"], rows["state"].astype(float))
        )
        alert = bool(rows["alert"][-1])
        if alert and not self.alerting:
            log.warning(
                "exposure: the client has been above the window for %g s", self.cfg.alert_after_s
            )
        self.alerting = alert
