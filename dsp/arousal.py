"""The window-of-tolerance arousal index of an exposure session, and its band.

- :func:`calibrate`: the client's rest statistics;
- :func:`arousal_timeline` (offline) / :class:`ArousalMonitor` (live): the causal arousal
  index from SCL, SCR rate and HR;
- :func:`band_states` / :class:`BandStateMachine`: its hypo / within / hyper band with
  hysteresis and a minimum dwell, and the alert when the client has been above the
  window for longer than a set time.

The arousal index (``docs/exposure.md`` has the full derivation)::

    z_SCL(t)  = (SCL(t)  - mean_rest(SCL))  / max(sd_rest(SCL),  floor_SCL)
    z_rate(t) = (rate(t) - mean_rest(rate)) / max(sd_rest(rate), floor_rate)
    z_HR(t)   = (HR(t)   - mean_rest(HR))   / max(sd_rest(HR),   floor_HR)
    A_raw(t)  = sum_c w_c z_c(t) / sum_c w_c       (over the channels valid at t)
    A(t)      = A(t-) + (1 - exp(-dt / tau)) (A_raw(t) - A(t-))   (causal EMA)

Each channel is standardised within the individual against the client's own calibration
rest period, the within-subject z-score of Ben-Shakhar (1985), "Standardization within
individuals: a simple method to neutralize individual differences in skin conductance",
Psychophysiology 22:292-299. SCL and the frequency of SCRs are the electrodermal indices
of tonic arousal (Boucsein 2012, *Electrodermal Activity*, 2nd ed.; Dawson, Schell &
Filion 2017, in *Handbook of Psychophysiology*, 4th ed.), heart rate adds the cardiac
side of sympathetic activation (Kreibig 2010, "Autonomic nervous system activity in
emotion: a review", Biol Psychol 84:394-421). The standardised channels are combined with
unit weights, the robust default when no criterion is available to fit weights (Dawes
1979, "The robust beauty of improper linear models", Am Psychol 34:571-582). The SD
floors keep a very still rest from inflating the index; they are engineering choices,
not published values. The bands are the "window of tolerance" (Siegel 1999, *The
Developing Mind*; Ogden, Minton & Pain 2006, *Trauma and the Body*), set per client.

Causality: the index at ``t`` uses SCL samples up to ``t``, SCRs *confirmed* by ``t``
(``confirmed_t <= t``, not merely with an onset before it), and the newest HR sample at or
before ``t``. The band state uses index samples up to ``t``. Feeding the streams in
chunks of any size gives the same output as one pass (explicit state, numba kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from stimloop.dsp.exposure import (
    UNKNOWN,
    EDALevel,
    ExposureInputError,
    SCRTable,
    Series,
    check_times,
    check_values,
    median_step,
)


@dataclass(frozen=True)
class ArousalParams:
    """Settings of the arousal index.

    Attributes
    ----------
    scr_window_s : float
        Window of the SCR rate, s (SCRs with onset in (t - window, t], confirmed by t).
    smooth_s : float
        Time constant of the causal EMA on the index, s (0 = none).
    weights : (float, float, float)
        Weights of z_SCL, z_rate, z_HR (unit weights by default; Dawes 1979).
    sd_floor : (float, float, float)
        Smallest SDs used for SCL (µS), SCR rate (per min) and HR (bpm).
    hr_max_age_s : float
        An HR sample older than this at time t is not used (HR missing at t), s.
    min_rest_s : float
        Shortest calibration rest, s.
    level : {"sc", "scl"}
        Which EDA level the first channel uses: ``"sc"``, the skin conductance level as
        the mean conductance (the EDA stage's SCL + phasic, i.e. its 1 Hz-smoothed signal;
        the usual "SCL" of applied work and of biofeedback), or ``"scl"``, the stage's
        tonic level alone (its causal lower envelope; it follows a rise with many SCRs
        some 10 s late, ``docs/exposure.md``).
    """

    scr_window_s: float = 30.0
    smooth_s: float = 2.0
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    sd_floor: tuple[float, float, float] = (0.1, 1.0, 1.5)
    hr_max_age_s: float = 2.0
    min_rest_s: float = 60.0
    level: str = "sc"

    def __post_init__(self) -> None:
        if self.level not in ("sc", "scl"):
            raise ExposureInputError(f"level must be 'sc' or 'scl', got {self.level!r}")
        if not (math.isfinite(self.scr_window_s) and self.scr_window_s > 0):
            raise ExposureInputError(f"scr_window_s must be > 0 s, got {self.scr_window_s!r}")
        if not (math.isfinite(self.smooth_s) and self.smooth_s >= 0):
            raise ExposureInputError(f"smooth_s must be >= 0 s, got {self.smooth_s!r}")
        if len(self.weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in self.weights):
            raise ExposureInputError(f"weights must be 3 numbers >= 0, got {self.weights!r}")
        if self.weights[0] <= 0:
            raise ExposureInputError("the SCL weight must be > 0 (the index needs the EDA)")
        if len(self.sd_floor) != 3 or not all(math.isfinite(f) and f > 0 for f in self.sd_floor):
            raise ExposureInputError(f"sd_floor must be 3 numbers > 0, got {self.sd_floor!r}")
        if not self.hr_max_age_s > 0:
            raise ExposureInputError(f"hr_max_age_s must be > 0 s, got {self.hr_max_age_s!r}")


@dataclass(frozen=True)
class Calibration:
    """The client's rest statistics (means and the SDs used, floors applied).

    Attributes
    ----------
    start_t, end_t : float
        The rest period, LSL s.
    scl_mean_us, scl_sd_us : float
    rate_mean_per_min, rate_sd_per_min : float
    hr_mean_bpm, hr_sd_bpm : float
        NaN when the session has no ECG (the index then uses the EDA alone).
    raw_sd : (float, float, float)
        The measured SDs before the floors.
    """

    start_t: float
    end_t: float
    scl_mean_us: float
    scl_sd_us: float
    rate_mean_per_min: float
    rate_sd_per_min: float
    hr_mean_bpm: float
    hr_sd_bpm: float
    raw_sd: tuple[float, float, float]


def _level_us(level: EDALevel, p: ArousalParams) -> np.ndarray:
    if p.level == "scl":
        return level.scl_us
    if level.phasic_us is None:
        raise ExposureInputError(
            "the arousal index uses SCL + phasic (ArousalParams.level='sc'), but the EDA level "
            "has no phasic_us; pass it, or choose level='scl'"
        )
    return level.scl_us + level.phasic_us


def scr_rate_at(scrs: SCRTable, t: np.ndarray, window_s: float) -> np.ndarray:
    """Causal SCR rate per minute at times ``t``.

    Counts SCRs with onset in ``(t - window_s, t]`` that were confirmed by ``t``: an SCR
    counts over ``[max(confirmed_t, onset_t), onset_t + window_s)``.

    Parameters
    ----------
    scrs : SCRTable
        With finite ``confirmed_t``.
    t : ndarray
        LSL s.
    window_s : float
        s.

    Returns
    -------
    ndarray
        SCRs per minute (a full window is assumed: early values are low).
    """
    if len(scrs) and not np.all(np.isfinite(scrs.confirmed_t)):
        raise ExposureInputError(
            "the causal SCR rate needs confirmed_t for every SCR (when it became known); "
            "got NaN. Use the detector's SCRs (SCRTable.from_events), not offline onsets"
        )
    return _rate(scrs.onset_t, scrs.confirmed_t, np.asarray(t, dtype=np.float64), window_s)


def _rate(onset: np.ndarray, confirmed: np.ndarray, t: np.ndarray, window_s: float) -> np.ndarray:
    # Each SCR counts over [max(confirmed, onset), onset + window): the number counting at
    # t is (intervals started by t) - (intervals ended by t).
    start = np.sort(np.maximum(confirmed, onset))
    stop = np.sort(onset + window_s)
    n = np.searchsorted(start, t, side="right") - np.searchsorted(stop, t, side="right")
    return np.maximum(n, 0) * 60.0 / window_s


def _held(hr_t: np.ndarray, hr_v: np.ndarray, t: np.ndarray, max_age: float) -> np.ndarray:
    """Newest HR sample at or before each ``t`` (NaN if none, older than max_age, or NaN)."""
    k = np.searchsorted(hr_t, t, side="right") - 1
    out = np.full(t.shape, np.nan)
    ok = k >= 0
    kk = np.maximum(k, 0)
    ok &= (t - hr_t[kk] if hr_t.size else np.full(t.shape, np.inf)) <= max_age
    if hr_t.size:
        out[ok] = hr_v[kk[ok]]
    return out


def calibrate(
    level: EDALevel,
    scrs: SCRTable,
    hr: Series | None,
    start_t: float,
    end_t: float,
    params: ArousalParams | None = None,
) -> Calibration:
    """Rest statistics of each channel over the calibration rest ``[start_t, end_t)``.

    Means and SDs of the SCL, the causal SCR rate (only at times whose rate window lies
    after the first EDA sample) and the held HR, over their valid samples in the rest.

    Raises
    ------
    ExposureInputError
        Rest shorter than ``min_rest_s``; SCL valid for less than 80 % of it; no SCR-rate
        sample with a full window in it.
    """
    p = params or ArousalParams()
    a, b = float(start_t), float(end_t)
    if not (math.isfinite(a) and math.isfinite(b) and b - a >= p.min_rest_s):
        raise ExposureInputError(
            f"calibration rest {a!r}-{b!r} s is shorter than {p.min_rest_s:g} s or not finite"
        )
    seg = Series(level.t, _level_us(level, p)).between(a, b)
    cov = (
        np.count_nonzero(np.isfinite(seg.values)) * median_step(level.t) / (b - a)
        if len(seg) > 1
        else 0
    )
    if cov < 0.8:
        raise ExposureInputError(
            f"calibration rest {a:.3f}-{b:.3f} s has valid SCL for {100 * cov:.0f} % of its "
            "length; at least 80 % is needed"
        )
    scl = seg.values[np.isfinite(seg.values)]
    t_full = seg.t[seg.t - p.scr_window_s >= level.t[0]]
    if t_full.size < 2:
        raise ExposureInputError(
            f"calibration rest {a:.3f}-{b:.3f} s ends before the SCR rate has a full "
            f"{p.scr_window_s:g} s window of data; start the rest later or make it longer"
        )
    rate = scr_rate_at(scrs, t_full, p.scr_window_s)
    hr_mean = hr_sd = raw_hr = math.nan
    if hr is not None:
        h = _held(hr.t, hr.values, seg.t, p.hr_max_age_s)
        h = h[np.isfinite(h)]
        if h.size >= 0.5 * seg.t.size and h.size >= 2:
            hr_mean, raw_hr = float(np.mean(h)), float(np.std(h, ddof=1))
            hr_sd = max(raw_hr, p.sd_floor[2])
    raw_scl = float(np.std(scl, ddof=1))
    raw_rate = float(np.std(rate, ddof=1))
    return Calibration(
        a,
        b,
        float(np.mean(scl)),
        max(raw_scl, p.sd_floor[0]),
        float(np.mean(rate)),
        max(raw_rate, p.sd_floor[1]),
        hr_mean,
        hr_sd,
        (raw_scl, raw_rate, raw_hr),
    )


@njit(cache=True)
def _ema_kernel(t, x, tau, st, out):  # pragma: no cover - compiled
    # st: [last value (NaN = restart), last t]
    for i in range(x.shape[0]):
        xi = x[i]
        if not np.isfinite(xi):
            st[0] = np.nan
            out[i] = np.nan
        elif not np.isfinite(st[0]) or tau <= 0.0:
            st[0] = xi
            out[i] = xi
        else:
            a = 1.0 - np.exp(-(t[i] - st[1]) / tau)
            st[0] = st[0] + a * (xi - st[0])
            out[i] = st[0]
        st[1] = t[i]


def _composite(
    scl: np.ndarray, rate: np.ndarray, hr: np.ndarray, cal: Calibration, p: ArousalParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    z_scl = (scl - cal.scl_mean_us) / cal.scl_sd_us
    z_rate = np.where(
        np.isfinite(scl), (rate - cal.rate_mean_per_min) / cal.rate_sd_per_min, np.nan
    )
    if math.isfinite(cal.hr_sd_bpm):
        z_hr = (hr - cal.hr_mean_bpm) / cal.hr_sd_bpm
    else:
        z_hr = np.full(scl.shape, np.nan)
    w = p.weights
    use_hr = np.isfinite(z_hr) & (w[2] > 0)
    num = w[0] * z_scl + w[1] * z_rate + np.where(use_hr, w[2] * np.nan_to_num(z_hr), 0.0)
    den = w[0] + w[1] + np.where(use_hr, w[2], 0.0)
    return num / den, z_scl, z_rate, z_hr


#: Per-sample output of the arousal index (one row per EDA level sample).
AROUSAL_DTYPE = np.dtype(
    [
        ("t", np.float64),
        ("index", np.float64),
        ("raw", np.float64),
        ("z_scl", np.float64),
        ("z_rate", np.float64),
        ("z_hr", np.float64),
        ("state", np.int8),
        ("alert", np.bool_),
    ]
)


@dataclass(frozen=True)
class BandParams:
    """The window of tolerance on the arousal index, and how the band may change.

    Attributes
    ----------
    low, high : float
        Band edges in index units (z): below ``low`` is hypo, above ``high`` hyper.
    hysteresis : float
        Entering a higher band needs the index above its edge + hysteresis, a lower one
        below its edge - hysteresis.
    min_dwell_s : float
        A new band is taken only after the index has stayed in it for this long, s.
    alert_after_s : float
        Alert once the band is ``HYPER`` and the index has been above the window for this
        long, s: counted from when it went above ``high``, and not interrupted unless it
        fell below ``high - hysteresis``. Must be >= ``min_dwell_s``.
    """

    low: float = 1.0
    high: float = 4.0
    hysteresis: float = 0.25
    min_dwell_s: float = 3.0
    alert_after_s: float = 20.0

    def __post_init__(self) -> None:
        vals = (self.low, self.high, self.hysteresis, self.min_dwell_s, self.alert_after_s)
        if not all(math.isfinite(v) for v in vals):
            raise ExposureInputError(f"band settings must be finite, got {vals!r}")
        if self.hysteresis < 0 or self.min_dwell_s < 0:
            raise ExposureInputError(
                f"hysteresis ({self.hysteresis!r}) and min_dwell_s ({self.min_dwell_s!r} s) "
                "must be >= 0"
            )
        if not self.high - self.low > 2 * self.hysteresis:
            raise ExposureInputError(
                f"band low={self.low!r} and high={self.high!r} must be more than twice the "
                f"hysteresis ({self.hysteresis!r}) apart"
            )
        if self.alert_after_s < self.min_dwell_s:
            raise ExposureInputError(
                f"alert_after_s ({self.alert_after_s!r} s) must be >= min_dwell_s "
                f"({self.min_dwell_s!r} s)"
            )

    def vector(self) -> np.ndarray:
        """Kernel parameter vector."""
        return np.array(
            [self.low, self.high, self.hysteresis, self.min_dwell_s, self.alert_after_s],
            dtype=np.float64,
        )


_NO_PENDING = -9.0


def _new_band_state() -> np.ndarray:
    # [state, pending state, pending since, above the window since, alert on, last t]
    return np.array([UNKNOWN, _NO_PENDING, np.nan, np.nan, 0.0, -np.inf], dtype=np.float64)


@njit(cache=True)
def _band_of(x, lo, hi):  # pragma: no cover - compiled
    if x > hi:
        return 2
    if x < lo:
        return 0
    return 1


@njit(cache=True)
def _band_kernel(t, x, p, st, out_s, out_a):  # pragma: no cover - compiled
    lo, hi, h, dwell, alert_after = p[0], p[1], p[2], p[3], p[4]
    for i in range(x.shape[0]):
        ti = t[i]
        xi = x[i]
        s = int(st[0])
        if not np.isfinite(xi):
            st[0] = -1.0
            st[1] = -9.0
            st[3] = np.nan
            st[4] = 0.0
        else:
            # Above the window: entered when the index exceeds `high`, left when it falls
            # below `high - hysteresis` (the alert's clock; the band has its own rules).
            if np.isnan(st[3]):
                if xi > hi:
                    st[3] = ti
            elif xi < hi - h:
                st[3] = np.nan
            if s < 0:
                # (Re)start: take the plain band at once; there is nothing to flicker from.
                st[0] = _band_of(xi, lo, hi)
                st[1] = -9.0
            else:
                if s == 0:
                    cand = 2 if xi > hi + h else (1 if xi > lo + h else 0)
                elif s == 1:
                    cand = 2 if xi > hi + h else (0 if xi < lo - h else 1)
                else:
                    cand = 0 if xi < lo - h else (1 if xi < hi - h else 2)
                if cand == s:
                    st[1] = -9.0
                else:
                    if cand != int(st[1]):
                        st[1] = cand
                        st[2] = ti
                    if ti - st[2] >= dwell:
                        st[0] = cand
                        st[1] = -9.0
            if int(st[0]) != 2:
                st[4] = 0.0
            elif st[4] == 0.0 and np.isfinite(st[3]) and ti - st[3] >= alert_after:
                st[4] = 1.0
        st[5] = ti
        out_s[i] = int(st[0])
        out_a[i] = st[4] != 0.0


@dataclass(frozen=True)
class BandEvents:
    """What a run of the band state machine produced.

    Attributes
    ----------
    state : ndarray of int8
        Band per sample (``UNKNOWN``, ``HYPO``, ``WITHIN``, ``HYPER``).
    alert : ndarray of bool
        Alert active per sample (above the window for longer than ``alert_after_s``).
    changes : ndarray, shape (k, 3)
        (time s, from state, to state) of every change, unknown included.
    alerts : ndarray, shape (m,)
        LSL times at which an alert started, s.
    """

    state: np.ndarray
    alert: np.ndarray
    changes: np.ndarray
    alerts: np.ndarray


class BandStateMachine:
    """Hypo / within / hyper band of the arousal index, with hysteresis and dwell.

    Causal, and chunk-invariant: the kernel keeps its whole memory in an explicit state
    vector, so any split of the input gives the same output.

    Rules (``docs/exposure.md``): the first valid sample (and the first after an invalid
    one) takes its plain band; afterwards a new band needs the index past the edge by
    ``hysteresis`` for ``min_dwell_s`` without interruption (any sample back in the
    current band restarts the wait). NaN (EDA lost) gives ``UNKNOWN`` and clears the
    alert. The alert starts once the state is ``HYPER`` and the index has been above the
    window for ``alert_after_s``: since it went above ``high``, without falling below
    ``high - hysteresis``. It stays on until the state leaves ``HYPER``. The dwell thus
    delays the band, never the alert.

    Parameters
    ----------
    params : BandParams, optional
    """

    def __init__(self, params: BandParams | None = None) -> None:
        self.params = params or BandParams()
        self._p = self.params.vector()
        self._st = _new_band_state()
        self.warmup()

    def warmup(self) -> None:
        """Compile the kernel (cached on disk) without touching this machine's state."""
        t = np.arange(4, dtype=np.float64)
        _band_kernel(
            t, t.copy(), self._p, _new_band_state(), np.zeros(4, np.int8), np.zeros(4, np.bool_)
        )

    @property
    def state(self) -> int:
        """The current band."""
        return int(self._st[0])

    def update(self, t: np.ndarray, index: np.ndarray) -> BandEvents:
        """Consume index samples (LSL s, index units; NaN = no index)."""
        tt = check_times(t, "arousal index")
        x = check_values(index, tt.size, "arousal index")
        if tt.size and tt[0] < self._st[5]:
            raise ExposureInputError(
                f"arousal index time {float(tt[0])!r} s comes before the last one seen "
                f"({self._st[5]!r} s)"
            )
        prev_s, prev_a = int(self._st[0]), bool(self._st[4])
        out_s = np.empty(tt.size, np.int8)
        out_a = np.empty(tt.size, np.bool_)
        _band_kernel(tt, x, self._p, self._st, out_s, out_a)
        s_all = np.concatenate([[prev_s], out_s.astype(np.int64)])
        k = np.flatnonzero(np.diff(s_all) != 0)
        changes = np.column_stack([tt[k], s_all[k], s_all[k + 1]]).astype(np.float64)
        a_all = np.concatenate([[prev_a], out_a])
        alerts = tt[np.flatnonzero(~a_all[:-1] & a_all[1:])]
        return BandEvents(out_s, out_a, changes.reshape(-1, 3), alerts)


