"""RR intervals: ectopic, extra and missed beats corrected, and the corrected HR series.

The correction is that of Lipponen JA, Tarvainen MP (2019), "A robust algorithm for
heart rate variability time series artefact correction using novel beat
classification", J Med Eng Technol 43(3):173-181 (Kubios HRV; NeuroKit2's
``signal_fixpeaks(method="Kubios")`` implements it offline): extra beats are removed,
missed beats are inserted, and ectopic beats are moved to interpolated positions, so
that every interval is a normal-to-normal (NN) interval before HRV or resampling.

Here the beat classes come with the beats (:func:`stimloop.dsp.heart.detect_beats`
classifies each detection causally), and one rule does all three corrections. For each
normal beat, take the time ``D`` since the previous normal beat, artifacts ignored:

* if ectopic beats lie between the two, the span holds ``k = round(D / ref)`` NN
  intervals (at least 1; 2 for a PVC with a full compensatory pause, 1 for an
  interpolated PVC), placed at even spacing (NeuroKit2's implementation moves the
  ectopic beat to the midpoint). Their value is ``ref``, the interval interpolated from
  the neighbouring NN intervals, as Kubios replaces artefact intervals by interpolated
  ones (causally, the past neighbours are what is known). ``D / k`` would be wrong: an
  APC that resets the sinus node leaves a span of 1.6-1.9 ``ref``, and ``D / 2`` would
  add 5-10 bpm;
* with no beat between, an interval of ``k = 2`` reference intervals (within
  ``tolerance``) holds one missed beat, inserted at the midpoint (L&T:
  ``|RR / 2 - medRR| < Th2``), but only for an isolated long interval: when the next one
  is long as well the rhythm has changed (a 2:1 block, a real slowing), and it is
  believed. A longer pause is never filled (it may be asystole);
* otherwise ``D`` is the NN interval.

``ref`` is the median of the last ``median_beats`` NN intervals (L&T use 11). Extra
beats need no rule: they are the detections classed artifacts, and ignoring them is
the removal.

The same :class:`NNCorrector` runs live (inside :class:`stimloop.dsp.heart.HeartRate`,
one beat at a time) and offline (:func:`correct_rr`, :func:`resample_corrected_hr`), so
both give the same NN intervals for the same beats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stimloop.dsp.errors import SignalError
from stimloop.dsp.qrs import CLS_ARTIFACT, CLS_ECTOPIC, CLS_NORMAL

__all__ = [
    "CorrectedRR",
    "NNCorrector",
    "NNInterval",
    "correct_rr",
    "resample_corrected_hr",
]


@dataclass(frozen=True)
class NNInterval:
    """The NN interval that ends at one normal beat (:meth:`NNCorrector.push`).

    Attributes
    ----------
    nn : float
        NN interval in samples (``D / k``).
    span : int
        Samples since the previous normal beat (``D``).
    k : int
        Number of NN intervals in the span (1 unless beats were missed or moved).
    n_ectopic : int
        Ectopic beats in the span.
    corrected : bool
        True if the span held ectopic beats or missed beats were inserted.
    """

    nn: float
    span: int
    k: int
    n_ectopic: int
    corrected: bool


class NNCorrector:
    """Beat-by-beat NN intervals with ectopic, extra and missed beats corrected.

    Parameters
    ----------
    median_beats : int
        Number of recent NN intervals whose median is the reference (L&T: 11).
    tolerance : float
        Relative distance of ``D / 2`` from the reference within which a long interval
        counts as a missed beat (default 0.1; L&T's Th2 is typically 5-10 % of the RR).
    max_missed : int
        At most this many missed beats are inserted into one span (default 1, as L&T's
        ``RR / 2`` test); a longer span is a pause, and stays one.

    Notes
    -----
    Causal: the result for a beat depends on the beats before it only.
    """

    def __init__(self, median_beats: int = 11, tolerance: float = 0.1, max_missed: int = 1) -> None:
        if int(median_beats) < 1:
            raise SignalError(f"median_beats must be >= 1, got {median_beats}")
        if not 0.0 < tolerance < 0.5:
            raise SignalError(f"tolerance must be within (0, 0.5), got {tolerance}")
        if int(max_missed) < 0:
            raise SignalError(f"max_missed must be >= 0, got {max_missed}")
        self.median_beats = int(median_beats)
        self.tolerance = float(tolerance)
        self.max_missed = int(max_missed)
        self.reset()

    def reset(self) -> None:
        """Forget every beat."""
        self._prev = -1  # index of the last normal beat (-1: none)
        self._ectopic = 0  # ectopic beats since then
        self._hist: list[float] = []
        self._long = False  # the last plain interval was long (k >= 2)

    def restart(self) -> None:
        """No interval may span the next beat (bad signal since the last one)."""
        self._prev = -1
        self._ectopic = 0

    def reference(self) -> float:
        """Median of the recent NN intervals in samples (NaN before 3 exist)."""
        return float(np.median(self._hist)) if len(self._hist) >= 3 else float("nan")

    def push(self, index: int, beat_class: int) -> NNInterval | None:
        """Consume one detection; return the NN interval that ends at it, if any.

        Parameters
        ----------
        index : int
            Sample index of the beat (increasing).
        beat_class : int
            ``CLS_NORMAL``, ``CLS_ECTOPIC`` or ``CLS_ARTIFACT``.

        Returns
        -------
        NNInterval or None
            None for artifacts, ectopic beats and the first normal beat (after
            :meth:`restart`).
        """
        if beat_class == CLS_ARTIFACT:
            return None
        if beat_class == CLS_ECTOPIC:
            if self._prev >= 0:
                self._ectopic += 1
            return None
        if beat_class != CLS_NORMAL:
            raise SignalError(f"beat_class must be 0, 1 or 2, got {beat_class!r}")
        prev, ectopic = self._prev, self._ectopic
        self._prev = int(index)
        self._ectopic = 0
        if prev < 0:
            return None
        span = int(index) - prev
        ref = self.reference()
        k = 1
        nn = float("nan")
        if ectopic:
            # the span's length is sinus time only by luck (full compensatory pause):
            # its intervals take the value interpolated from the neighbouring NN
            k = max(1, round(span / ref)) if np.isfinite(ref) else ectopic + 1
            if np.isfinite(ref):
                nn = ref
            long_ = False
        else:
            long_ = False
            if np.isfinite(ref):
                kk = round(span / ref)
                if 2 <= kk <= self.max_missed + 1:
                    long_ = abs(span / kk - ref) < self.tolerance * ref
                    if long_ and not self._long:
                        k = kk
        self._long = long_
        if not np.isfinite(nn):
            nn = span / k
        # the reference learns the raw interval when a long one is believed, so that a
        # real change of rhythm is followed within a few beats
        self._hist.append(float(span) if long_ and k == 1 else nn)
        if len(self._hist) > self.median_beats:
            self._hist.pop(0)
        return NNInterval(
            nn=nn, span=span, k=k, n_ectopic=ectopic, corrected=bool(ectopic) or k > 1
        )


@dataclass(frozen=True)
class CorrectedRR:
    """The corrected beat series of :func:`correct_rr`.

    Attributes
    ----------
    index : ndarray of float
        Sample position of each corrected beat: the normal beats, plus the beats
        inserted or moved by the correction (not integers when interpolated).
    nn_ms : ndarray
        NN interval in ms that ends at each corrected beat (NaN at the first beat after
        a break).
    corrected : ndarray of bool
        True for intervals that the correction changed (moved, inserted or spanning
        ectopic beats).
    n_ectopic, n_artifact, n_missed : int
        Ectopic beats moved, artifacts removed and missed beats inserted.
    """

    index: np.ndarray
    nn_ms: np.ndarray
    corrected: np.ndarray
    n_ectopic: int
    n_artifact: int
    n_missed: int


def _check_beats(beat_index, beat_class, fs, no_interval):
    fs = float(fs)
    if not fs > 0:
        raise SignalError(f"fs must be > 0 Hz, got {fs}")
    idx = np.asarray(beat_index)
    cls = np.asarray(beat_class)
    if idx.ndim != 1 or cls.shape != idx.shape:
        raise SignalError(
            f"beat_index and beat_class must be 1-D of equal length, got {idx.shape}, {cls.shape}"
        )
    if idx.size and not np.all(np.isfinite(idx.astype(float))):
        raise SignalError("beat_index must be finite sample indices, got NaN or inf")
    if np.any(np.diff(idx) < 0):
        raise SignalError("beat_index must be increasing")
    if cls.size and not np.isin(cls, (CLS_NORMAL, CLS_ECTOPIC, CLS_ARTIFACT)).all():
        raise SignalError(f"beat_class must hold 0, 1 or 2, got {np.unique(cls)}")
    brk = (
        np.zeros(idx.size, bool)
        if no_interval is None
        else np.asarray(no_interval, bool).reshape(idx.shape)
    )
    return idx.astype(np.int64), cls.astype(np.int64), fs, brk


def correct_rr(
    beat_index: np.ndarray,
    beat_class: np.ndarray,
    fs: float,
    no_interval: np.ndarray | None = None,
    **corrector_kw,
) -> CorrectedRR:
    """Correct a beat series (Lipponen & Tarvainen 2019), offline.

    Parameters
    ----------
    beat_index : ndarray of int, shape (n,)
        Sample index of each detection (increasing).
    beat_class : ndarray of int, shape (n,)
        ``BEAT_NORMAL`` (0), ``BEAT_ECTOPIC`` (1) or ``BEAT_ARTIFACT`` (2) per detection,
        as :func:`stimloop.dsp.heart.detect_beats` or the beats stream give them.
    fs : float
        Sampling rate of the indices in Hz.
    no_interval : ndarray of bool, shape (n,), optional
        True where no interval may end (the first beat after bad signal: the beats
        stream's ``FLAG_NO_IBI``).
    **corrector_kw
        Passed to :class:`NNCorrector`.

    Returns
    -------
    CorrectedRR
        The corrected beats and their NN intervals in ms.
    """
    idx, cls, fs, brk = _check_beats(beat_index, beat_class, fs, no_interval)
    nnc = NNCorrector(**corrector_kw)
    pos: list[float] = []
    nn: list[float] = []
    cor: list[bool] = []
    n_missed = 0
    for i, c, b in zip(idx, cls, brk, strict=True):
        if b:
            nnc.restart()
        res = nnc.push(int(i), int(c))
        if c != CLS_NORMAL:
            continue
        if res is None:
            pos.append(float(i))
            nn.append(np.nan)
            cor.append(False)
            continue
        start = float(i) - res.span
        for j in range(1, res.k + 1):
            pos.append(start + j * res.span / res.k)  # evenly spaced in the span
            nn.append(res.nn * 1e3 / fs)
            cor.append(res.corrected)
        if res.n_ectopic == 0:
            n_missed += res.k - 1
    return CorrectedRR(
        index=np.asarray(pos),
        nn_ms=np.asarray(nn),
        corrected=np.asarray(cor, bool),
        n_ectopic=int(np.sum(cls == CLS_ECTOPIC)),
        n_artifact=int(np.sum(cls == CLS_ARTIFACT)),
        n_missed=int(n_missed),
    )


def resample_corrected_hr(
    beat_index: np.ndarray,
    beat_class: np.ndarray,
    fs: float,
    rate_hz: float = 4.0,
    method: str = "linear",
    n_samples: int | None = None,
    no_interval: np.ndarray | None = None,
    **corrector_kw,
) -> tuple[np.ndarray, np.ndarray]:
    """Evenly resampled heart rate with ectopic, extra and missed beats corrected first.

    The beats are corrected by :func:`correct_rr` (Lipponen & Tarvainen 2019); each
    corrected beat carries ``60 / NN``, and the series is resampled at ``rate_hz`` by
    :func:`stimloop.dsp.heart.resample_hr`. The same code serves live use (on the
    beats received so far) and offline analysis (on the recorded beats stream).

    Parameters
    ----------
    beat_index, beat_class, fs, no_interval, **corrector_kw
        As for :func:`correct_rr`.
    rate_hz : float
        Output rate in Hz (default 4 Hz, as Kubios).
    method : {"linear", "previous"}
        ``"linear"`` interpolates between corrected beats (needs the next beat);
        ``"previous"`` holds the last one (causal).
    n_samples : int, optional
        Length of the ECG in samples; the grid spans ``[0, n_samples)``.

    Returns
    -------
    grid_index : ndarray of int64
        ECG sample index of each output sample (``round(k * fs / rate_hz)``).
    hr_bpm : ndarray
        Corrected heart rate in bpm; NaN where no corrected beat is known (before the
        first interval, after the last beat for ``"linear"``, and across breaks).
    """
    cor = correct_rr(beat_index, beat_class, fs, no_interval, **corrector_kw)
    hr = 60000.0 / cor.nn_ms
    # the first beat after a break has NaN, so neither method bridges a break
    return resample_hr(np.rint(cor.index).astype(np.int64), hr, fs, rate_hz, method, n_samples)


def resample_hr(
    beat_index: np.ndarray,
    hr_bpm: np.ndarray,
    fs: float,
    rate_hz: float = 4.0,
    method: str = "previous",
    n_samples: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Evenly resample beat-by-beat heart rate (offline).

    Parameters
    ----------
    beat_index : ndarray of int, shape (n_beats,)
        ECG sample index of each beat (increasing).
    hr_bpm : ndarray, shape (n_beats,)
        Heart rate in bpm assigned to each beat (the interval that *ends* at it).
    fs : float
        ECG sampling rate in Hz.
    rate_hz : float
        Output rate in Hz (default 4 Hz).
    method : {"previous", "linear"}
        ``"previous"``: zero-order hold of the last beat's HR (causal; what the
        streaming :class:`stimloop.dsp.heart.HeartRate` emits). ``"linear"``: linear
        interpolation between beats (needs the next beat, so it is offline only).
    n_samples : int, optional
        Length of the ECG in samples; the grid spans ``[0, n_samples)``. Default: up to
        the last beat.

    Returns
    -------
    grid_index : ndarray of int64
        ECG sample index of each output sample (``round(k * fs / rate_hz)``).
    hr_bpm : ndarray
        HR in bpm; NaN before the first beat (and after the last for ``"linear"``).
    """
    fs = float(fs)
    if rate_hz <= 0:
        raise SignalError(f"rate_hz must be > 0, got {rate_hz}")
    if method not in ("previous", "linear"):
        raise SignalError(f"method must be 'previous' or 'linear', got {method!r}")
    bi = np.asarray(beat_index, dtype=np.int64)
    hr = np.asarray(hr_bpm, dtype=np.float64)
    if bi.shape != hr.shape or bi.ndim != 1:
        raise SignalError(
            f"beat_index and hr_bpm must be 1-D of equal length, got {bi.shape}, {hr.shape}"
        )
    end = int(n_samples) if n_samples is not None else (int(bi[-1]) + 1 if bi.size else 0)
    k = np.arange(int(np.ceil(end * rate_hz / fs)) + 1)
    grid = np.rint(k * fs / rate_hz).astype(np.int64)
    grid = grid[grid < end]
    if bi.size == 0:
        return grid, np.full(grid.size, np.nan)
    if method == "linear":
        out = np.interp(grid, bi, hr, left=np.nan, right=np.nan)
    else:
        pos = np.searchsorted(bi, grid, side="right") - 1
        out = np.where(pos >= 0, hr[np.maximum(pos, 0)], np.nan)
    return grid, out
