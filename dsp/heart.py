"""Heart: causal R-peak detection, beat-by-beat heart rate and rolling HRV.

The R-peak detector is a low-latency member of the Pan–Tompkins family (Pan and
Tompkins 1985; Hamilton and Tompkins 1986); the kernel and every departure from the
papers are documented in :mod:`stimloop.dsp.qrs`. :func:`detect_rpeaks` and
:class:`RPeakDetector` run the same numba kernel with the same explicit state, so the
whole-array result equals the chunked one for any chunking, by construction.

Heart rate and HRV follow the Task Force of the ESC and NASPE (1996), "Heart rate
variability: standards of measurement, physiological interpretation and clinical use",
Circulation 93:1043-1065 (RMSSD, SDNN of normal-to-normal intervals). Implausible
intervals are flagged with the criteria of the issue (outside 0.25-2.5 s, or more than
30% from the running median, in the spirit of the artefact rules of Berntson et al.
1990) and are kept, flagged, never silently dropped or replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt_zi

from stimloop.dsp import qrs

__all__ = [
    "FLAG_IBI_JUMP",
    "FLAG_IBI_RANGE",
    "FLAG_NO_BEAT",
    "FLAG_NO_IBI",
    "FLAG_SIGNAL_BAD",
    "HeartMonitor",
    "HeartRate",
    "HeartUpdate",
    "RPeakDetector",
    "SignalError",
    "detect_rpeaks",
    "hrv_rmssd_sdnn",
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


class SignalError(ValueError):
    """Invalid argument or input of a heart-signal function (names what and what is allowed)."""


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
        Pass band of the QRS-enhancing filter in Hz (Pan and Tompkins 1985: 5-15 Hz).
    mwi_s : float
        Length of the moving-window integrator in s.

    Notes
    -----
    Methods: Pan and Tompkins (1985), Hamilton and Tompkins (1986); see
    :mod:`stimloop.dsp.qrs` for the rules and the changes made for latency.

    Each reported index is the extremum of the baseline-removed ECG (0.5 Hz high-pass)
    in the window that produced the QRS: the maximum for an upright lead, the minimum
    for an inverted one. Polarity is the sign of the dominant QRS deflection, learnt in
    the first 2 s and tracked beat by beat (:attr:`polarity`). A beat is confirmed on
    average ~70 ms after its R wave (see ``docs/heart.md``); beats recovered by
    search-back or by the learning phase are confirmed later, still in time order.

    Input samples that are NaN/inf, or flat (>= 100 ms of identical values: lead-off,
    saturation) are flagged in :attr:`last_bad` and skipped; detection restarts cleanly
    after them.
    """

    def __init__(
        self,
        fs: float,
        band_hz: tuple[float, float] = (5.0, 15.0),
        mwi_s: float = 0.08,
        order: int = 2,
        drop: float = 0.9,
    ) -> None:
        self.fs = _check_fs(fs)
        lo, hi = (float(b) for b in band_hz)
        if not 0.0 < lo < hi < self.fs / 2:
            raise SignalError(
                f"band_hz must satisfy 0 < low < high < fs/2 = {self.fs / 2:g} Hz, got {band_hz}"
            )
        if not 0.02 <= mwi_s <= 0.3:
            raise SignalError(f"mwi_s must be within 0.02-0.3 s, got {mwi_s}")
        fs = self.fs
        self.band_hz = (lo, hi)
        self.mwi_s = float(mwi_s)
        self._sos_bp = np.ascontiguousarray(butter(order, [lo, hi], "bandpass", fs=fs, output="sos"))
        self._zi_bp = np.ascontiguousarray(sosfilt_zi(self._sos_bp))
        self._sos_hp = np.ascontiguousarray(butter(2, 0.5, "highpass", fs=fs, output="sos"))
        self._zi_hp = np.ascontiguousarray(sosfilt_zi(self._sos_hp))
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
        PF = np.zeros(qrs.N_PF)
        PF[qrs.PF_FS] = fs
        PF[qrs.PF_DROP] = drop
        self._P = P
        self._PF = PF
        self._ring = ring
        self._min_gap = max(1, int(P[qrs.P_REFR]))
        self.reset()
        self.warmup()

    def reset(self) -> None:
        """Forget all state, as if newly constructed (sample index restarts at 0)."""
        self._z_bp = np.zeros_like(self._zi_bp)
        self._z_hp = np.zeros_like(self._zi_hp)
        self._ring_s = np.zeros(self._ring)
        self._ring_d = np.zeros(self._ring)
        self._ring_e = np.zeros(int(self._P[qrs.P_W]))
        self._C = np.zeros((qrs.N_CAND, qrs.N_C))
        self._rr = np.zeros(qrs.N_RR)
        self._F = np.zeros(qrs.N_F)
        self._I = np.zeros(qrs.N_I, np.int64)
        self._I[qrs.I_LASTR] = -1
        self.last_bad = np.zeros(0, np.uint8)
        self.last_confirmed = np.zeros(0, np.int64)

    def warmup(self) -> None:
        """Compile the kernel (numba caches it on disk) without touching this detector."""
        probe = RPeakDetector.__new__(RPeakDetector)
        probe.__dict__.update(self.__dict__)
        probe.reset()  # fresh state arrays: this detector's own state is untouched
        probe._run(np.zeros(4))

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

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = x.shape[0]
        cap = n // self._min_gap + qrs.N_CAND + 2
        peaks = np.empty(cap, np.int64)
        dec = np.empty(cap, np.int64)
        bad = np.empty(n, np.uint8)
        k = qrs.qrs_kernel(
            x, self._sos_bp, self._zi_bp, self._z_bp, self._sos_hp, self._zi_hp, self._z_hp,
            self._ring_s, self._ring_d, self._ring_e, self._C, self._rr, self._F, self._I,
            self._P, self._PF, peaks, dec, bad,
        )  # fmt: skip
        return peaks[:k].copy(), dec[:k].copy(), bad

    def update(self, chunk: np.ndarray) -> np.ndarray:
        """Consume the next samples and return the R peaks confirmed in them.

        Parameters
        ----------
        chunk : ndarray, shape (n_samples,)
            ECG samples (any unit, e.g. mV); NaN marks missing samples.

        Returns
        -------
        ndarray of int64
            Absolute sample indices (0 = first sample ever fed) of the R-wave extrema
            confirmed while consuming this chunk, increasing. They may precede the chunk.
            After the call, :attr:`last_confirmed` holds the absolute index of the sample
            at which each was confirmed and :attr:`last_bad` the per-sample quality code
            of the chunk (0 usable, 1 not finite, 2 flat).
        """
        x = _as_signal(chunk, "chunk")
        peaks, dec, bad = self._run(x)
        self.last_confirmed = dec
        self.last_bad = bad
        return peaks


def detect_rpeaks(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Causal R-peak detection over a whole recording.

    Identical to feeding ``ecg`` through a new :class:`RPeakDetector` in chunks of any
    size (same kernel, same state). Methods: Pan and Tompkins (1985), Hamilton and
    Tompkins (1986), with the low-latency changes listed in :mod:`stimloop.dsp.qrs`.

    Parameters
    ----------
    ecg : ndarray, shape (n_samples,)
        One ECG lead (any unit). NaN marks missing samples.
    fs : float
        Sampling rate in Hz, 100-2048.

    Returns
    -------
    ndarray of int64
        Sample indices of the R-wave extrema (maxima, or minima for an inverted lead).
    """
    return RPeakDetector(fs).update(ecg)