def band_states(t: np.ndarray, index: np.ndarray, params: BandParams | None = None) -> BandEvents:
    """Band states of a whole index series (see :class:`BandStateMachine`)."""
    return BandStateMachine(params).update(t, index)


class ArousalMonitor:
    """The arousal index and its band, live, one batch of samples at a time.

    Feed SCRs as they are confirmed, HR samples as they come and EDA level samples;
    :meth:`update` returns the index for every level sample whose inputs are complete.
    A level sample at ``t`` waits until HR at or after ``t`` has arrived (the index uses
    the newest HR at or before ``t``), or until the EDA is ``hr_wait_s`` further on (the
    ECG stalled: HR is then missing at ``t``). Its output equals
    :func:`arousal_timeline` on the whole recording whenever HR never lags that much.

    Parameters
    ----------
    calibration : Calibration
        From :func:`calibrate`.
    params : ArousalParams, optional
    bands : BandParams, optional
    use_hr : bool, optional
        Default: whether the calibration has HR.
    hr_wait_s : float
        Longest wait for lagging HR, s of EDA time.

    Notes
    -----
    SCRs must be added no later than the level samples up to their ``confirmed_t``
    (the EDA stage makes both from the same chunk).
    """

    def __init__(
        self,
        calibration: Calibration,
        params: ArousalParams | None = None,
        bands: BandParams | None = None,
        use_hr: bool | None = None,
        hr_wait_s: float = 2.0,
    ) -> None:
        self.cal = calibration
        self.params = params or ArousalParams()
        self.bands = BandStateMachine(bands)
        self.use_hr = math.isfinite(calibration.hr_sd_bpm) if use_hr is None else bool(use_hr)
        self.hr_wait_s = float(hr_wait_s)
        self._ema = np.array([np.nan, -np.inf])
        self._scr_on = np.zeros(0)
        self._scr_conf = np.zeros(0)
        self._hr_t = np.zeros(0)
        self._hr_v = np.zeros(0)
        self._q_t = np.zeros(0)
        self._q_scl = np.zeros(0)
        self._last_eda = -math.inf
        self._last_hr = -math.inf
        out = np.zeros(4)
        _ema_kernel(np.arange(4.0), np.ones(4), 1.0, np.array([np.nan, -np.inf]), out)

    def add_scrs(self, scrs: SCRTable) -> None:
        """Newly confirmed SCRs (``confirmed_t`` required)."""
        if len(scrs):
            if not np.all(np.isfinite(scrs.confirmed_t)):
                raise ExposureInputError("SCRs for the arousal index need a finite confirmed_t")
            self._scr_on = np.concatenate([self._scr_on, scrs.onset_t])
            self._scr_conf = np.concatenate([self._scr_conf, scrs.confirmed_t])

    def add_hr(self, hr: Series) -> None:
        """HR samples, bpm (in time order)."""
        if len(hr):
            if hr.t[0] < self._last_hr:
                raise ExposureInputError(
                    f"HR sample at {float(hr.t[0])!r} s comes before the last one "
                    f"({self._last_hr!r} s)"
                )
            self._hr_t = np.concatenate([self._hr_t, hr.t])
            self._hr_v = np.concatenate([self._hr_v, hr.values])
            self._last_hr = float(hr.t[-1])

    def update(self, level: EDALevel) -> np.ndarray:
        """Add EDA level samples and return the index rows now computable (AROUSAL_DTYPE)."""
        tt = level.t
        v = _level_us(level, self.params)
        if tt.size:
            if tt[0] < self._last_eda:
                raise ExposureInputError(
                    f"EDA level sample at {float(tt[0])!r} s comes before the last one "
                    f"({self._last_eda!r} s)"
                )
            self._q_t = np.concatenate([self._q_t, tt])
            self._q_scl = np.concatenate([self._q_scl, v])
            self._last_eda = float(tt[-1])
        if not self.use_hr:
            n = self._q_t.size
        else:
            ready = (self._q_t <= self._last_hr) | (self._q_t <= self._last_eda - self.hr_wait_s)
            n = int(np.argmin(ready)) if not ready.all() else ready.size
        return self._emit(n)

    def flush(self) -> np.ndarray:
        """Emit every waiting sample with what is known (end of the session)."""
        return self._emit(self._q_t.size)

    def _emit(self, n: int) -> np.ndarray:
        t, scl = self._q_t[:n], self._q_scl[:n]
        self._q_t, self._q_scl = self._q_t[n:], self._q_scl[n:]
        hr = _held(self._hr_t, self._hr_v, t, self.params.hr_max_age_s)
        rate = _rate(self._scr_on, self._scr_conf, t, self.params.scr_window_s)
        out = _index_rows(t, scl, rate, hr, self.cal, self.params, self._ema)
        ev = self.bands.update(t, out["index"])
        out["state"], out["alert"] = ev.state, ev.alert
        if n:
            # Keep only what later samples can still use.
            cut = t[-1] - self.params.scr_window_s
            keep = self._scr_on > cut
            self._scr_on, self._scr_conf = self._scr_on[keep], self._scr_conf[keep]
            k = max(0, int(np.searchsorted(self._hr_t, t[-1], side="right")) - 1)
            self._hr_t, self._hr_v = self._hr_t[k:], self._hr_v[k:]
        return out


