"""Heart: causal R-peak detection, beat classes, beat-by-beat heart rate and rolling HRV.

The R-peak detector is a low-latency member of the Pan–Tompkins family (Pan and
Tompkins 1985; Hamilton and Tompkins 1986); the kernel and every departure from the
papers are documented in :mod:`stimloop.dsp.qrs`. It marks each beat at the extremum of
its dominant QRS deflection (wide ventricular beats included), reports baseline steps
and spikes as artifacts rather than beats, classes every beat normal or ectopic as it
goes (after Lipponen and Tarvainen 2019, made causal), and can blank samples around
stimulation pulses. :func:`detect_beats`, :func:`detect_rpeaks` and
:class:`RPeakDetector` run the same numba kernel with the same explicit state, so the
whole-array result equals the chunked one for any chunking, by construction.

Heart rate and HRV follow the Task Force of the ESC and NASPE (1996), "Heart rate
variability: standards of measurement, physiological interpretation and clinical use",
Circulation 93:1043-1065 (RMSSD, SDNN of normal-to-normal intervals). NN intervals are
corrected for ectopic, extra and missed beats by :mod:`stimloop.dsp.rr` (Lipponen and
Tarvainen 2019), live and offline alike. Implausible intervals (outside 0.25-2.5 s, or
more than 30% from the running median; in the spirit of Berntson GG, Quigley KS, Jang
JF, Boysen ST (1990), "An approach to artifact identification: application to heart
period data", Psychophysiology 27(5):586-598) are kept and flagged, never silently
dropped or replaced. Beat-template similarity as a noise check follows Orphanidou et al.
(2015), see :class:`HeartRate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt_zi

from stimloop.dsp import qrs
from stimloop.dsp.errors import SignalError
from stimloop.dsp.rr import NNCorrector, resample_hr

__all__ = [
    "BEAT_ARTIFACT",
    "BEAT_DTYPE",
    "BEAT_ECTOPIC",
    "BEAT_NORMAL",
    "FLAG_CORRECTED",
    "FLAG_IBI_JUMP",
    "FLAG_IBI_RANGE",
    "FLAG_NOISY",
    "FLAG_NO_BEAT",
    "FLAG_NO_IBI",
    "FLAG_SIGNAL_BAD",
    "SERIES_DTYPE",
    "HeartMonitor",
    "HeartRate",
    "HeartUpdate",
    "RPeakDetector",
    "SignalError",
    "detect_beats",
    "detect_rpeaks",
    "hrv_rmssd_sdnn",
    "pulse_blank_mask",
    "resample_hr",
]

FS_MIN_HZ = 100.0
FS_MAX_HZ = 2048.0

# Quality flags (bit field, uint8) of beats and heart-rate samples.
FLAG_IBI_RANGE = 1  #: IBI outside the plausible range (default 0.25-2.5 s)
FLAG_IBI_JUMP = 2  #: IBI differs from the running median by more than 30%
FLAG_SIGNAL_BAD = 4  #: ECG was NaN or flat (lead-off, saturation): HR is NaN
FLAG_NO_BEAT = 8  #: no beat for longer than the maximal IBI: HR is NaN
FLAG_NO_IBI = 16  #: no interval yet (first beat, or first beat after bad signal): HR is NaN
FLAG_NOISY = 32  #: recent beats do not resemble each other (noise, not ECG): HR is NaN
FLAG_CORRECTED = 64  #: the NN interval was corrected (ectopic beats, missed beats): HR valid

# Beat classes (uint8) of every detection.
BEAT_NORMAL = qrs.CLS_NORMAL  #: a normal (sinus or supraventricular, on time) beat
BEAT_ECTOPIC = qrs.CLS_ECTOPIC  #: a premature or ventricular beat: not part of an NN interval
BEAT_ARTIFACT = qrs.CLS_ARTIFACT  #: a step or spike that passed for a QRS: not a heartbeat


def _check_fs(fs: float) -> float:
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise SignalError(f"fs must be a number in Hz, got {fs!r}") from None
    if not FS_MIN_HZ <= fs <= FS_MAX_HZ:
        raise SignalError(
            f"fs must be within {FS_MIN_HZ:g}-{FS_MAX_HZ:g} Hz for R-peak detection, got {fs:g}"
        )
    return fs


def _as_signal(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise SignalError(f"{what} must be 1-D (n_samples,), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise SignalError(f"{what} must be real numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


class RPeakDetector:
    """Streaming, causal R-peak detector (low-latency Pan–Tompkins family).

    Parameters
    ----------
    fs : float
        Sampling rate in Hz, 100-2048.
    band_hz : tuple of float
        Pass band of the QRS-enhancing Butterworth filter in Hz. Pan and Tompkins (1985)
        use 5-15 Hz; 5-20 Hz at order 1 has half the group delay (about 20 ms instead of
        40 ms at 10 Hz) at the same accuracy on MIT-BIH 100.
    mwi_s : float
        Length of the moving-window integrator in s (paper: 150 ms).
    order : int
        Butterworth order of the band-pass (1-4); each order adds group delay.
    drop : float
        An MWI peak is confirmed once the MWI falls below ``drop`` times its maximum
        (0.5-0.99); closer to 1 confirms sooner but is more sensitive to ripple.
    max_blank_s : float
        Longest blanked run (``update(blank=...)``) bridged by interpolation, in s
        (default 0.1); a longer one is treated as missing data.

    Notes
    -----
    Methods: Pan and Tompkins (1985), Hamilton and Tompkins (1986), Lipponen and
    Tarvainen (2019) for the beat classes; see :mod:`stimloop.dsp.qrs` for the rules
    and every change made.

    Each reported index is the sample extremum of the dominant deflection in the core
    of the QRS (the flanks of its main wave): the maximum for an upright lead, the
    minimum for an inverted one (a complex deflecting more than twice as far the other
    way, e.g. a negative PVC in an upright lead, is marked at that larger extremum).
    Polarity is the sign of the dominant QRS deflection, learnt in the first 2 s and
    tracked over normal beats (:attr:`polarity`). A normal beat is typically confirmed
    40-60 ms after its R wave (``docs/heart.md``); a wide complex later, as its slope
    lasts longer; an ectopic beat unlike the normal ones one beat later (held until the
    next beat tells it from an extra detection); beats recovered by search-back or by
    the learning phase later still. Detections are always reported in time order.

    Input samples that are NaN/inf, or flat (>= 100 ms of identical values: lead-off,
    saturation) are flagged in :attr:`last_bad` and skipped; detection restarts cleanly
    after them.
    """

    def __init__(
        self,
        fs: float,
        band_hz: tuple[float, float] = (5.0, 20.0),
        mwi_s: float = 0.06,
        order: int = 1,
        drop: float = 0.95,
        max_blank_s: float = 0.1,
    ) -> None:
        self.fs = _check_fs(fs)
        if not 0.0 < max_blank_s <= 0.5:
            raise SignalError(f"max_blank_s must be within (0, 0.5] s, got {max_blank_s}")
        self.max_blank_s = float(max_blank_s)
        lo, hi = (float(b) for b in band_hz)
        if not 0.0 < lo < hi < self.fs / 2:
            raise SignalError(
                f"band_hz must satisfy 0 < low < high < fs/2 = {self.fs / 2:g} Hz, got {band_hz}"
            )
        if not 0.02 <= mwi_s <= 0.3:
            raise SignalError(f"mwi_s must be within 0.02-0.3 s, got {mwi_s}")
        if order not in (1, 2, 3, 4):
            raise SignalError(f"order must be 1, 2, 3 or 4, got {order!r}")
        if not 0.5 <= drop <= 0.99:
            raise SignalError(f"drop must be within 0.5-0.99, got {drop}")
        fs = self.fs
        self.band_hz = (lo, hi)
        self.mwi_s = float(mwi_s)
        self._sos_bp = np.ascontiguousarray(
            butter(order, [lo, hi], "bandpass", fs=fs, output="sos")
        )
        self._zi_bp = np.ascontiguousarray(sosfilt_zi(self._sos_bp))
        w = max(2, round(self.mwi_s * fs))
        ring = 1 << int(np.ceil(np.log2(4.0 * fs)))
        P = np.zeros(qrs.N_P, np.int64)
        P[qrs.P_W] = w
        P[qrs.P_REFR] = round(0.2 * fs)
        P[qrs.P_TWAVE] = round(0.36 * fs)
        P[qrs.P_SBACK] = w + round(0.06 * fs)
        P[qrs.P_SMOOTH] = round(0.004 * fs)
        P[qrs.P_FLAT] = round(0.1 * fs)
        P[qrs.P_SETTLE] = round(0.25 * fs)
        P[qrs.P_LEARN] = round(2.0 * fs)
        P[qrs.P_LOST] = round(3.0 * fs)
        P[qrs.P_MASK] = ring - 1
        P[qrs.P_REFINE] = max(1, round(0.01 * fs))
        P[qrs.P_TPRE] = round(0.25 * fs)  # P wave and PR segment: noise cannot fake them
        P[qrs.P_TPOST] = round(0.04 * fs)
        P[qrs.P_SBACK] = w + round(0.2 * fs)  # room for a wide ventricular QRS
        P[qrs.P_QUIET] = max(2, round(0.006 * fs))
        P[qrs.P_GAP] = max(2, round(0.06 * fs))
        P[qrs.P_BASE] = max(2, round(0.02 * fs))
        P[qrs.P_TIMEOUT] = round(0.25 * fs)
        P[qrs.P_BLANKMAX] = max(1, round(self.max_blank_s * fs))
        P[qrs.P_SPIKE] = max(2, round(0.012 * fs))
        PF = np.zeros(qrs.N_PF)
        PF[qrs.PF_FS] = fs
        PF[qrs.PF_DROP] = drop
        PF[qrs.PF_THETA] = 0.25
        PF[qrs.PF_CORE] = 0.5
        PF[qrs.PF_NOISEW] = 1.0 / (0.5 * fs)
        PF[qrs.PF_SMOOTHW] = min(1.0, 1.0 / (0.004 * fs))
        PF[qrs.PF_BALANCE] = 0.3
        PF[qrs.PF_WIDE] = 1.2
        PF[qrs.PF_CORR] = 0.7
        PF[qrs.PF_PREM] = -3.0
        PF[qrs.PF_ALPHA] = 5.2
        PF[qrs.PF_THMIN] = 0.03
        self._P = P
        self._PF = PF
        self._ring = ring
        self._min_gap = max(1, int(P[qrs.P_REFR]))
        self.reset()
        self.warmup()

    def reset(self) -> None:
        """Forget all state, as if newly constructed (sample index restarts at 0)."""
        self._z_bp = np.zeros_like(self._zi_bp)
        self._ring_s = np.zeros(self._ring)
        self._ring_d = np.zeros(self._ring)
        self._ring_e = np.zeros(int(self._P[qrs.P_W]))
        self._C = np.zeros((qrs.N_CAND, qrs.N_C))
        self._rr = np.zeros(qrs.N_RR)
        self._tmpl = np.zeros((2, int(self._P[qrs.P_TPRE] + self._P[qrs.P_TPOST] + 1)))
        self._hist = np.zeros((3, qrs.N_Q))
        self._pend = np.zeros(qrs.N_PD)
        self._F = np.zeros(qrs.N_F)
        self._I = np.zeros(qrs.N_I, np.int64)
        self._I[qrs.I_LASTR] = -1
        self._I[qrs.I_PREVCLS] = -1
        self._I[qrs.I_LASTART] = -1
        self._I[qrs.I_LASTCLOSE] = -1
        self.last_bad = np.zeros(0, np.uint8)
        self.last_confirmed = np.zeros(0, np.int64)
        self.last_similarity = np.zeros(0)
        self.last_class = np.zeros(0, np.uint8)
        self.last_features = np.zeros((0, qrs.N_FEAT))

    def warmup(self) -> None:
        """Compile the kernel (numba caches it on disk) without touching this detector."""
        probe = RPeakDetector.__new__(RPeakDetector)
        probe.__dict__.update(self.__dict__)
        probe.reset()  # fresh state arrays: this detector's own state is untouched
        probe._run(np.zeros(4), np.zeros(4, np.uint8))

    @property
    def n_samples(self) -> int:
        """Number of samples consumed so far (absolute index of the next sample)."""
        return int(self._I[qrs.I_N])

    @property
    def polarity(self) -> int:
        """+1 if R peaks are maxima (upright lead), -1 if minima (inverted lead)."""
        return 1 if self._F[qrs.F_POL] >= 0.0 else -1

    @property
    def learning(self) -> bool:
        """True while thresholds are being (re)learnt (start-up, or after losing the rhythm)."""
        return bool(self._I[qrs.I_MODE] == 0)

    def _run(self, x: np.ndarray, blank: np.ndarray) -> tuple[np.ndarray, ...]:
        n = x.shape[0]
        # beats are >= one refractory period apart, and so are artifacts; learning and
        # search-back can release up to N_CAND stored candidates at once
        cap = 2 * (n // self._min_gap) + qrs.N_CAND + 4
        peaks = np.empty(cap, np.int64)
        dec = np.empty(cap, np.int64)
        sim = np.empty(cap)
        cls = np.empty(cap, np.uint8)
        feat = np.empty((cap, qrs.N_FEAT))
        bad = np.empty(n, np.uint8)
        k = qrs.qrs_kernel(
            x, blank, self._sos_bp, self._zi_bp, self._z_bp, self._ring_s, self._ring_d,
            self._ring_e, self._C, self._rr, self._tmpl, self._hist, self._pend, self._F, self._I,
            self._P, self._PF, peaks, dec, sim, cls, feat, bad,
        )  # fmt: skip
        return peaks[:k].copy(), dec[:k].copy(), sim[:k].copy(), cls[:k].copy(), feat[:k], bad

    def update(self, chunk: np.ndarray, blank: np.ndarray | None = None) -> np.ndarray:
        """Consume the next samples and return the detections confirmed in them.

        Parameters
        ----------
        chunk : ndarray, shape (n_samples,)
            ECG samples (any unit, e.g. mV); NaN marks missing samples.
        blank : ndarray of bool, shape (n_samples,), optional
            True where the sample must not be used (e.g. around a TMS pulse: see
            :func:`pulse_blank_mask`). A blanked run of up to ``max_blank_s`` is bridged
            by the straight line between the samples on either side of it, once the next
            usable sample has arrived; a longer run is treated as missing data.

        Returns
        -------
        ndarray of int64
            Absolute sample indices (0 = first sample ever fed) of the R-wave extrema
            confirmed while consuming this chunk, increasing. They may precede the chunk.
            After the call, :attr:`last_class` holds each detection's class
            (``BEAT_NORMAL``, ``BEAT_ECTOPIC``, or ``BEAT_ARTIFACT`` for a step or spike
            that is not a heartbeat), :attr:`last_confirmed` the absolute index of the
            sample at which each was confirmed, :attr:`last_similarity` the correlation
            of each beat with the normal-beat template (Orphanidou et al. 2015; NaN
            before one exists) and :attr:`last_bad` the per-sample quality code of the
            chunk (0 usable, 1 not finite or blanked too long, 2 flat, 3 blanked and
            bridged).
        """
        x = _as_signal(chunk, "chunk")
        if blank is None:
            bl = np.zeros(x.shape[0], np.uint8)
        else:
            bl = np.asarray(blank)
            if bl.ndim != 1 or bl.shape[0] != x.shape[0]:
                raise SignalError(
                    f"blank must be 1-D with one entry per sample ({x.shape[0]}), "
                    f"got shape {bl.shape}"
                )
            if not (bl.dtype == bool or np.issubdtype(bl.dtype, np.integer)):
                raise SignalError(f"blank must be boolean, got dtype {bl.dtype}")
            bl = np.ascontiguousarray(bl != 0, dtype=np.uint8)
        peaks, dec, sim, cls, feat, bad = self._run(x, bl)
        self.last_confirmed = dec
        self.last_similarity = sim
        self.last_class = cls
        self.last_features = feat
        self.last_bad = bad
        return peaks


def pulse_blank_mask(
    pulse_index: np.ndarray,
    first_index: int,
    n_samples: int,
    fs: float,
    pre_s: float = 0.002,
    post_s: float = 0.025,
) -> np.ndarray:
    """Samples of one chunk to blank around stimulation pulses (for ``update(blank=)``).

    Parameters
    ----------
    pulse_index : ndarray of int
        ECG sample index of each pulse (absolute, on the detector's sample count; e.g.
        from the gate's pulse markers mapped onto the ECG time grid).
    first_index : int
        Absolute index of the chunk's first sample.
    n_samples : int
        Chunk length.
    fs : float
        ECG sampling rate in Hz.
    pre_s, post_s : float
        Blanked time before and after each pulse in s (default 2 ms and 25 ms: the pulse
        artifact and the amplifier's recovery; set them from the amplifier at hand).

    Returns
    -------
    ndarray of bool, shape (n_samples,)
        True where the sample lies within ``[pulse - pre_s, pulse + post_s]`` of a pulse.
        The same pulses give the same mask for any chunking.
    """
    fs = _check_fs(fs)
    if not (0.0 <= pre_s <= 0.1 and 0.0 <= post_s <= 0.4):
        raise SignalError(
            f"pre_s must be within 0-0.1 s and post_s within 0-0.4 s, got {pre_s}, {post_s}"
        )
    p = np.asarray(pulse_index, dtype=np.int64).ravel()
    n = int(n_samples)
    mask = np.zeros(n, bool)
    pre, post = round(pre_s * fs), round(post_s * fs)
    for q in p[(p + post >= first_index) & (p - pre < first_index + n)]:
        mask[max(0, q - pre - first_index) : max(0, q + post + 1 - first_index)] = True
    return mask


def detect_beats(
    ecg: np.ndarray, fs: float, blank: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Causal detection and classification of every beat and artifact of a recording.

    The same as one :meth:`RPeakDetector.update` over the whole array.

    Parameters
    ----------
    ecg : ndarray, shape (n_samples,)
        One ECG lead (any unit). NaN marks missing samples.
    fs : float
        Sampling rate in Hz, 100-2048.
    blank : ndarray of bool, optional
        Samples not to use (see :meth:`RPeakDetector.update`).

    Returns
    -------
    index : ndarray of int64
        Sample of each detection's R-wave extremum.
    beat_class : ndarray of uint8
        ``BEAT_NORMAL``, ``BEAT_ECTOPIC`` or ``BEAT_ARTIFACT`` per detection.
    """
    det = RPeakDetector(fs)
    idx = det.update(ecg, blank=blank)
    return idx, det.last_class


def detect_rpeaks(ecg: np.ndarray, fs: float, blank: np.ndarray | None = None) -> np.ndarray:
    """Causal R-peak detection over a whole recording: the heartbeats only.

    Identical to feeding ``ecg`` through a new :class:`RPeakDetector` in chunks of any
    size (same kernel, same state) and keeping the detections that are heartbeats
    (normal or ectopic; artifacts are left out). Methods: Pan and Tompkins (1985),
    Hamilton and Tompkins (1986), with the changes listed in :mod:`stimloop.dsp.qrs`.

    Parameters
    ----------
    ecg : ndarray, shape (n_samples,)
        One ECG lead (any unit). NaN marks missing samples.
    fs : float
        Sampling rate in Hz, 100-2048.
    blank : ndarray of bool, optional
        Samples not to use (see :meth:`RPeakDetector.update`).

    Returns
    -------
    ndarray of int64
        Sample indices of the R-wave extrema (the extremum of each complex's dominant
        deflection: maxima in an upright lead, minima in an inverted one).
    """
    idx, cls = detect_beats(ecg, fs, blank)
    return idx[cls != BEAT_ARTIFACT]


# --------------------------------------------------------------------------------------
# Heart rate and HRV
# --------------------------------------------------------------------------------------

#: One row per detection: R index, index of the sample at which it was confirmed, its
#: class (``BEAT_*``), the measured interval since the previous heartbeat (ms), the
#: corrected NN interval that ends at it (ms), the heart rate from that NN interval
#: (bpm), rolling RMSSD and SDNN (ms), the correlation with the normal-beat template,
#: and quality flags.
BEAT_DTYPE = np.dtype(
    [
        ("index", np.int64),
        ("confirmed", np.int64),
        ("beat_class", np.uint8),
        ("ibi_ms", np.float64),
        ("nn_ms", np.float64),
        ("hr_bpm", np.float64),
        ("rmssd_ms", np.float64),
        ("sdnn_ms", np.float64),
        ("similarity", np.float64),
        ("flags", np.uint8),
    ]
)

#: One row per sample of the evenly resampled series: ECG sample index of the grid point,
#: HR (bpm), the NN interval behind it (ms), rolling RMSSD and SDNN (ms), and flags.
SERIES_DTYPE = np.dtype(
    [
        ("index", np.int64),
        ("hr_bpm", np.float64),
        ("ibi_ms", np.float64),
        ("rmssd_ms", np.float64),
        ("sdnn_ms", np.float64),
        ("flags", np.uint8),
    ]
)

_INVALID = FLAG_SIGNAL_BAD | FLAG_NO_BEAT | FLAG_NO_IBI | FLAG_NOISY


def hrv_rmssd_sdnn(ibi_ms: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """RMSSD and SDNN of a run of inter-beat intervals (Task Force 1996).

    Parameters
    ----------
    ibi_ms : ndarray, shape (n,)
        Consecutive inter-beat intervals in ms.
    valid : ndarray of bool, shape (n,), optional
        Intervals to use. SDNN uses every valid interval; RMSSD uses only successive
        differences whose two intervals are both valid (a flagged interval breaks the
        chain instead of being bridged).

    Returns
    -------
    rmssd_ms, sdnn_ms : float
        In ms; NaN when fewer than 3 valid intervals (SDNN) or fewer than 2 valid
        successive differences (RMSSD) are available. SDNN uses ``ddof=1``.
    """
    ibi = np.asarray(ibi_ms, dtype=np.float64)
    ok = np.isfinite(ibi) if valid is None else (np.asarray(valid, bool) & np.isfinite(ibi))
    v = ibi[ok]
    sdnn = float(np.std(v, ddof=1)) if v.size >= 3 else float("nan")
    pair = ok[1:] & ok[:-1]
    diffs = np.diff(ibi)[pair]
    rmssd = float(np.sqrt(np.mean(diffs**2))) if diffs.size >= 2 else float("nan")
    return rmssd, sdnn


class HeartRate:
    """Beat-by-beat heart rate, quality flags, rolling HRV and an evenly sampled series.

    Causal and chunk-size independent: every output depends only on beats confirmed
    at or before its own sample index.

    Heart rate and HRV use NN intervals: ectopic beats and artifacts are corrected for,
    and missed beats inserted, by the rule of :class:`stimloop.dsp.rr.NNCorrector`
    (after Lipponen and Tarvainen 2019), the same rule :func:`stimloop.dsp.rr.resample_corrected_hr`
    applies offline. A normal beat after ectopic beats carries the corrected interval
    (flag ``FLAG_CORRECTED``); an ectopic beat carries its measured interval only (HR
    NaN: its NN interval is known at the next normal beat).

    Parameters
    ----------
    fs : float
        ECG sampling rate in Hz.
    rate_hz : float
        Rate of the evenly resampled series in Hz (default 4). Interpolation is a
        zero-order hold: each grid sample carries the HR of the most recent normal beat
        confirmed at or before it (causal; see :func:`stimloop.dsp.rr.resample_corrected_hr` for
        linear, offline).
    hrv_window_s : float
        RMSSD/SDNN use the beats of the last ``hrv_window_s`` seconds (default 60 s;
        the Task Force 1996 short-term standard is 5 min, ultra-short windows are
        common in real time).
    ibi_range_s : tuple of float
        Plausible NN range in s; outside it a beat is flagged ``FLAG_IBI_RANGE``.
    max_jump : float
        Relative deviation from the median of the last ``median_beats`` NN intervals
        above which a beat is flagged ``FLAG_IBI_JUMP`` (default 0.3 = 30%).
    median_beats : int
        Length of that running median (every NN interval enters it, flagged or not, so
        a true step change in rate is followed within a few beats).
    min_similarity : float
        Template-matching quality (Orphanidou et al. 2015): when the mean correlation
        of the normal beats among the last ``similarity_beats`` heartbeats with the
        normal-beat template is below this, or fewer than a quarter of those heartbeats
        are normal, the detections are taken for noise and flagged ``FLAG_NOISY`` (HR
        NaN).
    similarity_beats : int
        Number of heartbeats considered for ``min_similarity``.
    **corrector_kw
        Passed to :class:`stimloop.dsp.rr.NNCorrector`.

    Notes
    -----
    Flagged intervals keep their value (never hidden); they are excluded from
    RMSSD/SDNN. HR becomes NaN, with a flag, when the ECG is bad (NaN, flat), when no
    heartbeat has come for longer than the maximal IBI (``FLAG_NO_BEAT``), when no
    normal beat has come for twice that (``FLAG_NO_IBI``), and until the first NN
    interval whose two beats both follow the last bad sample.
    """

    def __init__(
        self,
        fs: float,
        rate_hz: float = 4.0,
        hrv_window_s: float = 60.0,
        ibi_range_s: tuple[float, float] = (0.25, 2.5),
        max_jump: float = 0.3,
        median_beats: int = 5,
        min_similarity: float = 0.55,
        similarity_beats: int = 8,
        **corrector_kw,
    ) -> None:
        self.fs = _check_fs(fs)
        if not 0.0 < rate_hz <= 100.0:
            raise SignalError(f"rate_hz must be within (0, 100] Hz, got {rate_hz}")
        if not hrv_window_s > 0:
            raise SignalError(f"hrv_window_s must be > 0 s, got {hrv_window_s}")
        lo, hi = (float(v) for v in ibi_range_s)
        if not 0.0 < lo < hi:
            raise SignalError(f"ibi_range_s must satisfy 0 < low < high, got {ibi_range_s}")
        if not 0.0 < max_jump < 1.0:
            raise SignalError(f"max_jump must be within (0, 1), got {max_jump}")
        if int(median_beats) < 1:
            raise SignalError(f"median_beats must be >= 1, got {median_beats}")
        if not -1.0 <= min_similarity < 1.0:
            raise SignalError(f"min_similarity must be within [-1, 1), got {min_similarity}")
        if int(similarity_beats) < 1:
            raise SignalError(f"similarity_beats must be >= 1, got {similarity_beats}")
        self.min_similarity = float(min_similarity)
        self.similarity_beats = int(similarity_beats)
        self.rate_hz = float(rate_hz)
        self.hrv_window_s = float(hrv_window_s)
        self.ibi_range_s = (lo, hi)
        self.max_jump = float(max_jump)
        self.median_beats = int(median_beats)

        self._new_corrector = lambda: NNCorrector(**corrector_kw)
        self._new_corrector()  # bad keywords fail here, not at the first beat
        self.reset()

    def reset(self) -> None:
        """Forget all beats and restart the grid at sample 0."""
        self._n = 0  # samples consumed
        self._k = 0  # next grid sample number
        self._last_bad = -1  # absolute index of the most recent bad sample
        self._prev_r = -1  # the last heartbeat (normal or ectopic)
        self._nnc = self._new_corrector()
        self._hist_r: list[int] = []  # beats within the HRV window
        self._hist_nn: list[float] = []
        self._hist_ok: list[bool] = []
        self._recent_nn: list[float] = []  # for the running median
        self._recent: list[tuple[int, float]] = []  # (class, similarity) of heartbeats
        self._noisy = False
        self._last = np.zeros(1, BEAT_DTYPE)[0]  # the last beat with an NN interval
        self._last["index"] = -1
        for f in ("ibi_ms", "nn_ms", "hr_bpm", "rmssd_ms", "sdnn_ms", "similarity"):
            self._last[f] = np.nan
        self._last["flags"] = FLAG_NO_IBI

    @property
    def last_beat(self) -> np.void:
        """The most recent beat with an NN interval (``BEAT_DTYPE``; index -1 before one)."""
        return self._last.copy()

    def _check_noise(self, cls: int, similarity: float) -> None:
        self._recent.append((cls, similarity))
        if len(self._recent) > self.similarity_beats:
            self._recent.pop(0)
        sims = [s for c, s in self._recent if c == BEAT_NORMAL and np.isfinite(s)]
        n_normal = sum(1 for c, _ in self._recent if c == BEAT_NORMAL)
        few = len(self._recent) == self.similarity_beats and 4 * n_normal < len(self._recent)
        self._noisy = few or (bool(sims) and float(np.mean(sims)) < self.min_similarity)

    def _beat(self, r: int, confirmed: int, bad_since: int, similarity: float, cls: int):
        rec = np.zeros(1, BEAT_DTYPE)[0]
        rec["index"] = r
        rec["confirmed"] = confirmed
        rec["beat_class"] = cls
        rec["similarity"] = similarity
        rec["rmssd_ms"] = self._last["rmssd_ms"]
        rec["sdnn_ms"] = self._last["sdnn_ms"]
        rec["nn_ms"] = np.nan
        rec["hr_bpm"] = np.nan
        if cls == BEAT_ARTIFACT:
            # not a heartbeat: no interval, nothing learnt from it
            rec["ibi_ms"] = np.nan
            rec["similarity"] = np.nan
            rec["flags"] = 0
            return rec
        self._check_noise(cls, similarity)
        flags = FLAG_NOISY if self._noisy else 0
        prev = self._prev_r
        self._prev_r = r
        if bad_since > self._last_nn_start():
            self._nnc.restart()  # no interval across bad signal
        if prev < 0 or bad_since > prev:
            rec["ibi_ms"] = np.nan
        else:
            rec["ibi_ms"] = (r - prev) * 1000.0 / self.fs
        res = self._nnc.push(r, cls)
        if cls == BEAT_ECTOPIC:
            rec["flags"] = flags
            return rec
        if res is None:
            # no interval: first beat, or bad signal since the previous beat
            flags |= FLAG_NO_IBI | (FLAG_SIGNAL_BAD if prev >= 0 else 0)
            nn = np.nan
        else:
            nn = res.nn * 1000.0 / self.fs
            if res.corrected:
                flags |= FLAG_CORRECTED
            lo, hi = self.ibi_range_s
            if not lo * 1000.0 <= nn <= hi * 1000.0:
                flags |= FLAG_IBI_RANGE
            if len(self._recent_nn) >= 3:
                med = float(np.median(self._recent_nn))
                if abs(nn - med) > self.max_jump * med:
                    flags |= FLAG_IBI_JUMP
            self._recent_nn.append(nn)
            if len(self._recent_nn) > self.median_beats:
                self._recent_nn.pop(0)
        rec["nn_ms"] = nn
        rec["hr_bpm"] = 60000.0 / nn if np.isfinite(nn) else np.nan
        # rolling HRV over NN intervals; flagged ones are excluded, a missing one breaks
        # the successive-difference chain
        self._hist_r.append(r)
        self._hist_nn.append(nn)
        self._hist_ok.append(
            bool(np.isfinite(nn)) and not flags & (FLAG_IBI_RANGE | FLAG_IBI_JUMP | FLAG_NOISY)
        )
        cut = r - self.hrv_window_s * self.fs
        while self._hist_r and self._hist_r[0] < cut:
            self._hist_r.pop(0)
            self._hist_nn.pop(0)
            self._hist_ok.pop(0)
        rmssd, sdnn = hrv_rmssd_sdnn(np.asarray(self._hist_nn), np.asarray(self._hist_ok))
        rec["rmssd_ms"] = rmssd
        rec["sdnn_ms"] = sdnn
        rec["flags"] = flags
        self._last = rec
        return rec

    def _last_nn_start(self) -> int:
        # the normal beat an interval ending now would start at (-1: none)
        return self._nnc._prev

    def _grid_sample(self, idx: int, bad_now: bool) -> tuple:
        last = self._last
        flags = int(last["flags"])
        if bad_now or self._last_bad > last["index"]:
            flags |= FLAG_SIGNAL_BAD
        if self._prev_r < 0 or idx - self._prev_r > self.ibi_range_s[1] * self.fs:
            flags |= FLAG_NO_BEAT
        if last["index"] < 0 or idx - last["index"] > 2.0 * self.ibi_range_s[1] * self.fs:
            flags |= FLAG_NO_IBI
        if self._noisy:
            flags |= FLAG_NOISY
        if flags & _INVALID:
            return (idx, np.nan, np.nan, np.nan, np.nan, flags)
        return (idx, last["hr_bpm"], last["nn_ms"], last["rmssd_ms"], last["sdnn_ms"], flags)

    def update(
        self,
        peaks: np.ndarray,
        confirmed: np.ndarray,
        bad: np.ndarray,
        similarity: np.ndarray | None = None,
        beat_class: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Consume one chunk's detector output.

        Parameters
        ----------
        peaks : ndarray of int64
            Detections confirmed in this chunk (:meth:`RPeakDetector.update`).
        confirmed : ndarray of int64
            Sample index at which each was confirmed (:attr:`RPeakDetector.last_confirmed`).
        bad : ndarray of uint8, shape (n_samples,)
            Per-sample quality of the chunk (:attr:`RPeakDetector.last_bad`); codes 1
            (missing) and 2 (flat) are bad, 3 (blanked and bridged) is not.
        similarity : ndarray, optional
            Template correlation of each beat (:attr:`RPeakDetector.last_similarity`);
            without it the noise check (``FLAG_NOISY``) only counts classes.
        beat_class : ndarray of uint8, optional
            Class of each detection (:attr:`RPeakDetector.last_class`); default: all
            normal.

        Returns
        -------
        beats : ndarray of ``BEAT_DTYPE``
            One record per detection of ``peaks``.
        series : ndarray of ``SERIES_DTYPE``
            The evenly spaced samples whose grid index falls in this chunk.
        """
        peaks = np.asarray(peaks, np.int64)
        confirmed = np.asarray(confirmed, np.int64)
        bad = np.asarray(bad)
        sim = (
            np.full(peaks.shape, np.nan)
            if similarity is None
            else np.asarray(similarity, np.float64)
        )
        cls = (
            np.full(peaks.shape, BEAT_NORMAL, np.uint8)
            if beat_class is None
            else np.asarray(beat_class, np.uint8)
        )
        if not peaks.shape == confirmed.shape == sim.shape == cls.shape:
            raise SignalError(
                "peaks, confirmed, similarity and beat_class must have equal shapes, got "
                f"{peaks.shape}, {confirmed.shape}, {sim.shape}, {cls.shape}"
            )
        if cls.size and cls.max() > BEAT_ARTIFACT:
            raise SignalError(f"beat_class must hold 0, 1 or 2, got {np.unique(cls)}")
        start = self._n
        end = start + bad.shape[0]
        isbad = (bad == 1) | (bad == 2)
        bad_idx = np.flatnonzero(isbad) + start
        beats = np.zeros(peaks.size, BEAT_DTYPE)
        rows = []
        b = 0
        step = self.fs / self.rate_hz
        while True:
            g = round(self._k * step)
            if g >= end:
                break
            # beats confirmed at or before this grid sample come first
            while b < peaks.size and confirmed[b] <= g:
                beats[b] = self._beat(
                    int(peaks[b]),
                    int(confirmed[b]),
                    self._bad_before(bad_idx, confirmed[b]),
                    float(sim[b]),
                    int(cls[b]),
                )
                b += 1
            self._update_bad(bad_idx, g)
            rows.append(self._grid_sample(g, g >= start and bool(isbad[g - start])))
            self._k += 1
        while b < peaks.size:
            beats[b] = self._beat(
                int(peaks[b]),
                int(confirmed[b]),
                self._bad_before(bad_idx, confirmed[b]),
                float(sim[b]),
                int(cls[b]),
            )
            b += 1
        self._update_bad(bad_idx, end - 1)
        self._n = end
        return beats, np.array(rows, dtype=SERIES_DTYPE)

    def _bad_before(self, bad_idx: np.ndarray, upto: int) -> int:
        # most recent bad sample at or before `upto` (chunk's bad samples plus history)
        k = np.searchsorted(bad_idx, upto, side="right")
        return max(self._last_bad, int(bad_idx[k - 1]) if k > 0 else -1)

    def _update_bad(self, bad_idx: np.ndarray, upto: int) -> None:
        self._last_bad = self._bad_before(bad_idx, upto)


@dataclass(frozen=True)
class HeartUpdate:
    """What one :meth:`HeartMonitor.update` produced.

    Attributes
    ----------
    peaks : ndarray of int64
        Absolute indices of the detections confirmed in the chunk (every class).
    beats : ndarray of ``BEAT_DTYPE``
        One record per detection: class, IBI and NN (ms), HR (bpm), rolling RMSSD/SDNN
        (ms), flags.
    series : ndarray of ``SERIES_DTYPE``
        Evenly spaced HR/HRV samples whose grid index falls in the chunk.
    bad : ndarray of uint8
        Per-sample input quality of the chunk (0 ok, 1 missing, 2 flat, 3 blanked).
    """

    peaks: np.ndarray
    beats: np.ndarray
    series: np.ndarray
    bad: np.ndarray


class HeartMonitor:
    """R-peak detection and beat classes plus heart rate and HRV, one chunk at a time.

    Parameters
    ----------
    fs : float
        ECG sampling rate in Hz (100-2048).
    rate_hz, hrv_window_s : float
        Passed to :class:`HeartRate`.
    **detector_kw
        Passed to :class:`RPeakDetector`.
    """

    def __init__(
        self, fs: float, rate_hz: float = 4.0, hrv_window_s: float = 60.0, **detector_kw
    ) -> None:
        self.detector = RPeakDetector(fs, **detector_kw)
        self.rate = HeartRate(fs, rate_hz=rate_hz, hrv_window_s=hrv_window_s)
        self.fs = self.detector.fs

    def update(self, chunk: np.ndarray, blank: np.ndarray | None = None) -> HeartUpdate:
        """Consume ECG samples (1-D, any unit) and return detections, beats and HR series.

        ``blank`` marks samples not to use (e.g. around TMS pulses), as for
        :meth:`RPeakDetector.update`.
        """
        det = self.detector
        peaks = det.update(chunk, blank=blank)
        beats, series = self.rate.update(
            peaks, det.last_confirmed, det.last_bad, det.last_similarity, det.last_class
        )
        return HeartUpdate(peaks, beats, series, det.last_bad)
