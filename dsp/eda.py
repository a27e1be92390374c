"""Electrodermal activity: causal SCL/phasic split and skin conductance responses (SCRs).

The numba kernel lives in :mod:`stimloop.dsp.eda_kernel`; this module holds the thin,
validated wrappers around it:

- :func:`detect_scr` scores SCRs over a whole recording;
- :class:`SCRDetector` does the same in real time, one chunk at a time. Both call the same
  kernel with explicit state, so chunked output equals one pass for any chunk sizes;
- :func:`decompose_eda` returns the per-sample smoothed signal, SCL, phasic component and
  flags;
- :func:`event_related_scr` / :class:`EventRelatedSCR` pick the first SCR whose onset lies
  1-4 s after each event (Boucsein et al. 2012; Dawson et al. 2017);
- :func:`scr_rate` gives the rolling rate of non-specific SCRs per minute;
- :func:`to_microsiemens` converts µmho and kΩ to µS and validates the range.

Scoring follows the field's standard trough-to-peak definitions: Boucsein, W., Fowles,
D. C., Grimnes, S., et al. (2012), "Publication recommendations for electrodermal
measurements", Psychophysiology 49:1017-1034, and Boucsein (2012) *Electrodermal
Activity*, 2nd ed., Springer; minimum amplitude 0.01 µS as in Ledalab's defaults
(Benedek & Kaernbach 2010, J Neurosci Methods 190:80-91). Artifact rules follow
Kleckner et al. (2018), IEEE Trans Biomed Eng 65:1460-1467.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, freqz, lfilter

from stimloop.dsp import eda_kernel as K
from stimloop.dsp.eda_shape_fit import MODE_FIT, MODE_MEAN, MODE_OFF, new_fit_state
from stimloop.dsp.errors import DSPError

#: dtype of an SCR record returned by :func:`detect_scr` and :attr:`SCRDetector.scrs`.
SCR_DTYPE = np.dtype(
    [
        ("onset", np.int64),
        ("peak", np.int64),
        ("amplitude", np.float64),
        ("rise_time", np.float64),
        ("half_recovery", np.float64),
    ]
)

#: dtype of the SCRs returned by :meth:`SCRDetector.update`: SCR_DTYPE plus LSL times (s)
#: of onset and peak and the index of the sample at which the SCR was confirmed.
SCR_EVENT_DTYPE = np.dtype(
    [
        *SCR_DTYPE.descr,
        ("onset_t", np.float64),
        ("peak_t", np.float64),
        ("confirmed", np.int64),
    ]
)

#: dtype of half-recovery notices from :attr:`SCRDetector.last_recoveries`.
RECOVERY_DTYPE = np.dtype(
    [("peak", np.int64), ("half_recovery", np.float64), ("seen", np.int64), ("seen_t", np.float64)]
)

#: dtype of :func:`event_related_scr` rows; ``onset``/``peak`` are -1 and the floats NaN
#: when the event had no response.
ER_DTYPE = np.dtype(
    [
        ("event", np.int64),
        ("responded", np.bool_),
        ("onset", np.int64),
        ("peak", np.int64),
        ("latency", np.float64),
        ("amplitude", np.float64),
        ("rise_time", np.float64),
    ]
)

FLAG_NAN = K.FLAG_NAN
FLAG_RANGE = K.FLAG_RANGE
FLAG_OFF = K.FLAG_OFF
FLAG_MOTION = K.FLAG_MOTION
FLAG_SETTLING = K.FLAG_SETTLING
FLAG_INVALID = K.FLAG_INVALID

_UNITS = {
    "us": "uS",
    "µs": "uS",
    "μs": "uS",
    "microsiemens": "uS",
    "umho": "uS",
    "µmho": "uS",
    "μmho": "uS",
    "kohm": "kohm",
    "kω": "kohm",
    "kohms": "kohm",
}

#: Shift added to the onset found on the zero-phase copy, s (see EDAParams.onset_delay_s).
ONSET_SHIFT_S = 0.0
#: Block length of the block-scale noise estimate, s (the sample period at 4 Hz).
NOISE_BLOCK_S = 0.25
#: Step of the running medians of the noise (log units per block of 0.25 s, and the same
#: per second at the sample scale): they follow a doubling of the noise within about 20 s
#: and fluctuate by a few per cent.
NOISE_STEP = 0.01
#: Length of each window of the jump test for motion artifacts, s (a step or the rise
#: of a spike takes at most about 0.15 s).
ARTIFACT_WINDOW_S = 0.2
#: Upstroke widening (s) over which the early firing on a sharp onset fades out; measured
#: on the canonical SCRF (Bach et al. 2010) and Bateman shapes with Gaussian drivers.
ONSET_LAMBDA_S = 0.2

#: Modes of EDAParams.onset_fit (eda_shape_fit.MODE_*).
_ONSET_FIT_MODES = {"off": MODE_OFF, "mean": MODE_MEAN, "fit": MODE_FIT}

FS_MIN_HZ = 4.0
FS_MAX_HZ = 2048.0
MAX_US = 100.0


class EDAInputError(DSPError):
    """EDA input outside what the method accepts (rate, unit or conductance range)."""


def _check_fs(fs: float) -> float:
    fs = float(fs)
    if not np.isfinite(fs) or not FS_MIN_HZ <= fs <= FS_MAX_HZ:
        raise EDAInputError(
            f"EDA sampling rate fs={fs!r} Hz is outside the supported "
            f"{FS_MIN_HZ:g}-{FS_MAX_HZ:g} Hz"
        )
    return fs


def _unit_key(unit: str) -> str:
    key = _UNITS.get(str(unit).strip().lower())
    if key is None:
        raise EDAInputError(
            f"EDA unit {unit!r} is not supported; expected 'uS' (µS), 'umho' (µmho = µS) "
            "or 'kohm' (skin resistance in kΩ, converted as 1000 / R)"
        )
    return key


def to_microsiemens(x: np.ndarray, unit: str = "uS", strict: bool = True) -> np.ndarray:
    """Convert skin conductance or resistance to conductance in µS.

    Parameters
    ----------
    x : array_like
        Samples in ``unit``.
    unit : {"uS", "umho", "kohm"}
        ``"uS"``/``"µS"`` and ``"umho"``/``"µmho"`` (identical units) pass through;
        ``"kohm"``/``"kΩ"`` is skin resistance and becomes ``1000 / R`` µS.
    strict : bool
        If True, raise :class:`EDAInputError` on negative or > 100 µS values. If False,
        return them unchanged for the kernel to flag (streaming never raises).

    Returns
    -------
    ndarray of float64
        Conductance in µS; NaN stays NaN.
    """
    key = _unit_key(unit)
    arr = np.asarray(x, dtype=np.float64)
    if key == "kohm":
        with np.errstate(divide="ignore", invalid="ignore"):
            arr = 1000.0 / arr
        # R <= 0 kΩ has no physical conductance: mark it -1 µS so it is flagged out of range.
        arr[~(arr > 0) & ~np.isnan(arr)] = -1.0
    if strict:
        check_range(arr, unit)
    return arr


def check_range(eda_us: np.ndarray, unit: str = "uS") -> None:
    """Raise :class:`EDAInputError` if conductance is negative or above 100 µS.

    Parameters
    ----------
    eda_us : ndarray
        Skin conductance in µS (NaN ignored).
    unit : str
        The unit the caller declared, named in the message.
    """
    finite = eda_us[np.isfinite(eda_us)]
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    if lo < 0.0:
        raise EDAInputError(
            f"EDA contains negative skin conductance (min {lo:.4g} µS, declared unit {unit!r}); "
            f"allowed 0-{MAX_US:g} µS. Check the sensor's offset and sign."
        )
    if hi > MAX_US:
        hint = ""
        if hi > 1000.0 or lo > 20.0:
            hint = " The values look like skin resistance in kΩ: pass unit='kohm'."
        raise EDAInputError(
            f"EDA value {hi:.4g} µS (declared unit {unit!r}) is above the plausible "
            f"0-{MAX_US:g} µS range of skin conductance.{hint}"
        )


@dataclass(frozen=True)
class EDAParams:
    """Settings of the causal EDA pipeline (defaults follow Boucsein et al. 2012).

    Attributes
    ----------
    min_amplitude : float
        Smallest SCR amplitude counted, µS (Ledalab default 0.01 µS).
    rise_time : tuple of float
        Accepted rise time (onset to peak), s.
    lowpass_hz : float
        Cut-off of the smoothing low-pass, Hz (clipped to 0.3 fs).
    slope_on : float
        Drift-corrected slope that starts a rise, µS/s.
    slope_floor : float
        Drift-corrected slope at or below which a sample can be an onset, µS/s.
    rise_min_us : float
        Rise above the onset level needed to start scoring a rise, µS.
    fall_us : float
        Fall below the running peak that confirms the peak, µS.
    plateau_s : float
        Time without a new maximum that confirms the peak, s.
    off_us : float
        Below this conductance the electrode is taken as off, µS (Kleckner et al. 2018).
    artifact_slope : float
        Slope of the 5 Hz low-passed signal above which a transient is a motion artifact,
        µS/s (Kleckner et al. 2018: 10 µS/s).
    artifact_jump_us : float
        Smallest isolated jump (step or spike) taken for a motion artifact, µS (raised to
        8 times the noise level when that is higher); 0 disables the jump test.
    artifact_pad_s : float
        Time flagged after the last artifact sample, s; then the filters restart at the
        level the signal is at.
    settle_s : float
        Time flagged after an invalid run ends (electrode re-contact), s.
    tonic_tau_s : float
        Time constant with which the SCL relaxes upward while no SCR rises, s.
    drift_tau_s : float
        Time constant of the SCL slope estimate that is subtracted from the slope, s.
    trend_tau_s : float
        Time constant of the baseline trend, the slope between rises, s: a rise must be
        steeper than the larger of trend and SCL slope (a rising tonic level that the
        SCL lags behind is not a string of SCRs).
    slope_tau_s : float
        Time constant of the slope smoother, s.
    onset_fraction : float
        The onset is the last sample before the steepest point of the rise whose slope was
        at most this fraction of the way from the pre-rise slope (lowest slope 0.4-1.2 s
        before the steepest point) to the maximum slope.
    trough_window_s : float
        Window before the onset searched for the onset level (the trough), s.
    onset_delay_s : float
        Shift added to reported onsets, s; negative means none (``ONSET_SHIFT_S``). Onsets
        are found on a zero-phase smoothing, so no filter delay is to be undone; the
        criterion's early firing on sharp onsets is corrected by its own calibration.
    shoulder_fraction : float
        Within one rise, a dip of the slope by this fraction of its maximum followed by a
        rebound of the same size splits the rise into two overlapping SCRs.
    baseline : {"projected", "trough"}
        Onset level of an SCR: ``"trough"`` is plain trough-to-peak; ``"projected"``
        (default) also extrapolates a still-decaying recovery limb of an earlier SCR to
        the time of the peak (exponential decay toward the SCL) and measures from there
        when that lies below the trough, so overlapping SCRs are not underestimated.
        Without a decaying baseline the two are identical.
    knee_fraction : float
        On a recovery limb, a rebound of the slope within 0.5-1 s by this fraction of the
        decay slope starts a rise even if the signal never turns upward (an SCR hidden in
        the recovery of a larger one); 0 disables the rule.
    noise_k : float
        The rise thresholds (``slope_on``, ``slope_floor``, ``rise_min_us``, ``fall_us``)
        are raised, when needed, to this many standard deviations of the sensor noise as
        seen in the smoothed signal and its slope. The noise is estimated causally as
        running medians of the third difference of the raw samples (white noise) and of
        0.25 s block means (1/f noise), so the thresholds are the same at every sampling
        rate. 0 keeps them fixed.
    recovery_tau_s : tuple of float
        (τ1, τ2) of the recovery template, s: a Bateman function (Benedek & Kaernbach
        2010) with its peak placed on the previous SCR's peak and scaled to its amplitude.
        With ``baseline="projected"``, an SCR that starts on that recovery is measured from
        the template's decay between its onset and its peak when that lies below the other
        baselines (near the previous peak the slope shows little of the decay still to
        come). Where the template predicts a fall by the onset, it is scaled down to the
        fall seen there (a slower recovery is not extrapolated as a fast one). It changes
        amplitudes only: whether a rise is an SCR is decided without it.
        ``(0, 0)`` disables it.
    onset_fit : {"mean", "fit", "off"}
        Onset refinement at confirmation by a causal least-squares fit of one response
        shape (Bateman functions of Benedek & Kaernbach 2010 driven by Gaussian bursts, the
        form of Bach et al. 2010's SCRF; see :mod:`stimloop.dsp.eda_shape_fit`):
        ``"mean"`` (default) reports the mean of the rule-based and the fitted onset,
        ``"fit"`` the fitted one, ``"off"`` the rule-based one. SCRs, peaks and amplitudes
        do not depend on it.
    """

    min_amplitude: float = 0.01
    rise_time: tuple[float, float] = (0.5, 5.0)
    lowpass_hz: float = 1.0
    slope_on: float = 0.01
    slope_floor: float = 0.004
    rise_min_us: float = 0.003
    fall_us: float = 0.003
    plateau_s: float = 1.0
    off_us: float = 0.05
    artifact_slope: float = 10.0
    artifact_jump_us: float = 0.05
    artifact_pad_s: float = 1.0
    settle_s: float = 2.0
    tonic_tau_s: float = 8.0
    drift_tau_s: float = 4.0
    trend_tau_s: float = 5.0
    slope_tau_s: float = 0.1
    onset_fraction: float = 0.1
    trough_window_s: float = 0.25
    onset_delay_s: float = -1.0
    shoulder_fraction: float = 0.25
    baseline: str = "projected"
    knee_fraction: float = 0.5
    noise_k: float = 4.0
    recovery_tau_s: tuple[float, float] = (0.75, 3.0)
    onset_fit: str = "mean"

    def vector(self, fs: float) -> np.ndarray:
        """Kernel parameter vector for sampling rate ``fs`` (Hz)."""
        fs = _check_fs(fs)
        if not self.min_amplitude > 0:
            raise EDAInputError(f"min_amplitude must be > 0 µS, got {self.min_amplitude!r}")
        lo, hi = self.rise_time
        if not 0 <= lo < hi:
            raise EDAInputError(
                f"rise_time must be (lo, hi) s with 0 <= lo < hi, got {self.rise_time!r}"
            )
        if self.baseline not in ("projected", "trough"):
            raise EDAInputError(f"baseline must be 'projected' or 'trough', got {self.baseline!r}")
        p = np.zeros(K.N_PARAMS, dtype=np.float64)
        fc = min(self.lowpass_hz, 0.3 * fs)
        b, a = butter(2, fc, fs=fs)
        p[K.P_B0 : K.P_B2 + 1] = b
        p[K.P_A1], p[K.P_A2] = a[1], a[2]
        fb, fa = butter(2, min(5.0, 0.3 * fs), fs=fs)
        p[K.P_FB0 : K.P_FB2 + 1] = fb
        p[K.P_FA1], p[K.P_FA2] = fa[1], fa[2]
        p[K.P_FS] = fs
        p[K.P_MIN_AMP] = self.min_amplitude
        p[K.P_RISE_LO] = round(lo * fs)
        p[K.P_RISE_HI] = round(hi * fs)
        p[K.P_SLOPE_ON] = self.slope_on
        p[K.P_SLOPE_FLOOR] = self.slope_floor
        p[K.P_RISE_MIN_US] = self.rise_min_us
        p[K.P_FALL_US] = self.fall_us
        p[K.P_PLATEAU] = max(1, round(self.plateau_s * fs))
        p[K.P_OFF_US] = self.off_us
        p[K.P_MAX_US] = MAX_US
        p[K.P_ART_SLOPE] = self.artifact_slope
        p[K.P_ART_PAD] = round(self.artifact_pad_s * fs)
        p[K.P_SETTLE] = round(self.settle_s * fs)
        p[K.P_TONIC_A] = 1.0 - np.exp(-1.0 / (self.tonic_tau_s * fs))
        p[K.P_DRIFT_A] = 1.0 - np.exp(-1.0 / (self.drift_tau_s * fs))
        p[K.P_TREND_A] = 1.0 - np.exp(-1.0 / (self.trend_tau_s * fs))
        p[K.P_SLOPE_A] = 1.0 - np.exp(-1.0 / (self.slope_tau_s * fs))
        # Report onset and peak where they happened in the raw signal: the smoothing
        # low-pass delays slow components by its group delay at DC, sqrt(2) / (2 pi fc) s
        # for a 2nd-order Butterworth.
        p[K.P_DELAY] = round(np.sqrt(2.0) / (2.0 * np.pi * fc) * fs)
        # The onset is where the slope has risen a tenth of the way to its maximum, which
        # on the smoothed signal lies ~0.1 s after the start of a bi-exponential SCR
        # (measured on EDAGenerator SCRs at 16-2048 Hz); the onset shift is the group
        # delay minus that lag.
        on_shift = self.onset_delay_s if self.onset_delay_s >= 0 else ONSET_SHIFT_S
        p[K.P_ONSET_SHIFT] = round(on_shift * fs)
        p[K.P_ONSET_A], p[K.P_ONSET_U0] = _onset_calibration(b, a, fs, self.onset_fraction)
        p[K.P_ONSET_LAM] = ONSET_LAMBDA_S
        w = max(2, round(ARTIFACT_WINDOW_S * fs))
        p[K.P_ART_W] = w
        # The sharpest SCR rise (a Bateman function with tau1 = 0.35 s and an impulse
        # driver) still rises e^(-w / 0.35 s) as much in the window after its first one;
        # half of that is the most a step's neighbouring windows may change.
        p[K.P_ART_RHO] = 0.5 * np.exp(-w / fs / 0.35)
        p[K.P_ART_JUMP] = self.artifact_jump_us
        p[K.P_ART_SPIKE] = 0.5
        # Below 20 Hz the 5 Hz low-pass would smear a step over several samples.
        p[K.P_FAST_RAW] = 1.0 if fs < 20.0 else 0.0
        p[K.P_ONSET_FRAC] = self.onset_fraction
        p[K.P_LOOKBACK] = round((hi + 1.0) * fs)
        p[K.P_TROUGH_WIN] = round(self.trough_window_s * fs)
        p[K.P_SHOULDER] = self.shoulder_fraction
        p[K.P_PROJECT] = 1.0 if self.baseline == "projected" else 0.0
        p[K.P_PRE_LO] = round(0.6 * fs)
        p[K.P_PRE_HI] = round(0.3 * fs)
        p[K.P_PRE_W] = max(2, round(0.5 * fs))
        p[K.P_PEAK_SEARCH] = max(1, round(0.3 * fs))
        p[K.P_KNEE] = self.knee_fraction
        p[K.P_KNEE_W1] = round(0.5 * fs)
        p[K.P_KNEE_W2] = round(1.0 * fs)
        p[K.P_NOISE_K] = self.noise_k
        r1, r2 = self.recovery_tau_s
        if not ((r1, r2) == (0.0, 0.0) or 0.0 < r1 < r2):
            raise EDAInputError(
                f"recovery_tau_s must be (tau1, tau2) s with 0 < tau1 < tau2, or (0, 0) to "
                f"disable the recovery template; got {self.recovery_tau_s!r}"
            )
        p[K.P_REC_T1], p[K.P_REC_T2] = (r1, r2) if self.baseline == "projected" else (0.0, 0.0)
        if self.onset_fit not in _ONSET_FIT_MODES:
            raise EDAInputError(
                f"onset_fit must be one of {sorted(_ONSET_FIT_MODES)}, got {self.onset_fit!r}"
            )
        p[K.P_ONSET_FIT] = _ONSET_FIT_MODES[self.onset_fit]
        p[K.P_NOISE_A] = 1.0 - np.exp(-1.0 / (10.0 * fs))
        # Noise gains from the impulse responses of the smoother and of the slope path
        # (first difference x fs, then the EMA), for white input of unit variance: at this
        # rate (sample-scale noise) and at the rate of the 0.25 s block means (block-scale
        # noise, see the kernel).
        p[K.P_GAIN_Y], p[K.P_GAIN_S] = _noise_gains(fs, fc, p[K.P_SLOPE_A])
        blk = max(1, round(NOISE_BLOCK_S * fs))
        p[K.P_NOISE_B] = blk
        p[K.P_NOISE_AB] = np.exp(NOISE_STEP)
        p[K.P_NOISE_AM] = np.exp(NOISE_STEP / blk)  # the same step per second as per block
        p[K.P_GAIN_YB], p[K.P_GAIN_SB] = _pink_block_gains(fs, fc, p[K.P_SLOPE_A], blk)
        return p


def _noise_gains(fs: float, fc: float, slope_a: float) -> tuple[float, float]:
    """Standard deviation of the smoother's output and of its slope (per s) for white
    input of unit variance at rate ``fs`` (Hz), from their impulse responses."""
    b, a = butter(2, fc, fs=fs)
    imp = np.zeros(max(64, int(20.0 * fs / fc)))
    imp[0] = 1.0
    h_y = lfilter(b, a, imp)
    h_s = lfilter([slope_a], [1.0, slope_a - 1.0], np.diff(h_y, prepend=0.0) * fs)
    return float(np.sqrt(np.sum(h_y**2))), float(np.sqrt(np.sum(h_s**2)))


def _pink_block_gains(fs: float, fc: float, slope_a: float, blk: int) -> tuple[float, float]:
    """Noise of the smoothed signal and of its slope per unit of block-scale noise, for
    1/f (pink) noise.

    The block-scale estimate in the kernel is ``median |d2| / 1.651`` of the second
    difference ``d2`` of means over ``blk`` samples (for Gaussian d2, its standard
    deviation / sqrt(6)). For pink noise (PSD ∝ 1/f) this returns, per unit of that
    estimate, the standard deviation of the change of the smoothed signal over 1 s
    divided by sqrt(2) (for white noise that is the standard deviation of the smoothed
    signal itself, as :func:`_noise_gains` gives) and the standard deviation of its slope
    (per s), from the filters' frequency responses integrated against 1/f.
    """
    f = np.geomspace(1e-4, fs / 2.0, 20000)
    df = np.gradient(f)
    psd = 1.0 / f
    w = 2.0 * np.pi * f / fs
    b, a = butter(2, fc, fs=fs)
    _, h_y = freqz(b, a, worN=w)
    _, h_e = freqz([slope_a], [1.0, slope_a - 1.0], worN=w)
    h_s = h_y * (1.0 - np.exp(-1j * w)) * fs * h_e
    lag = np.exp(-1j * 2.0 * np.pi * f * 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(w > 0, np.sin(w * blk / 2.0) / (blk * np.sin(w / 2.0)), 1.0)
    tb = blk / fs
    d3 = np.abs(1.0 - np.exp(-1j * 2 * np.pi * f * tb)) ** 3
    var_d3 = np.sum(psd * avg**2 * d3**2 * df)
    var_y = np.sum(psd * np.abs(h_y * (1.0 - lag)) ** 2 * df) / 2.0
    var_s = np.sum(psd * np.abs(h_s) ** 2 * df)
    unit = np.sqrt(var_d3 / 20.0)
    return float(np.sqrt(var_y) / unit), float(np.sqrt(var_s) / unit)


def _slope_crossing(dz: np.ndarray, k: int, level: float) -> float:
    """Last fractional index before ``k`` at which ``dz`` rose past ``level``."""
    j = k
    while dz[j - 1] > level:
        j -= 1
    return j - 1 + (level - dz[j - 1]) / (dz[j] - dz[j - 1])


def _onset_calibration(b: np.ndarray, a: np.ndarray, fs: float, frac: float) -> tuple[float, float]:
    """How early the onset criterion fires on a sharp SCR, and that SCR's upstroke width.

    The kernel finds the onset where the zero-phase smoothed slope has risen ``frac`` of
    the way to its maximum, or 1.82 upstroke widths before the steepest point if that is
    earlier (:func:`stimloop.dsp.eda_kernel._confirm`). Smoothing spreads
    a sharp onset to both sides, so on a Bateman function with an impulse driver
    (τ1 = 0.75 s, τ2 = 3 s; Benedek & Kaernbach 2010) the criterion fires before the true
    onset. This measures by how much (s) and the upstroke width (s, from the half-maximum
    slope to the maximum) with the same smoother at this rate, averaged over 8 positions
    of the onset between samples.

    Returns
    -------
    (float, float)
        Early firing, s, and upstroke width, s.
    """
    early, width = [], []
    t = np.arange(round(30.0 * fs)) / fs
    for phase in np.arange(8) / 8.0:
        t0 = 10.0 + phase / fs
        d = np.clip(t - t0, 0.0, None)
        x = 5.0 + np.exp(-d / 3.0) - np.exp(-d / 0.75)
        zi = np.array([1.0 - b[0], b[2] - a[2]])
        y = lfilter(b, a, x, zi=zi * x[0])[0]
        z = lfilter(b, a, y[::-1], zi=zi * y[-1])[0][::-1]
        dz = np.gradient(z) * fs
        k = int(np.argmax(dz))
        s0, s1, s2 = dz[k - 1], dz[k], dz[k + 1]
        den = s0 - 2.0 * s1 + s2
        off = 0.5 * (s0 - s2) / den if den < 0 else 0.0
        smax = s1 - 0.25 * (s0 - s2) * off

        u = k + off - _slope_crossing(dz, k, 0.5 * smax)
        onset = min(_slope_crossing(dz, k, frac * smax), k + off - K.ONSET_WIDTHS * u)
        width.append(u / fs)
        early.append(t0 - onset / fs)
    return float(np.mean(early)), float(np.mean(width))


def _events_to_records(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scr_rows = ev[ev[:, K.E_KIND] == K.KIND_SCR]
    half_rows = ev[ev[:, K.E_KIND] == K.KIND_HALF]
    return scr_rows, half_rows


def _new_state(p: np.ndarray) -> tuple[np.ndarray, ...]:
    h = K.history_size(p)
    hist = np.zeros(h), np.zeros(h), np.zeros(h), np.zeros(h)
    return K.new_state(), *hist, *new_fit_state(float(p[K.P_FS]))


def _run(x: np.ndarray, p: np.ndarray, state: tuple[np.ndarray, ...]):
    st, hy, hs, hf, hz, fst, fscr, tab = state
    n = x.shape[0]
    y = np.empty(n)
    scl = np.empty(n)
    ph = np.empty(n)
    fl = np.empty(n, dtype=np.uint8)
    ev = np.empty((K.event_capacity(n, p), K.N_EVENT_COLS))
    ne = K.eda_kernel(
        np.ascontiguousarray(x, dtype=np.float64),
        p,
        st,
        hy,
        hs,
        hf,
        hz,
        fst,
        fscr,
        tab,
        y,
        scl,
        ph,
        fl,
        ev,
    )
    return y, scl, ph, fl, ev[:ne]


@dataclass(frozen=True)
class EDASignals:
    """Per-sample outputs of the causal EDA pipeline.

    Attributes
    ----------
    smoothed, scl, phasic : ndarray
        Low-passed conductance, skin conductance level and phasic component in µS; NaN
        where the input was invalid.
    flags : ndarray of uint8
        ``FLAG_*`` bits: NaN, out of range, electrode off, motion artifact, settling.
    scrs : ndarray (SCR_DTYPE)
        The SCRs scored.
    """

    smoothed: np.ndarray
    scl: np.ndarray
    phasic: np.ndarray
    flags: np.ndarray
    scrs: np.ndarray


def _assemble(scr_rows: np.ndarray, half_rows: np.ndarray) -> np.ndarray:
    out = np.zeros(len(scr_rows), dtype=SCR_DTYPE)
    out["onset"] = scr_rows[:, K.E_ONSET].astype(np.int64)
    out["peak"] = scr_rows[:, K.E_PEAK].astype(np.int64)
    out["amplitude"] = scr_rows[:, K.E_AMP]
    out["rise_time"] = scr_rows[:, K.E_RISE]
    out["half_recovery"] = np.nan
    if len(half_rows):
        ids = scr_rows[:, K.E_ID].astype(np.int64)
        pos = np.searchsorted(ids, half_rows[:, K.E_ID].astype(np.int64))
        out["half_recovery"][pos] = half_rows[:, K.E_HALF]
    return out


def decompose_eda(
    eda: np.ndarray,
    fs: float,
    min_amplitude: float | None = None,
    unit: str = "uS",
    strict: bool = True,
    params: EDAParams | None = None,
) -> EDASignals:
    """Causal SCL / phasic split and SCR scoring of a whole recording.

    Parameters
    ----------
    eda : array_like, shape (n,)
        Skin conductance in ``unit``.
    fs : float
        Sampling rate in Hz (4-2048).
    min_amplitude : float, optional
        Smallest SCR amplitude counted, µS; by default ``params.min_amplitude``.
    unit : {"uS", "umho", "kohm"}
        Unit of ``eda``; kΩ is converted as 1000 / R.
    strict : bool
        Raise :class:`EDAInputError` on negative or > 100 µS input (default). With False
        such samples are flagged ``FLAG_RANGE``, as the streaming detector does.
    params : EDAParams, optional
        Full settings; ``min_amplitude``, when given, overrides its field.

    Returns
    -------
    EDASignals
    """
    x = to_microsiemens(eda, unit, strict=strict)
    if x.ndim != 1:
        raise EDAInputError(f"eda must be 1-D (n_samples,), got shape {x.shape}")
    prm = _with_min_amp(params, min_amplitude)
    p = prm.vector(fs)
    y, scl, ph, fl, ev = _run(x, p, _new_state(p))
    return EDASignals(y, scl, ph, fl, _assemble(*_events_to_records(ev)))


def _with_min_amp(params: EDAParams | None, min_amplitude: float | None) -> EDAParams:
    prm = params or EDAParams()
    if min_amplitude is not None and min_amplitude != prm.min_amplitude:
        prm = EDAParams(**{**prm.__dict__, "min_amplitude": float(min_amplitude)})
    return prm


def detect_scr(
    eda: np.ndarray,
    fs: float,
    min_amplitude: float | None = None,
    unit: str = "uS",
    strict: bool = True,
    params: EDAParams | None = None,
) -> np.ndarray:
    """Score skin conductance responses with the causal streaming algorithm.

    Trough-to-peak scoring (Boucsein et al. 2012) on a 1 Hz low-passed signal with the
    local tonic drift removed from the slope; see :mod:`stimloop.dsp.eda_kernel` for the
    method. Identical to feeding the same samples to :class:`SCRDetector` in chunks of
    any size.

    Parameters
    ----------
    eda : array_like, shape (n,)
        Skin conductance in ``unit``.
    fs : float
        Sampling rate in Hz (4-2048).
    min_amplitude : float, optional
        Smallest SCR amplitude counted, µS; by default ``params.min_amplitude`` (0.01 µS,
        Ledalab).
    unit : {"uS", "umho", "kohm"}
        Unit of ``eda``; kΩ is converted as 1000 / R.
    strict : bool
        Raise :class:`EDAInputError` on negative or > 100 µS input.
    params : EDAParams, optional
        Full settings; ``min_amplitude``, when given, overrides its field.

    Returns
    -------
    ndarray (SCR_DTYPE)
        One row per SCR: ``onset`` and ``peak`` (absolute sample indices), ``amplitude``
        (µS, peak minus onset level), ``rise_time`` (s) and ``half_recovery`` (s from the
        peak to 50 % recovery; NaN where the next SCR began first or the record ended).
    """
    return decompose_eda(eda, fs, min_amplitude, unit, strict, params).scrs


class _TimeMap:
    """Map absolute sample indices to LSL time from the timestamps of recent chunks."""

    def __init__(self, fs: float, seconds: float) -> None:
        self.fs = fs
        self.size = max(16, int(np.ceil(seconds * fs)))
        self.buf = np.full(self.size, np.nan)
        self.n = 0  # index of the next sample

    def push(self, first: int, ts: np.ndarray | None, n: int) -> None:
        if ts is None:
            ts = np.full(n, np.nan)
        if n >= self.size:
            first, ts = first + n - self.size, ts[-self.size :]
            n = self.size
        pos = (first + np.arange(n)) % self.size
        self.buf[pos] = ts
        self.n = first + n

    def at(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = np.full(idx.shape, np.nan)
        if self.n == 0:
            return out
        inside = (idx >= self.n - self.size) & (idx < self.n)
        out[inside] = self.buf[idx[inside] % self.size]
        # Outside the buffer (reported onsets are shifted back by the filter delay and may
        # precede the first sample): extrapolate from the newest sample at the nominal rate.
        last = self.buf[(self.n - 1) % self.size]
        out[~inside] = last + (idx[~inside] - (self.n - 1)) / self.fs
        return out


class SCRDetector:
    """Real-time SCR detector and SCL/phasic split (one chunk at a time).

    Parameters
    ----------
    fs : float
        Sampling rate in Hz (4-2048).
    min_amplitude : float, optional
        Smallest SCR amplitude counted, µS; by default ``params.min_amplitude`` (0.01 µS,
        Ledalab).
    unit : {"uS", "umho", "kohm"}
        Unit of the incoming samples; kΩ is converted as 1000 / R.
    params : EDAParams, optional
        Full settings; ``min_amplitude``, when given, overrides its field.

    Notes
    -----
    :meth:`update` never raises on bad samples: NaN, negative or > 100 µS values and
    electrode-off runs are flagged per sample (:attr:`last_flags`), described once in
    :attr:`issues`, and scoring restarts cleanly on the first valid sample after them.
    An SCR is reported once, when its peak is confirmed from samples seen so far; its
    half-recovery, when seen later, is reported in :attr:`last_recoveries` and filled into
    :attr:`scrs`.
    """

    def __init__(
        self,
        fs: float,
        min_amplitude: float | None = None,
        unit: str = "uS",
        params: EDAParams | None = None,
    ) -> None:
        self.fs = _check_fs(fs)
        self.unit = unit
        _unit_key(unit)
        self.params = _with_min_amp(params, min_amplitude)
        self._p = self.params.vector(self.fs)
        self._state = _new_state(self._p)
        self._scrs: list[np.ndarray] = []
        self._all = np.zeros(0, dtype=SCR_EVENT_DTYPE)
        self._times = _TimeMap(self.fs, self.params.rise_time[1] + 60.0)
        self.issues: list[str] = []
        self._issue_kinds: set[int] = set()
        self.last_smoothed = np.zeros(0)
        self.last_scl = np.zeros(0)
        self.last_phasic = np.zeros(0)
        self.last_flags = np.zeros(0, dtype=np.uint8)
        self.last_recoveries = np.zeros(0, dtype=RECOVERY_DTYPE)
        # Compile (or load from the on-disk cache) now, so the real-time loop never does.
        self.warmup()

    def warmup(self) -> None:
        """Compile the kernel (cached on disk) without touching this detector's state.

        Called by the constructor; calling it again is cheap.
        """
        _run(np.full(8, 5.0), self._p, _new_state(self._p))

    @property
    def n_samples(self) -> int:
        """Samples consumed so far (absolute index of the next sample)."""
        return int(self._state[0][K.S_N])

    @property
    def n_rejected(self) -> dict[str, int]:
        """Rises not counted: ``{"artifact": n, "shape": n}``."""
        return {
            "artifact": int(self._state[0][K.S_N_REJ_ART]),
            "shape": int(self._state[0][K.S_N_REJ_SHAPE]),
        }

    @property
    def scrs(self) -> np.ndarray:
        """All SCRs so far (SCR_EVENT_DTYPE), half-recovery filled in where seen."""
        return self._all

    def update(self, chunk: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """Consume a chunk and return the SCRs confirmed in it.

        Parameters
        ----------
        chunk : array_like, shape (n,) or (n, 1)
            Samples in the detector's unit.
        timestamps : ndarray, shape (n,), optional
            LSL time of each sample in s; without it the ``*_t`` fields are NaN.

        Returns
        -------
        ndarray (SCR_EVENT_DTYPE)
            New SCRs: ``onset``/``peak`` absolute sample indices, ``amplitude`` µS,
            ``rise_time`` s, ``half_recovery`` s (NaN until seen), ``onset_t``/``peak_t``
            LSL s, ``confirmed`` (index of the sample that confirmed it).
        """
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1:
            raise EDAInputError(f"EDA chunk must be (n,) or (n, 1), got shape {x.shape}")
        first = self.n_samples
        ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)
        if ts is not None and ts.shape != x.shape:
            raise EDAInputError(f"timestamps shape {ts.shape} does not match chunk shape {x.shape}")
        x = to_microsiemens(x, self.unit, strict=False)
        self._times.push(first, ts, x.shape[0])
        y, scl, ph, fl, ev = _run(x, self._p, self._state)
        self.last_smoothed, self.last_scl, self.last_phasic, self.last_flags = y, scl, ph, fl
        self._note_issues(x, fl, first)
        scr_rows, half_rows = _events_to_records(ev)
        new = np.zeros(len(scr_rows), dtype=SCR_EVENT_DTYPE)
        if len(scr_rows):
            base = _assemble(scr_rows, np.zeros((0, K.N_EVENT_COLS)))
            for name in SCR_DTYPE.names:
                new[name] = base[name]
            new["onset_t"] = self._times.at(new["onset"])
            new["peak_t"] = self._times.at(new["peak"])
            new["confirmed"] = scr_rows[:, K.E_CONFIRM].astype(np.int64)
            self._all = np.concatenate([self._all, new])
        rec = np.zeros(len(half_rows), dtype=RECOVERY_DTYPE)
        if len(half_rows):
            ids = half_rows[:, K.E_ID].astype(np.int64)
            self._all["half_recovery"][ids] = half_rows[:, K.E_HALF]
            # Rows of this chunk's SCRs share the array above; copy the value into `new`.
            in_new = np.isin(self._all["confirmed"][ids], new["confirmed"])
            if in_new.any():
                new_pos = np.searchsorted(new["confirmed"], self._all["confirmed"][ids][in_new])
                new["half_recovery"][new_pos] = half_rows[in_new, K.E_HALF]
            rec["peak"] = self._all["peak"][ids]
            rec["half_recovery"] = half_rows[:, K.E_HALF]
            rec["seen"] = half_rows[:, K.E_CONFIRM].astype(np.int64)
            rec["seen_t"] = self._times.at(rec["seen"])
        self.last_recoveries = rec
        return new

    def _note_issues(self, x: np.ndarray, fl: np.ndarray, first: int) -> None:
        present = np.bitwise_or.reduce(fl) if fl.size else 0
        for bit, what in (
            (FLAG_NAN, "NaN samples"),
            (FLAG_RANGE, "conductance outside 0-100 µS"),
            (FLAG_OFF, f"electrode off (< {self.params.off_us:g} µS)"),
            (FLAG_MOTION, f"motion artifact (slope > {self.params.artifact_slope:g} µS/s)"),
        ):
            if present & bit and bit not in self._issue_kinds:
                self._issue_kinds.add(bit)
                i = int(np.flatnonzero(fl & bit)[0])
                msg = f"sample {first + i}: {what}, value {x[i]:.4g} µS"
                if bit == FLAG_RANGE and np.isfinite(x[i]) and x[i] > MAX_US:
                    msg += " (if the device sends skin resistance in kΩ, use unit='kohm')"
                self.issues.append(msg + "; flagged and skipped, scoring restarts after")


def event_related_scr(
    scrs: np.ndarray,
    events: Sequence[int] | np.ndarray,
    fs: float,
    window: tuple[float, float] = (1.0, 4.0),
) -> np.ndarray:
    """First SCR whose onset lies in a latency window after each event.

    The 1-4 s onset window is the usual definition of a stimulus-elicited SCR
    (Boucsein et al. 2012; Dawson, Schell & Filion 2017).

    Parameters
    ----------
    scrs : ndarray with fields onset, peak, amplitude, rise_time
        SCRs from :func:`detect_scr` or :attr:`SCRDetector.scrs`.
    events : array_like of int
        Event onsets as absolute sample indices.
    fs : float
        Sampling rate in Hz.
    window : (float, float)
        Onset latency window after the event, s (inclusive).

    Returns
    -------
    ndarray (ER_DTYPE)
        One row per event; ``responded`` False means "no response".
    """
    fs = _check_fs(fs)
    ev = np.asarray(events, dtype=np.int64).ravel()
    out = np.zeros(len(ev), dtype=ER_DTYPE)
    out["event"] = ev
    out["onset"] = -1
    out["peak"] = -1
    out["latency"] = np.nan
    out["amplitude"] = np.nan
    out["rise_time"] = np.nan
    if len(scrs) == 0 or len(ev) == 0:
        return out
    order = np.argsort(scrs["onset"], kind="stable")
    on = scrs["onset"][order]
    lo = ev + int(np.ceil(window[0] * fs - 1e-9))
    hi = ev + int(np.floor(window[1] * fs + 1e-9))
    k = np.searchsorted(on, lo, side="left")
    ok = (k < len(on)) & (on[np.minimum(k, len(on) - 1)] <= hi)
    sel = order[k[ok]]
    out["responded"][ok] = True
    out["onset"][ok] = scrs["onset"][sel]
    out["peak"][ok] = scrs["peak"][sel]
    out["latency"][ok] = (scrs["onset"][sel] - ev[ok]) / fs
    out["amplitude"][ok] = scrs["amplitude"][sel]
    out["rise_time"][ok] = scrs["rise_time"][sel]
    return out


class EventRelatedSCR:
    """Streaming event-related SCRs: resolve each event once its answer is certain.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    window : (float, float)
        Onset latency window after the event, s.
    params : EDAParams, optional
        The detector's settings, used to know how long a response can take to be confirmed.
    """

    def __init__(
        self, fs: float, window: tuple[float, float] = (1.0, 4.0), params: EDAParams | None = None
    ) -> None:
        self.fs = _check_fs(fs)
        self.window = (float(window[0]), float(window[1]))
        prm = params or EDAParams()
        # An SCR with onset at the window's end is confirmed at most rise_hi + plateau s
        # later (plus the filter delay that onsets are shifted back by, < 1 s).
        self._wait = int(np.ceil((self.window[1] + prm.rise_time[1] + prm.plateau_s + 1.0) * fs))
        self._pending: list[int] = []
        self._scrs = np.zeros(0, dtype=SCR_DTYPE)

    def add_event(self, index: int) -> None:
        """Register an event at absolute sample index ``index``."""
        self._pending.append(int(index))

    def update(self, new_scrs: np.ndarray, n_seen: int) -> np.ndarray:
        """Add newly confirmed SCRs and return the events whose answer is now final.

        Parameters
        ----------
        new_scrs : ndarray with SCR fields
            SCRs returned by :meth:`SCRDetector.update`.
        n_seen : int
            Samples the detector has consumed (:attr:`SCRDetector.n_samples`).

        Returns
        -------
        ndarray (ER_DTYPE)
            Resolved events (responded, or no response).
        """
        if len(new_scrs):
            add = np.zeros(len(new_scrs), dtype=SCR_DTYPE)
            for name in SCR_DTYPE.names:
                add[name] = new_scrs[name]
            self._scrs = np.concatenate([self._scrs, add])
        if not self._pending:
            return np.zeros(0, dtype=ER_DTYPE)
        res = event_related_scr(self._scrs, self._pending, self.fs, self.window)
        done = res["responded"] | (res["event"] + self._wait <= n_seen)
        self._pending = [int(e) for e in res["event"][~done]]
        # Keep only SCRs that can still answer a pending event.
        if self._pending:
            keep = self._scrs["onset"] >= min(self._pending)
            self._scrs = self._scrs[keep]
        else:
            self._scrs = self._scrs[:0]
        return res[done]


def scr_rate(
    scrs: np.ndarray,
    at: np.ndarray | int,
    fs: float,
    window_s: float = 60.0,
    events: np.ndarray | None = None,
    event_window: tuple[float, float] = (1.0, 4.0),
) -> np.ndarray:
    """Rolling rate of non-specific SCRs per minute.

    Non-specific SCRs are those not attributable to a stimulus (Boucsein et al. 2012):
    with ``events`` given, SCRs whose onset lies in an event's latency window are
    excluded.

    Parameters
    ----------
    scrs : ndarray with field onset
        SCRs (absolute sample indices).
    at : int or array_like of int
        Sample index (or indices) at which to evaluate; the window is ``(at - window, at]``.
    fs : float
        Sampling rate in Hz.
    window_s : float
        Window length, s.
    events : array_like of int, optional
        Event onsets (absolute sample indices).
    event_window : (float, float)
        Latency window of an elicited SCR, s.

    Returns
    -------
    ndarray of float
        SCRs per minute at each ``at`` (a full window is assumed; early values are low).
    """
    fs = _check_fs(fs)
    on = np.sort(np.asarray(scrs["onset"], dtype=np.int64))
    if events is not None and len(on):
        er = event_related_scr(np.sort(scrs, order="onset"), events, fs, event_window)
        on = np.setdiff1d(on, er["onset"][er["responded"]])
    at_arr = np.atleast_1d(np.asarray(at, dtype=np.int64))
    w = round(window_s * fs)
    count = np.searchsorted(on, at_arr, side="right") - np.searchsorted(
        on, at_arr - w, side="right"
    )
    rate = count * 60.0 / window_s
    return rate
