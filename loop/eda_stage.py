"""The EDA stage: live skin conductance level, phasic activity and SCRs, over LSL.

It runs :class:`stimloop.dsp.eda.SCRDetector` on every EDA chunk and publishes:

=================================  ==========================================================
source_id                          content
=================================  ==========================================================
``{prefix}-eda-level``             regular stream at ``rate_hz`` (default 10 Hz), float64:
                                   ``scl_us``, ``phasic_us``, ``scr_rate_per_min`` (rolling
                                   non-specific SCR rate), ``flags`` (bit field,
                                   ``stimloop.dsp.eda.FLAG_*``); SCL and phasic are NaN where
                                   the input was invalid
``{prefix}-eda-scr``               irregular stream, one sample per confirmed SCR, stamped
                                   at its onset (LSL s), float64: ``onset_t``, ``peak_t``,
                                   ``confirmed_t`` (LSL s), ``amplitude_us``,
                                   ``rise_time_s``, ``onset_index``, ``peak_index``
``{prefix}-eda-response``          marker per event registered with :meth:`EDAStage.add_event`,
                                   stamped at the event, pushed once it is resolved; JSON
                                   ``{"responded", "latency_s", "amplitude_us", ...}``
=================================  ==========================================================

Samples the EDA stream lost (a gap in its timestamps) are fed to the detector as NaN, so
scoring restarts cleanly after the gap instead of taking the jump for an SCR.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pylsl

from stimloop.dsp.eda import (
    EDAParams,
    EventRelatedSCR,
    SCRDetector,
    event_related_scr,
    scr_rate,
)
from stimloop.dsp.eda_score import score_scrs
from stimloop.loop.stage import channel_index, finite_or_none, nan_fill, samples_missing
from stimloop.stream.errors import StreamError
from stimloop.stream.outlet import ChannelSpec, Outlet, marker_outlet

#: Longest gap (s) bridged with NaN; a longer one restarts the detector.
MAX_GAP_S = 30.0
#: An SCR can be confirmed up to this long after its onset (rise ≤ 5 s + 1 s plateau).
CONFIRM_HORIZON_S = 7.0


class EDAStage:
    """DSP stage of the EDA role: SCL, phasic component and SCRs published over LSL.

    Parameters
    ----------
    channel : int or str
        EDA channel: index, or label in the stream's channel labels.
    unit : {"uS", "umho", "kohm"}
        Unit of the incoming samples (kΩ is converted to µS as 1000 / R).
    min_amplitude : float
        Smallest SCR amplitude counted, µS.
    rate_hz : float
        Rate of the level stream in Hz (capped at the EDA rate).
    rate_window_s : float
        Window of the rolling non-specific SCR rate, s.
    event_window : (float, float)
        Onset latency window of an event-related SCR, s.
    tolerance_s : float
        Onset matching tolerance of :meth:`score`, s.
    """

    name = "eda"
    role = "eda"

    def __init__(
        self,
        channel: int | str = 0,
        unit: str = "uS",
        min_amplitude: float = 0.01,
        rate_hz: float = 10.0,
        rate_window_s: float = 60.0,
        event_window: tuple[float, float] = (1.0, 4.0),
        tolerance_s: float = 0.5,
    ) -> None:
        self.channel = channel
        self.unit = unit
        self.params = EDAParams(min_amplitude=float(min_amplitude))
        self.rate_hz = float(rate_hz)
        self.rate_window_s = float(rate_window_s)
        self.event_window = (float(event_window[0]), float(event_window[1]))
        self.tolerance_s = float(tolerance_s)
        self.detector: SCRDetector | None = None
        self._level_out: Outlet | None = None
        self._scr_out: Outlet | None = None
        self._resp_out: Outlet | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, fs: float, channel_labels: Sequence[str], source_prefix: str) -> None:
        """Pick the channel, build the detector (kernel warmed up here) and the outlets."""
        labels = list(channel_labels)
        self._ch = channel_index(self.channel, labels, "EDA")
        self.fs = float(fs)
        self._new_detector()
        self.detector.warmup()  # type: ignore[union-attr]
        self._decim = max(1, round(self.fs / min(self.rate_hz, self.fs)))
        out_rate = self.fs / self._decim
        provenance = {
            "method": "causal trough-to-peak SCR scoring (Boucsein et al. 2012), "
            "lower-envelope SCL; stimloop.dsp.eda",
            "eda_rate_hz": f"{self.fs:g}",
            "eda_channel": labels[self._ch] if labels else str(self._ch),
            "min_amplitude_us": f"{self.params.min_amplitude:g}",
        }
        self._level_out = Outlet(
            "stimloop EDA level",
            "EDA",
            f"{source_prefix}-eda-level",
            (
                ChannelSpec("scl_us", "uS", "SCL"),
                ChannelSpec("phasic_us", "uS", "SCR"),
                ChannelSpec("scr_rate_per_min", "1/min", "SCR"),
                ChannelSpec("flags", "bitfield", "Quality"),
            ),
            out_rate,
            "float64",
            extra_desc=provenance,
        )
        self._scr_out = Outlet(
            "stimloop EDA SCRs",
            "SCR",
            f"{source_prefix}-eda-scr",
            (
                ChannelSpec("onset_t", "s", "Time"),
                ChannelSpec("peak_t", "s", "Time"),
                ChannelSpec("confirmed_t", "s", "Time"),
                ChannelSpec("amplitude_us", "uS", "SCR"),
                ChannelSpec("rise_time_s", "s", "SCR"),
                ChannelSpec("onset_index", "sample", "Index"),
                ChannelSpec("peak_index", "sample", "Index"),
            ),
            0.0,
            "float64",
            extra_desc=provenance,
        )
        self._resp_out = marker_outlet("stimloop EDA responses", f"{source_prefix}-eda-response")
        self._index0 = 0  # absolute index of detector sample 0 (changes on restart)
        self._t_first = np.nan
        self._last_t = np.nan
        self._phase = 0  # position in the decimation cycle
        self.scrs: list[np.ndarray] = []  # SCR_EVENT_DTYPE rows, indices in stage terms
        self.confirm_t: list[float] = []
        self.report_latency_s: list[float] = []
        self.responses: list[dict[str, Any]] = []
        self.level_t: list[np.ndarray] = []
        self.level: list[np.ndarray] = []
        self._events: list[float] = []

    def _new_detector(self) -> None:
        self.detector = SCRDetector(
            self.fs, self.params.min_amplitude, unit=self.unit, params=self.params
        )
        self._er = EventRelatedSCR(self.fs, self.event_window, self.params)
        self._event_index: dict[int, float] = {}

    def close(self) -> None:
        """Release the outlets."""
        for out in (self._level_out, self._scr_out, self._resp_out):
            if out is not None:
                out.close()
        self._level_out = self._scr_out = self._resp_out = None

    # ------------------------------------------------------------------ events
    def add_event(self, t_lsl: float) -> None:
        """Register a stimulus at LSL time ``t_lsl`` (s) for event-related scoring.

        The event's response (first SCR with onset 1-4 s later, or none) is pushed on
        ``{prefix}-eda-response`` once it is certain, and the SCR is excluded from the
        non-specific rate.
        """
        if self.detector is None:
            raise StreamError("eda stage: add_event() before start()")
        self._events.append(float(t_lsl))
        if np.isfinite(self._last_t):
            # Detector index of the event, from the newest sample at the nominal rate.
            idx = self.detector.n_samples - 1 + round((t_lsl - self._last_t) * self.fs)
        else:
            return  # no data yet: nothing can be related to it
        self._er.add_event(int(idx))
        self._event_index[int(idx)] = float(t_lsl)

    # ------------------------------------------------------------------ streaming
    def update(self, data: np.ndarray, timestamps: np.ndarray, first_index: int) -> None:
        """Consume one EDA chunk (``(n, n_channels)``, LSL-clock stamps in s)."""
        if self.detector is None:
            raise StreamError("eda stage: update() before start()")
        n = data.shape[0]
        if n == 0:
            return
        x = np.array(data[:, self._ch], dtype=np.float64)
        stamps = np.array(timestamps, dtype=np.float64)
        missing = samples_missing(self._last_t, stamps[0], self.fs)
        if missing > MAX_GAP_S * self.fs:
            # Too long to bridge: start over, as a new recording.
            self._index0 += self.detector.n_samples + missing
            self._new_detector()
        elif missing:
            self._feed(*nan_fill(self._last_t, missing, self.fs))
        self._feed(x, stamps)

    def _feed(self, x: np.ndarray, stamps: np.ndarray) -> None:
        assert self.detector is not None and self._level_out is not None
        if np.isnan(self._t_first):
            self._t_first = float(stamps[0])
        self._last_t = float(stamps[-1])
        first = self.detector.n_samples
        new = self.detector.update(x, stamps)
        now = pylsl.local_clock()
        for rec in new:
            row = [
                rec["onset_t"],
                rec["peak_t"],
                float(stamps[rec["confirmed"] - first]),
                rec["amplitude"],
                rec["rise_time"],
                float(rec["onset"] + self._index0),
                float(rec["peak"] + self._index0),
            ]
            self._scr_out.push(np.asarray(row), float(rec["onset_t"]))  # type: ignore[union-attr]
            self.confirm_t.append(row[2])
            self.report_latency_s.append(now - float(rec["onset_t"]))
        if len(new):
            shifted = new.copy()
            shifted["onset"] += self._index0
            shifted["peak"] += self._index0
            self.scrs.append(shifted)
        for res in self._er.update(new, self.detector.n_samples):
            self._push_response(res)
        # Level stream: every decim-th sample.
        sel = np.arange((-self._phase) % self._decim, x.size, self._decim)
        self._phase = (self._phase + x.size) % self._decim
        if sel.size:
            idx = first + sel
            all_scrs = self.detector.scrs
            events = np.fromiter(self._event_index, dtype=np.int64) if self._event_index else None
            rate = scr_rate(all_scrs, idx, self.fs, self.rate_window_s, events, self.event_window)
            rows = np.column_stack(
                [
                    self.detector.last_scl[sel],
                    self.detector.last_phasic[sel],
                    rate,
                    self.detector.last_flags[sel].astype(np.float64),
                ]
            )
            self._level_out.push(rows, float(stamps[sel[-1]]))
            self.level_t.append(stamps[sel])
            self.level.append(rows)

    def _push_response(self, res: np.void) -> None:
        t_ev = self._event_index.get(int(res["event"]), np.nan)
        info = {
            "event_t": t_ev,
            "responded": bool(res["responded"]),
            "latency_s": finite_or_none(res["latency"]),
            "amplitude_us": finite_or_none(res["amplitude"]),
            "rise_time_s": finite_or_none(res["rise_time"]),
        }
        self.responses.append(info)
        self._resp_out.push_marker(json.dumps(info), t_ev if np.isfinite(t_ev) else 0.0)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ scoring
    def score(self, truth: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """SCR F1 and amplitude error against the simulator's SCRs.

        Uses ``eda_scr_onset_t`` (LSL s) and ``eda_scr_amplitude_us``; ``eda_event_t``
        (LSL s), if present, adds the event-related response rate.

        Returns
        -------
        dict
            ``scr_true`` (true SCRs ≥ 0.02 µS in the span the stage saw, minus the last
            7 s whose SCRs may not be confirmed yet), ``scr_detected``, ``tp``, ``fp``,
            ``fn``, ``f1`` (onset within ``tolerance_s``), ``amplitude_err_median``
            (fraction), ``onset_err_median_s``, ``onset_bias_s``;
            ``detection_delay_s_p50/p95`` (onset to the sample that confirmed it),
            ``report_latency_s_p50/p95`` (onset to the moment it was pushed);
            ``event_response_rate`` and ``events`` (events whose 1-4 s window lies in the
            span); ``scl_median_us``; ``flagged_fraction``.
        """
        t_true = np.asarray(truth.get("eda_scr_onset_t", np.empty(0)), np.float64)
        a_true = np.asarray(truth.get("eda_scr_amplitude_us", np.empty(0)), np.float64)
        scrs = np.concatenate(self.scrs) if self.scrs else None
        out: dict[str, Any] = {"scr_detected": 0 if scrs is None else len(scrs)}
        if not np.isfinite(self._last_t):
            return {**out, "scr_true": int(t_true.size), "error": "no EDA received"}
        t_end = self._last_t - CONFIRM_HORIZON_S
        keep_t = (t_true >= self._t_first + 2.0) & (t_true <= t_end)
        on = np.empty(0) if scrs is None else scrs["onset_t"]
        amp = np.empty(0) if scrs is None else scrs["amplitude"]
        keep_d = (on >= self._t_first + 2.0) & (on <= t_end)
        s = score_scrs(on[keep_d], amp[keep_d], t_true[keep_t], a_true[keep_t], self.tolerance_s)
        out.update(
            scr_true=s.n_truth,
            scr_detected=s.n_detected,
            tp=s.tp,
            fp=s.fp,
            fn=s.fn,
            f1=finite_or_none(s.f1),
            amplitude_err_median=finite_or_none(s.amp_err_median),
            amplitude_bias_median=finite_or_none(s.amp_bias_median),
            onset_err_median_s=finite_or_none(s.onset_err_median_s),
            onset_bias_s=finite_or_none(s.onset_bias_s),
        )
        if scrs is not None and len(scrs):
            delay = np.asarray(self.confirm_t) - scrs["onset_t"]
            out["detection_delay_s_p50"] = float(np.percentile(delay, 50))
            out["detection_delay_s_p95"] = float(np.percentile(delay, 95))
            lat = np.asarray(self.report_latency_s)
            out["report_latency_s_p50"] = float(np.percentile(lat, 50))
            out["report_latency_s_p95"] = float(np.percentile(lat, 95))
        ev_t = np.asarray(truth.get("eda_event_t", self._events), np.float64)
        ev_t = ev_t[(ev_t >= self._t_first) & (ev_t + self.event_window[1] <= t_end)]
        if ev_t.size and scrs is not None:
            # Event-related responses on the LSL time base (onset_t), the offline rule.
            tmp = scrs.copy()
            ms = np.round(scrs["onset_t"] * 1000.0).astype(np.int64)
            tmp["onset"] = ms
            er = event_related_scr(
                tmp, np.round(ev_t * 1000.0).astype(np.int64), 1000.0, self.event_window
            )
            out["events"] = int(ev_t.size)
            out["event_response_rate"] = float(er["responded"].mean())
            out["event_amplitude_median_us"] = finite_or_none(np.nanmedian(er["amplitude"]))
        if self.level:
            lv = np.concatenate(self.level)
            out["scl_median_us"] = (
                finite_or_none(np.nanmedian(lv[:, 0])) if np.isfinite(lv[:, 0]).any() else None
            )
            out["flagged_fraction"] = float(np.mean(lv[:, 3] != 0))
        return out
