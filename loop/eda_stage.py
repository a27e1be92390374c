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

The EDA inlet bridges lost samples with NaN rows (the detector restarts its scoring
cleanly after them instead of taking the jump for an SCR) and restarts the stream after
a longer gap; the stage then starts a new detector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from stimloop.dsp.eda import EDAParams, EventRelatedSCR, SCRDetector, scr_rate
from stimloop.loop import catalog
from stimloop.loop.stage import RowFeed, channel_index, finite_or_none
from stimloop.stream.errors import StreamError
from stimloop.stream.inlet import Chunk
from stimloop.stream.outlet import Outlet
from stimloop.stream.timing import TimeGrid

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
    ) -> None:
        self.channel = channel
        self.unit = unit
        self.params = EDAParams(min_amplitude=float(min_amplitude))
        self.rate_hz = float(rate_hz)
        self.rate_window_s = float(rate_window_s)
        self.event_window = (float(event_window[0]), float(event_window[1]))
        self.detector: SCRDetector | None = None
        self._level_out: Outlet | None = None
        self._scr_out: Outlet | None = None
        self._resp_out: Outlet | None = None
        #: What the stage publishes, for in-process readers (the exposure stage): level
        #: rows (t, scl_us, phasic_us, scr_rate_per_min, flags) and SCR rows (onset_t,
        #: peak_t, confirmed_t, amplitude_us, rise_time_s).
        self.level = RowFeed(5)
        self.scrs = RowFeed(5)

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
        self._level_out = catalog.outlet("eda_level", source_prefix, out_rate, provenance)
        self._scr_out = catalog.outlet("eda_scr", source_prefix, extra_desc=provenance)
        self._resp_out = catalog.outlet("eda_response", source_prefix)
        self._index0 = 0  # grid index of detector sample 0 (changes on restart)
        self._last_t = np.nan
        self._phase = 0  # position in the decimation cycle

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
    def add_event(self, t_lsl: float, text: str = "") -> None:
        """Register a stimulus at LSL time ``t_lsl`` (s) for event-related scoring.

        The event's response (first SCR with onset 1-4 s later, or none) is pushed on
        ``{prefix}-eda-response`` once it is certain, and the SCR is excluded from the
        non-specific rate. An event before the first EDA sample has nothing to relate to.
        """
        if self.detector is None:
            raise StreamError("eda stage: add_event() before start()")
        if not np.isfinite(self._last_t):
            return
        newest = self.detector.n_samples - 1
        idx = int(TimeGrid(newest, self._last_t, self.fs).index_of(t_lsl))
        self._er.add_event(idx)
        self._event_index[idx] = float(t_lsl)

    def note_pulses(self, t_lsl: np.ndarray) -> None:
        """Stimulation pulses leave no artifact this stage must remove (ignored)."""

    # ------------------------------------------------------------------ streaming
    def update(self, chunk: Chunk) -> None:
        """Consume one EDA chunk (gaps bridged with NaN rows by the inlet)."""
        if self.detector is None:
            raise StreamError("eda stage: update() before start()")
        if not len(chunk):
            return
        if chunk.restart:
            self._index0 = chunk.first_index
            self._new_detector()
        x = np.array(chunk.data[:, self._ch], dtype=np.float64)
        stamps = np.array(chunk.timestamps, dtype=np.float64)
        self._last_t = float(stamps[-1])
        first = self.detector.n_samples
        new = self.detector.update(x, stamps)
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
            self.scrs.append(row[:5])
        for res in self._er.update(new, self.detector.n_samples):
            self._push_response(res)
        self._publish_level(x, stamps, first)

    def _publish_level(self, x: np.ndarray, stamps: np.ndarray, first: int) -> None:
        """Level stream: every decim-th sample, with the rolling non-specific SCR rate."""
        sel = np.arange((-self._phase) % self._decim, x.size, self._decim)
        self._phase = (self._phase + x.size) % self._decim
        if not sel.size:
            return
        idx = first + sel
        events = np.fromiter(self._event_index, dtype=np.int64) if self._event_index else None
        rate = scr_rate(self.detector.scrs, idx, self.fs, self.rate_window_s, events,
                        self.event_window)  # fmt: skip
        rows = np.column_stack(
            [
                self.detector.last_scl[sel],
                self.detector.last_phasic[sel],
                rate,
                self.detector.last_flags[sel].astype(np.float64),
            ]
        )
        self._level_out.push(rows, stamps[sel])  # type: ignore[union-attr]
        for t, r in zip(stamps[sel], rows, strict=True):
            self.level.append((t, *r))

    def _push_response(self, res: np.void) -> None:
        t_ev = self._event_index.get(int(res["event"]), np.nan)
        info = {
            "event_t": t_ev,
            "responded": bool(res["responded"]),
            "latency_s": finite_or_none(res["latency"]),
            "amplitude_us": finite_or_none(res["amplitude"]),
            "rise_time_s": finite_or_none(res["rise_time"]),
        }
        self._resp_out.push_marker(json.dumps(info), t_ev if np.isfinite(t_ev) else 0.0)  # type: ignore[union-attr]