def _index_rows(
    t: np.ndarray,
    scl: np.ndarray,
    rate: np.ndarray,
    hr: np.ndarray,
    cal: Calibration,
    p: ArousalParams,
    ema_state: np.ndarray,
) -> np.ndarray:
    raw, z_scl, z_rate, z_hr = _composite(scl, rate, hr, cal, p)
    out = np.zeros(t.size, dtype=AROUSAL_DTYPE)
    out["t"], out["raw"], out["z_scl"], out["z_rate"], out["z_hr"] = t, raw, z_scl, z_rate, z_hr
    sm = np.empty(t.size)
    _ema_kernel(t, np.ascontiguousarray(raw), float(p.smooth_s), ema_state, sm)
    out["index"] = sm
    return out


def arousal_timeline(
    level: EDALevel,
    scrs: SCRTable,
    hr: Series | None,
    calibration: Calibration,
    params: ArousalParams | None = None,
    bands: BandParams | None = None,
) -> np.ndarray:
    """The arousal index and its band over a whole recording (offline = live).

    Parameters
    ----------
    level : EDALevel
        SCL per sample (the index is computed at these times).
    scrs : SCRTable
        All SCRs with ``confirmed_t``.
    hr : Series or None
        HR in bpm; None = no ECG (index from the EDA alone).
    calibration : Calibration
    params : ArousalParams, optional
    bands : BandParams, optional

    Returns
    -------
    ndarray (AROUSAL_DTYPE)
        Per level sample: ``index`` (smoothed), ``raw``, ``z_scl``, ``z_rate``, ``z_hr``
        (NaN when HR is missing), ``state``, ``alert``.
    """
    p = params or ArousalParams()
    if hr is None or not math.isfinite(calibration.hr_sd_bpm):
        h = np.full(len(level), np.nan)
    else:
        h = _held(hr.t, hr.values, level.t, p.hr_max_age_s)
    rate = scr_rate_at(scrs, level.t, p.scr_window_s)
    lv = _level_us(level, p)
    out = _index_rows(level.t, lv, rate, h, calibration, p, np.array([np.nan, -np.inf]))
    ev = band_states(level.t, out["index"], bands)
    out["state"], out["alert"] = ev.state, ev.alert
    return out
