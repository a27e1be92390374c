"""The heart stage: live R-peaks, heart rate and HRV from an ECG stream, over LSL.

It runs :class:`stimloop.dsp.heart.HeartMonitor` on every ECG chunk and publishes the
catalog's (:mod:`stimloop.loop.catalog`) streams:

=================================  ==========================================================
source_id                          content
=================================  ==========================================================
``{prefix}-heart-beats``           one marker per detection, stamped at its R peak (LSL s);
                                   text is JSON: ``{"index", "beat_class", "ibi_ms",
                                   "nn_ms", "hr_bpm", "flags", "confirmed_t"}`` (``index``:
                                   ECG sample on the time grid, lost samples counted;
                                   ``beat_class``: 0 normal, 1 ectopic, 2 artifact, see
                                   ``stimloop.dsp.heart.BEAT_*``; ``confirmed_t``: LSL time
                                   of the sample that confirmed the beat)
``{prefix}-heart-hr``              regular stream at ``rate_hz`` (default 4 Hz), float64:
                                   ``hr_bpm``, ``ibi_ms``, ``rmssd_ms``, ``sdnn_ms``,
                                   ``flags`` (bit field, see ``stimloop.dsp.heart.FLAG_*``);
                                   HR is NaN whenever ``flags`` says it is invalid
=================================  ==========================================================

The ECG inlet bridges lost samples with NaN rows (the detector takes them for bad
signal, so heart rate is invalid across a gap instead of being computed over a missing
beat) and restarts the stream after a longer gap; the stage then starts detection over.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence

import numpy as np

from stimloop.dsp.heart import HeartMonitor, pulse_blank_mask
from stimloop.loop import catalog
from stimloop.loop.stage import RowFeed, channel_index, finite_or_none
from stimloop.stream.errors import StreamError
from stimloop.stream.inlet import Chunk
from stimloop.stream.outlet import Outlet
from stimloop.stream.timing import TimeGrid

#: Blanked ECG around each stimulation pulse, s: 2 ms before (trigger jitter) to 25 ms
#: after (the pulse artifact and the amplifier's recovery), the defaults of
#: :func:`stimloop.dsp.heart.pulse_blank_mask`.
BLANK_PRE_S, BLANK_POST_S = 0.002, 0.025


class HeartStage:
    """DSP stage of the ECG role: R peaks, HR and HRV published as LSL streams.

    Parameters
    ----------
    channel : int or str
        ECG channel to use: index, or label in the stream's channel labels.
    rate_hz : float
        Rate of the HR/HRV stream in Hz.
    hrv_window_s : float
        Window of the rolling RMSSD/SDNN in s.
    """

    name = "heart"
    role = "ecg"

    def __init__(self, channel: int | str = 0, rate_hz: float = 4.0, hrv_window_s: float = 60.0):
        self.channel = channel
        self.rate_hz = float(rate_hz)
        self.hrv_window_s = float(hrv_window_s)
        self._beats_out: Outlet | None = None
        self._hr_out: Outlet | None = None
        self.monitor: HeartMonitor | None = None
        #: LSL time of the newest R peak, s (NaN before the first); for asystole checks.
        self.last_beat_t = np.nan
        #: The HR samples published, (t s, HR bpm, flags), for in-process readers (the
        #: heart-brain-coupled protocol, the exposure stage).
        self.series = RowFeed(3)
        self._pulses: deque[float] = deque(maxlen=4096)  # noted pulse times, LSL s
        #: ECG samples blanked around stimulation pulses so far.
        self.blanked_samples = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, fs: float, channel_labels: Sequence[str], source_prefix: str) -> None:
        """Pick the channel, build the monitor (kernels warm up here) and the outlets."""
        labels = list(channel_labels)
        self._ch = channel_index(self.channel, labels, "ECG")
        self.fs = float(fs)
        provenance = {
            "method": "low-latency Pan-Tompkins (Pan & Tompkins 1985; Hamilton & Tompkins 1986)",
            "pulse_blanking_s": f"-{BLANK_PRE_S:g}..+{BLANK_POST_S:g}",
            "ecg_rate_hz": f"{self.fs:g}",
            "ecg_channel": labels[self._ch] if labels else str(self._ch),
        }
        self._beats_out = catalog.outlet("heart_beats", source_prefix, extra_desc=provenance)
        self._hr_out = catalog.outlet(
            "heart_hr",
            source_prefix,
            self.rate_hz,
            {**provenance, "interpolation": "zero-order hold of the last beat"},
        )
        self._restart(0)

    def _restart(self, first_index: int) -> None:
        """Start detection over at grid index ``first_index`` (start, or a restart)."""
        self.monitor = HeartMonitor(self.fs, rate_hz=self.rate_hz, hrv_window_s=self.hrv_window_s)
        self._seg_start = first_index  # grid index of detector sample 0
        ring = 1 << int(np.ceil(np.log2(16.0 * self.fs)))
        self._t_ring = np.full(ring, np.nan)  # LSL time of each detector sample
        self._n = 0  # detector samples fed since the last (re)start
        self._last_t = np.nan

    def close(self) -> None:
        """Release the outlets."""
        for out in (self._beats_out, self._hr_out):
            if out is not None:
                out.close()
        self._beats_out = self._hr_out = None

    def add_event(self, t_lsl: float, text: str = "") -> None:
        """Stimuli have no heart-rate output of their own here (ignored)."""

    def note_pulses(self, t_lsl: np.ndarray) -> None:
        """Blank the ECG around these stimulation pulses (LSL times, s).

        Each pulse is placed on the nearest ECG sample and the samples from
        :data:`BLANK_PRE_S` before to :data:`BLANK_POST_S` after it reach the detector
        as blanked (:func:`stimloop.dsp.heart.pulse_blank_mask`): a TMS pulse's
        artifact is taken for neither a beat nor bad signal, and the detector bridges
        it. Thread-safe: the
        engine calls it from the pulse thread when the gate returns.
        """
        self._pulses.extend(float(t) for t in np.atleast_1d(t_lsl))

    # ------------------------------------------------------------------ streaming
    def _time_of(self, idx: np.ndarray) -> np.ndarray:
        """LSL time of detector sample indices (from the stamps kept in the ring)."""
        idx = np.asarray(idx, np.int64)
        t = self._t_ring[idx & (self._t_ring.size - 1)]
        # older than the ring: place them on the time grid from the newest sample
        old = idx < self._n - self._t_ring.size
        if np.any(old):
            t[old] = TimeGrid(self._n - 1, self._last_t, self.fs).time_of(idx[old])
        return t

    def update(self, chunk: Chunk) -> None:
        """Consume one ECG chunk (gaps bridged with NaN rows by the inlet)."""
        if self.monitor is None:
            raise StreamError("heart stage: update() before start()")
        if not len(chunk):
            return
        if chunk.restart:
            self._restart(chunk.first_index)
        x = np.array(chunk.data[:, self._ch], dtype=np.float64)
        stamps = np.array(chunk.timestamps, dtype=np.float64)
        n = x.size
        pos = (self._n + np.arange(n)) & (self._t_ring.size - 1)
        self._t_ring[pos] = stamps
        self._n += n
        self._last_t = float(stamps[-1])
        up = self.monitor.update(x, blank=self._blank_mask(stamps))
        if up.peaks.size:
            self._publish_beats(up)
        if up.series.size:
            ts = self._time_of(up.series["index"])
            rows = np.column_stack(
                [up.series[k] for k in ("hr_bpm", "ibi_ms", "rmssd_ms", "sdnn_ms")]
                + [up.series["flags"].astype(np.float64)]
            )
            for row, t in zip(rows, ts, strict=True):
                self._hr_out.push(row, float(t))  # type: ignore[union-attr]
                self.series.append((t, row[0], row[4]))

    def _blank_mask(self, stamps: np.ndarray) -> np.ndarray | None:
        """The chunk's samples within a noted pulse's blanking window (None: none)."""
        while self._pulses and self._pulses[0] < stamps[0] - BLANK_POST_S - 1.0:
            self._pulses.popleft()  # long past: no later sample can be near it
        if not self._pulses:
            return None
        lo, hi = float(stamps[0]) - BLANK_POST_S - 0.01, float(stamps[-1]) + 0.01
        # list() is a snapshot (the pulse thread appends meanwhile); plain floats, because
        # this runs on every ECG chunk and a pulse is rarely near one.
        near = [t for t in list(self._pulses) if lo <= t <= hi]
        if not near:
            return None
        # Each pulse on its nearest sample of the chunk's grid, then dsp.heart's window:
        # the same samples as offline on the same pulses, for any chunking.
        rel = np.rint((np.array(near) - stamps[0]) * self.fs).astype(np.int64)
        mask = pulse_blank_mask(rel, 0, stamps.size, self.fs, BLANK_PRE_S, BLANK_POST_S)
        self.blanked_samples += int(mask.sum())
        return mask if mask.any() else None

    def _publish_beats(self, up) -> None:
        t_peak = self._time_of(up.peaks)
        self.last_beat_t = float(t_peak[-1])
        t_conf = self._time_of(up.beats["confirmed"])
        for rec, tp, tc in zip(up.beats, t_peak, t_conf, strict=True):
            text = json.dumps(
                {
                    "index": int(rec["index"]) + self._seg_start,
                    "beat_class": int(rec["beat_class"]),
                    "ibi_ms": finite_or_none(rec["ibi_ms"]),
                    "nn_ms": finite_or_none(rec["nn_ms"]),
                    "hr_bpm": finite_or_none(rec["hr_bpm"]),
                    "flags": int(rec["flags"]),
                    "confirmed_t": float(tc),
                }
            )
            self._beats_out.push_marker(text, float(tp))  # type: ignore[union-attr]
