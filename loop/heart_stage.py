"""The heart stage: live R-peaks, heart rate and HRV from an ECG stream, over LSL.

It runs :class:`stimloop.dsp.heart.HeartMonitor` on every ECG chunk and publishes:

=================================  ==========================================================
source_id                          content
=================================  ==========================================================
``{prefix}-heart-beats``           one marker per detection, stamped at its R peak (LSL s);
                                   text is JSON: ``{"index", "beat_class", "ibi_ms",
                                   "nn_ms", "hr_bpm", "flags"}`` (``index``: ECG sample on
                                   the time grid, lost samples counted; ``beat_class``: 0
                                   normal, 1 ectopic, 2 artifact, see
                                   ``stimloop.dsp.heart.BEAT_*``)
``{prefix}-heart-hr``              regular stream at ``rate_hz`` (default 4 Hz), float64:
                                   ``hr_bpm``, ``ibi_ms``, ``rmssd_ms``, ``sdnn_ms``,
                                   ``flags`` (bit field, see ``stimloop.dsp.heart.FLAG_*``);
                                   HR is NaN whenever ``flags`` says it is invalid
=================================  ==========================================================

Samples the ECG stream lost (a gap in its timestamps) are fed to the detector as NaN, so
heart rate is invalid across a gap instead of being computed over a missing beat.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pylsl

from stimloop.dsp.heart import BEAT_ARTIFACT, BEAT_DTYPE, FLAG_NO_IBI, HeartMonitor
from stimloop.loop.stage import channel_index, finite_or_none, nan_fill, samples_missing
from stimloop.stream.errors import StreamError
from stimloop.stream.outlet import ChannelSpec, Outlet, marker_outlet

#: Longest gap (s) bridged with NaN; a longer one restarts detection from scratch.
MAX_GAP_S = 10.0


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
    tolerance_s : float
        Matching tolerance of :meth:`score` in s (50 ms: the usual QRS-detection
        standard, ANSI/AAMI EC57 uses 150 ms).
    """

    name = "heart"
    role = "ecg"

    def __init__(
        self,
        channel: int | str = 0,
        rate_hz: float = 4.0,
        hrv_window_s: float = 60.0,
        tolerance_s: float = 0.05,
    ) -> None:
        self.channel = channel
        self.rate_hz = float(rate_hz)
        self.hrv_window_s = float(hrv_window_s)
        self.tolerance_s = float(tolerance_s)
        self._beats_out: Outlet | None = None
        self._hr_out: Outlet | None = None
        self.monitor: HeartMonitor | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, fs: float, channel_labels: Sequence[str], source_prefix: str) -> None:
        """Pick the channel, build the monitor (kernels warm up here) and the outlets."""
        labels = list(channel_labels)
        self._ch = channel_index(self.channel, labels, "ECG")
        self.fs = float(fs)
        self.monitor = HeartMonitor(self.fs, rate_hz=self.rate_hz, hrv_window_s=self.hrv_window_s)
        provenance = {
            "method": "low-latency Pan-Tompkins (Pan & Tompkins 1985; Hamilton & Tompkins 1986)",
            "ecg_rate_hz": f"{self.fs:g}",
            "ecg_channel": labels[self._ch] if labels else str(self._ch),
        }
        self._beats_out = marker_outlet("stimloop heart beats", f"{source_prefix}-heart-beats")
        self._hr_out = Outlet(
            "stimloop heart rate",
            "HR",
            f"{source_prefix}-heart-hr",
            (
                ChannelSpec("hr_bpm", "bpm", "HR"),
                ChannelSpec("ibi_ms", "ms", "IBI"),
                ChannelSpec("rmssd_ms", "ms", "HRV"),
                ChannelSpec("sdnn_ms", "ms", "HRV"),
                ChannelSpec("flags", "bitfield", "Quality"),
            ),
            self.rate_hz,
            "float64",
            extra_desc={**provenance, "interpolation": "zero-order hold of the last beat"},
        )
        self._t0_index = 0
        self._t_first = np.nan
        self._restart_detector_clock()
        self.peak_t: list[float] = []
        self.confirm_t: list[float] = []
        self.report_latency_s: list[float] = []
        self.beats: list[np.ndarray] = []
        self.series_t: list[np.ndarray] = []
        self.series: list[np.ndarray] = []

    def _restart_detector_clock(self) -> None:
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

    # ------------------------------------------------------------------ streaming
    def _time_of(self, idx: np.ndarray) -> np.ndarray:
        """LSL time of detector sample indices (from the stamps kept in the ring)."""
        idx = np.asarray(idx, np.int64)
        t = self._t_ring[idx & (self._t_ring.size - 1)]
        # outside the ring: extrapolate at the nominal rate from the newest sample
        old = idx < self._n - self._t_ring.size
        if np.any(old):
            t[old] = self._last_t - (self._n - 1 - idx[old]) / self.fs
        return t

    def _feed(self, x: np.ndarray, stamps: np.ndarray) -> None:
        assert self.monitor is not None and self._hr_out is not None
        n = x.size
        pos = (self._n + np.arange(n)) & (self._t_ring.size - 1)
        self._t_ring[pos] = stamps
        self._n += n
        self._last_t = float(stamps[-1])
        if np.isnan(self._t_first):
            self._t_first = float(stamps[0])
        up = self.monitor.update(x)
        now = pylsl.local_clock()
        if up.peaks.size:
            t_peak = self._time_of(up.peaks)
            t_conf = self._time_of(up.beats["confirmed"])
            for rec, tp in zip(up.beats, t_peak, strict=True):
                text = json.dumps(
                    {
                        "index": int(rec["index"]) + self._t0_index,
                        "beat_class": int(rec["beat_class"]),
                        "ibi_ms": finite_or_none(rec["ibi_ms"]),
                        "nn_ms": finite_or_none(rec["nn_ms"]),
                        "hr_bpm": finite_or_none(rec["hr_bpm"]),
                        "flags": int(rec["flags"]),
                    }
                )
                self._beats_out.push_marker(text, float(tp))  # type: ignore[union-attr]
            self.peak_t += t_peak.tolist()
            self.confirm_t += t_conf.tolist()
            self.report_latency_s += (now - t_peak).tolist()
            self.beats.append(up.beats)
        if up.series.size:
            ts = self._time_of(up.series["index"])
            rows = np.column_stack(
                [up.series[k] for k in ("hr_bpm", "ibi_ms", "rmssd_ms", "sdnn_ms")]
                + [up.series["flags"].astype(np.float64)]
            )
            for row, t in zip(rows, ts, strict=True):
                self._hr_out.push(row, float(t))
            self.series_t.append(ts)
            self.series.append(up.series)

    def update(self, data: np.ndarray, timestamps: np.ndarray, first_index: int) -> None:
        """Consume one ECG chunk (``(n, n_channels)``, LSL-clock stamps in s)."""
        if self.monitor is None:
            raise StreamError("heart stage: update() before start()")
        n = data.shape[0]
        if n == 0:
            return
        x = np.array(data[:, self._ch], dtype=np.float64)
        stamps = np.array(timestamps, dtype=np.float64)
        missing = samples_missing(self._last_t, stamps[0], self.fs)
        if missing > MAX_GAP_S * self.fs:
            # too long to bridge: start over, as a new recording
            self.monitor = HeartMonitor(
                self.fs, rate_hz=self.rate_hz, hrv_window_s=self.hrv_window_s
            )
            self._t0_index += self._n + missing
            self._restart_detector_clock()
        elif missing:
            self._feed(*nan_fill(self._last_t, missing, self.fs))
        self._feed(x, stamps)

    # ------------------------------------------------------------------ scoring
    def score(self, truth: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Beat F1 and HR error against the simulator's R-peak times (``ecg_rpeak_t``).

        Returns
        -------
        dict
            ``beats_true``, ``beats_detected``, ``sensitivity``, ``ppv``, ``f1``,
            ``false_negatives``, ``false_positives`` (true R peaks within ``tolerance_s``;
            counted over the span the stage saw, from the first true beat on, minus its
            last 0.2 s, whose beats cannot be confirmed yet); ``hr_mae_bpm`` and
            ``hr_p95_abs_err_bpm`` (beat-by-beat HR of matched beats vs the true interval);
            ``hr_series_mae_bpm`` (4 Hz series vs the true HR held the same way);
            ``hr_valid_fraction``; ``detection_delay_ms_p50/p95`` (R peak to the sample
            that confirmed it) and ``report_latency_ms_p50/p95`` (R peak to the moment
            its marker was pushed, LSL clock).
        """
        t_true = np.sort(np.asarray(truth.get("ecg_rpeak_t", np.empty(0)), np.float64))
        beats = np.concatenate(self.beats) if self.beats else np.zeros(0, BEAT_DTYPE)
        heartbeat = beats["beat_class"] != BEAT_ARTIFACT  # artifacts are not beats
        det = np.asarray(self.peak_t)[heartbeat]
        out: dict[str, Any] = {"beats_detected": int(det.size)}
        if not np.isfinite(self._last_t) or self.series_t == []:
            return {**out, "beats_true": int(t_true.size), "error": "no ECG received"}
        # Match everything, then count only inside the span both the stage and the truth
        # saw: a beat at the very start, before the truth stream's first beat (its inlet
        # may connect later than the ECG's), or in the last 0.2 s (not confirmable yet)
        # is neither FN nor FP.
        lo = self._t_first + self.tolerance_s
        if t_true.size:
            lo = max(lo, float(t_true[0]) - self.tolerance_s)
        hi = self._last_t - 0.2
        ti, di = _match(t_true, det, self.tolerance_s)
        inner_true = (t_true >= lo) & (t_true <= hi)
        inner_det = (det >= lo) & (det <= hi)
        keep = inner_true[ti]
        ti, di = ti[keep], di[keep]
        tp = int(ti.size)
        matched_det = np.zeros(det.size, bool)
        matched_det[di] = True
        fp = int(np.sum(inner_det & ~matched_det))
        fn = int(np.sum(inner_true)) - tp
        out.update(
            beats_true=int(np.sum(inner_true)),
            sensitivity=tp / (tp + fn) if tp + fn else None,
            ppv=tp / (tp + fp) if tp + fp else None,
            f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
            false_negatives=fn,
            false_positives=fp,
        )
        beats = beats[heartbeat]
        if tp and beats.size:
            hr_det = beats["hr_bpm"][di]
            ok = ti > 0
            hr_true = np.full(ti.size, np.nan)
            hr_true[ok] = 60.0 / (t_true[ti[ok]] - t_true[ti[ok] - 1])
            # the true interval must itself be a pair of consecutive true beats we saw
            good = ok & np.isfinite(hr_det) & ((beats["flags"][di] & FLAG_NO_IBI) == 0)
            err = np.abs(hr_det[good] - hr_true[good])
            out["hr_mae_bpm"] = float(np.mean(err)) if err.size else None
            out["hr_p95_abs_err_bpm"] = float(np.percentile(err, 95)) if err.size else None
            delay = np.asarray(self.confirm_t)[heartbeat][di] - det[di]
            out["detection_delay_ms_p50"] = float(np.percentile(delay, 50) * 1e3)
            out["detection_delay_ms_p95"] = float(np.percentile(delay, 95) * 1e3)
            lat = np.asarray(self.report_latency_s)[heartbeat][di]
            out["report_latency_ms_p50"] = float(np.percentile(lat, 50) * 1e3)
            out["report_latency_ms_p95"] = float(np.percentile(lat, 95) * 1e3)
        st = np.concatenate(self.series_t)
        ser = np.concatenate(self.series)
        valid = np.isfinite(ser["hr_bpm"])
        out["hr_valid_fraction"] = float(valid.mean()) if ser.size else None
        if t_true.size >= 2:
            k = np.searchsorted(t_true, st, side="right") - 1
            inside = (k >= 1) & (st <= t_true[-1])
            hr_true_t = np.full(st.size, np.nan)
            hr_true_t[inside] = 60.0 / (t_true[k[inside]] - t_true[k[inside] - 1])
            both = valid & np.isfinite(hr_true_t)
            if both.any():
                out["hr_series_mae_bpm"] = float(
                    np.mean(np.abs(ser["hr_bpm"][both] - hr_true_t[both]))
                )
            out["hr_mean_bpm"] = float(np.nanmean(ser["hr_bpm"])) if valid.any() else None
        return out


def _match(ref: np.ndarray, det: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest matching of detections to references within ``tol``."""
    used = np.zeros(det.size, bool)
    ri, di = [], []
    for k, r in enumerate(ref):
        lo = np.searchsorted(det, r - tol)
        hi = np.searchsorted(det, r + tol, side="right")
        best, bd = -1, np.inf
        for m in range(lo, hi):
            if not used[m] and abs(det[m] - r) < bd:
                best, bd = m, abs(det[m] - r)
        if best >= 0:
            used[best] = True
            ri.append(k)
            di.append(best)
    return np.asarray(ri, np.int64), np.asarray(di, np.int64)
