"""Exposure sessions: per-exercise physiology, evoked SCRs to cues, habituation.

Pure computation on arrays of LSL times (s) and values, the same code live and offline:

- :func:`exercise_physiology` / :func:`exercise_figures`: per exercise, the SCR count,
  rate (per min) and amplitude sum; the SCL change from the pre-exercise baseline; HR
  change and peak; the evoked SCR to each cue inside it; the arousal index and band
  occupancy. :class:`ExerciseTracker` computes the same figures live, with the same
  function, once an exercise's data are complete.
- :func:`cue_responses` / :class:`CueResponses`: the evoked SCR to each cue, from the
  project's event-related SCR (:func:`stimloop.dsp.eda.event_related_scr`, first SCR with
  onset 1-4 s after the event; Boucsein et al. 2012) on a 1 ms grid of LSL time.
- :func:`habituation_curve`, :func:`expectancy_violation`, :func:`compare_sessions`: across
  exercises and sessions.
- The inputs (:class:`Series`, :class:`EDALevel`, :class:`SCRTable`) and the band states
  shared with :mod:`stimloop.dsp.arousal` (the window-of-tolerance index).

An exercise whose EDA was lost (NaN) or flat has NaN EDA figures and says why; a session
without ECG has NaN HR figures: a figure is either measured or missing, never a silent 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d
from scipy.stats import spearmanr

from stimloop.dsp.eda import (
    SCR_DTYPE,
    EDAParams,
    EventRelatedSCR,
    SCRDetector,
    event_related_scr,
)
from stimloop.dsp.errors import DSPError
from stimloop.dsp.heart import HeartMonitor

# Band states (int8 per sample).
UNKNOWN = -1  #: no valid index (EDA lost, or before calibration)
HYPO = 0  #: below the window of tolerance
WITHIN = 1  #: inside it
HYPER = 2  #: above it
BAND_NAMES = {UNKNOWN: "unknown", HYPO: "hypo", WITHIN: "within", HYPER: "hyper"}

#: Grid on which LSL times are matched to cues (1 ms), so the project's index-based
#: event-related SCR serves time-stamped streams (as ``EDAStage.score`` does).
_CUE_GRID_HZ = 1000.0

#: One row per cue: LSL time (s); 1-based exercise number (0 = outside any); whether the
#: EDA was valid over its response window; the event-related SCR (responded, latency s,
#: amplitude µS, rise time s, onset LSL s; NaN when there was no response).
CUE_DTYPE = np.dtype(
    [
        ("t", np.float64),
        ("exercise", np.int64),
        ("valid", np.bool_),
        ("responded", np.bool_),
        ("latency_s", np.float64),
        ("amplitude_us", np.float64),
        ("rise_time_s", np.float64),
        ("onset_t", np.float64),
    ]
)


class ExposureInputError(DSPError):
    """Input an exposure computation cannot use (names what, the value, what is allowed)."""


# ============================================================================ inputs
def check_times(t: np.ndarray, what: str) -> np.ndarray:
    """``t`` as contiguous float64, checked 1-D, finite and non-decreasing (LSL s).

    Raises :class:`ExposureInputError` naming ``what``, the first bad value and where.
    """
    arr = np.ascontiguousarray(np.asarray(t, dtype=np.float64))
    if arr.ndim != 1:
        raise ExposureInputError(f"{what} times must be 1-D, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ExposureInputError(f"{what} time {float(arr[i])!r} at position {i} is not finite")
    if arr.size > 1 and np.any(np.diff(arr) < 0):
        i = int(np.flatnonzero(np.diff(arr) < 0)[0])
        raise ExposureInputError(
            f"{what} times must not decrease; t[{i + 1}] = {float(arr[i + 1])!r} s < "
            f"t[{i}] = {float(arr[i])!r} s"
        )
    return arr


def check_values(v: np.ndarray, n: int, what: str) -> np.ndarray:
    """``v`` as contiguous float64 of shape ``(n,)`` (NaN allowed).

    Raises :class:`ExposureInputError` naming ``what`` when the shape differs.
    """
    arr = np.ascontiguousarray(np.asarray(v, dtype=np.float64))
    if arr.shape != (n,):
        raise ExposureInputError(f"{what} must have shape ({n},) like its times, got {arr.shape}")
    return arr


@dataclass(frozen=True)
class Series:
    """A sampled series on the LSL clock.

    Attributes
    ----------
    t : ndarray, shape (n,)
        Sample times in LSL s, finite and non-decreasing.
    values : ndarray, shape (n,)
        The samples (NaN marks an invalid sample).
    """

    t: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        t = check_times(self.t, "series")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "values", check_values(self.values, t.size, "series values"))

    @classmethod
    def regular(cls, values: np.ndarray, fs: float, t0: float = 0.0) -> Series:
        """A regular series: sample ``i`` at ``t0 + i / fs`` s (``fs`` in Hz)."""
        fs = float(fs)
        if not (math.isfinite(fs) and fs > 0):
            raise ExposureInputError(f"sampling rate must be > 0 Hz, got {fs!r}")
        v = np.asarray(values, dtype=np.float64)
        return cls(t0 + np.arange(v.size) / fs, v)

    def __len__(self) -> int:
        return int(self.t.size)

    def between(self, a: float, b: float) -> Series:
        """Samples with ``a <= t < b``."""
        i, j = np.searchsorted(self.t, (a, b), side="left")
        return Series(self.t[i:j], self.values[i:j])


@dataclass(frozen=True)
class EDALevel:
    """The EDA level series as the EDA stage publishes it.

    Attributes
    ----------
    t : ndarray, shape (n,)
        LSL s.
    scl_us : ndarray, shape (n,)
        Skin conductance level, µS; NaN where the input was invalid (NaN, out of range,
        electrode off), as :class:`stimloop.dsp.eda.SCRDetector` reports it.
    phasic_us : ndarray, shape (n,), optional
        Phasic component, µS. With it, flatlines are looked for in SCL + phasic (the
        smoothed EDA), which freezes within seconds of a stuck sensor; without it, in the
        SCL alone.
    """

    t: np.ndarray
    scl_us: np.ndarray
    phasic_us: np.ndarray | None = None

    def __post_init__(self) -> None:
        t = check_times(self.t, "EDA level")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "scl_us", check_values(self.scl_us, t.size, "scl_us"))
        if self.phasic_us is not None:
            object.__setattr__(self, "phasic_us", check_values(self.phasic_us, t.size, "phasic_us"))

    def __len__(self) -> int:
        return int(self.t.size)

    @property
    def scl(self) -> Series:
        """The SCL as a :class:`Series`."""
        return Series(self.t, self.scl_us)

    @property
    def smoothed_us(self) -> np.ndarray:
        """SCL + phasic (the smoothed EDA), or the SCL when no phasic was given, µS."""
        return self.scl_us if self.phasic_us is None else self.scl_us + self.phasic_us

    def slice(self, i: int, j: int) -> EDALevel:
        """Samples ``i:j``."""
        ph = None if self.phasic_us is None else self.phasic_us[i:j]
        return EDALevel(self.t[i:j], self.scl_us[i:j], ph)

    @staticmethod
    def concat(parts: Sequence[EDALevel]) -> EDALevel:
        """Join consecutive pieces (all with, or all without, a phasic component)."""
        if not parts:
            return EDALevel(np.zeros(0), np.zeros(0))
        with_ph = [p.phasic_us is not None for p in parts]
        if any(with_ph) and not all(with_ph):
            raise ExposureInputError("EDA level pieces mix with and without phasic_us")
        ph = np.concatenate([p.phasic_us for p in parts]) if with_ph[0] else None
        return EDALevel(
            np.concatenate([p.t for p in parts]), np.concatenate([p.scl_us for p in parts]), ph
        )


@dataclass(frozen=True)
class SCRTable:
    """SCRs as the EDA stage publishes them (one row per confirmed SCR).

    Attributes
    ----------
    onset_t, peak_t : ndarray
        LSL times of onset and peak, s.
    amplitude_us : ndarray
        Trough-to-peak amplitude, µS.
    confirmed_t : ndarray
        LSL time at which the detector confirmed the SCR, s (the time it became known;
        the causal SCR rate uses it). NaN is allowed only where causality is not needed
        (per-exercise counts, cue responses); :func:`arousal_timeline` refuses it.
    rise_time_s : ndarray
        Onset to peak, s.
    """

    onset_t: np.ndarray
    peak_t: np.ndarray
    amplitude_us: np.ndarray
    confirmed_t: np.ndarray
    rise_time_s: np.ndarray

    def __post_init__(self) -> None:
        on = np.ascontiguousarray(np.asarray(self.onset_t, dtype=np.float64))
        if on.ndim != 1:
            raise ExposureInputError(f"SCR onset_t must be 1-D, got shape {on.shape}")
        if on.size and not np.all(np.isfinite(on)):
            raise ExposureInputError("SCR onset_t contains NaN or infinite times")
        object.__setattr__(self, "onset_t", on)
        for name in ("peak_t", "amplitude_us", "confirmed_t", "rise_time_s"):
            object.__setattr__(
                self, name, check_values(getattr(self, name), on.size, f"SCR {name}")
            )

    def __len__(self) -> int:
        return int(self.onset_t.size)

    @classmethod
    def empty(cls) -> SCRTable:
        """A table with no SCRs."""
        z = np.zeros(0)
        return cls(z, z, z, z, z)

    @classmethod
    def from_events(cls, scrs: np.ndarray, confirmed_t: np.ndarray) -> SCRTable:
        """From :meth:`SCRDetector.update` rows (``SCR_EVENT_DTYPE``).

        Parameters
        ----------
        scrs : ndarray (SCR_EVENT_DTYPE)
            Rows with ``onset_t``, ``peak_t``, ``amplitude``, ``rise_time``.
        confirmed_t : ndarray
            LSL time of each row's ``confirmed`` sample, s (the stage reads it from the
            chunk's timestamps).
        """
        return cls(
            scrs["onset_t"], scrs["peak_t"], scrs["amplitude"], confirmed_t, scrs["rise_time"]
        )

    @staticmethod
    def concat(parts: Sequence[SCRTable]) -> SCRTable:
        """Join tables (kept in the given order)."""
        if not parts:
            return SCRTable.empty()
        return SCRTable(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(SCRTable))
        )

    def take(self, mask: np.ndarray) -> SCRTable:
        """The rows where ``mask`` is True (or at the given indices)."""
        return SCRTable(*(getattr(self, f.name)[mask] for f in fields(SCRTable)))


def eda_tables(
    eda_us: np.ndarray,
    fs: float,
    t0: float = 0.0,
    rate_hz: float | None = None,
    params: EDAParams | None = None,
) -> tuple[SCRTable, EDALevel]:
    """SCR table and EDA level series of a whole recording, as the live stage makes them.

    Runs :class:`stimloop.dsp.eda.SCRDetector` over the recording (identical to feeding it
    in chunks), with sample ``i`` at LSL time ``t0 + i / fs``.

    Parameters
    ----------
    eda_us : ndarray, shape (n,)
        Skin conductance, µS (NaN allowed: flagged, as live).
    fs : float
        Sampling rate, Hz.
    t0 : float
        LSL time of the first sample, s.
    rate_hz : float, optional
        Keep every ``round(fs / rate_hz)``-th level sample (absolute sample indices that
        are multiples of it), as the EDA stage's level stream does (10 Hz there); default
        every sample.
    params : EDAParams, optional
        Detector settings.

    Returns
    -------
    scrs : SCRTable
        With ``confirmed_t`` from the confirming sample.
    level : EDALevel
        SCL and phasic, µS (NaN where invalid).
    """
    det = SCRDetector(fs, params=params)
    x = np.asarray(eda_us, dtype=np.float64)
    t = t0 + np.arange(x.size) / float(fs)
    new = det.update(x, t)
    table = SCRTable.from_events(new, t0 + new["confirmed"] / float(fs))
    step = 1 if rate_hz is None else max(1, round(float(fs) / float(rate_hz)))
    sel = slice(0, None, step)
    level = EDALevel(t[sel], det.last_scl[sel].copy(), det.last_phasic[sel].copy())
    return table, level


def hr_series(ecg_mv: np.ndarray, fs: float, t0: float = 0.0, rate_hz: float = 4.0) -> Series:
    """Evenly sampled heart rate of a whole ECG recording, as the heart stage makes it.

    Runs :class:`stimloop.dsp.heart.HeartMonitor` (identical to feeding it in chunks).

    Parameters
    ----------
    ecg_mv : ndarray, shape (n,)
        ECG, mV.
    fs : float
        ECG sampling rate, Hz.
    t0 : float
        LSL time of the first sample, s.
    rate_hz : float
        Rate of the HR series, Hz.

    Returns
    -------
    Series
        HR in bpm at ``t0 + index / fs`` of each grid sample; NaN where invalid.
    """
    mon = HeartMonitor(fs, rate_hz=rate_hz)
    s = mon.update(np.asarray(ecg_mv, dtype=np.float64)).series
    return Series(t0 + s["index"] / float(fs), s["hr_bpm"])


# ============================================================================ cues
def _to_grid(t: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(t, dtype=np.float64) * _CUE_GRID_HZ).astype(np.int64)


def _grid_scrs(scrs: SCRTable) -> np.ndarray:
    out = np.zeros(len(scrs), dtype=SCR_DTYPE)
    out["onset"] = _to_grid(scrs.onset_t)
    out["peak"] = _to_grid(np.nan_to_num(scrs.peak_t, nan=0.0))
    out["amplitude"] = scrs.amplitude_us
    out["rise_time"] = scrs.rise_time_s
    out["half_recovery"] = np.nan
    return out


def _cue_rows(er: np.ndarray, cue_t: np.ndarray) -> np.ndarray:
    out = np.zeros(len(er), dtype=CUE_DTYPE)
    out["t"] = cue_t
    out["valid"] = True
    out["responded"] = er["responded"]
    out["latency_s"] = er["latency"]
    out["amplitude_us"] = er["amplitude"]
    out["rise_time_s"] = er["rise_time"]
    out["onset_t"] = np.where(er["responded"], er["onset"] / _CUE_GRID_HZ, np.nan)
    return out


def cue_responses(
    scrs: SCRTable, cue_t: np.ndarray, window: tuple[float, float] = (1.0, 4.0)
) -> np.ndarray:
    """The evoked SCR to each cue: the first SCR whose onset lies in ``window`` after it.

    The project's :func:`stimloop.dsp.eda.event_related_scr` on a 1 ms grid of LSL time
    (Boucsein et al. 2012; Dawson, Schell & Filion 2017: onset 1-4 s after the event).

    Parameters
    ----------
    scrs : SCRTable
        The SCRs.
    cue_t : array_like
        Cue times, LSL s.
    window : (float, float)
        Onset latency window, s.

    Returns
    -------
    ndarray (CUE_DTYPE)
        One row per cue, in the given order; ``exercise`` 0 and ``valid`` True (see
        :func:`exercise_physiology` for both).
    """
    cue = np.asarray(cue_t, dtype=np.float64).ravel()
    if cue.size and not np.all(np.isfinite(cue)):
        raise ExposureInputError("cue times must be finite LSL times in s")
    er = event_related_scr(_grid_scrs(scrs), _to_grid(cue), _CUE_GRID_HZ, window)
    return _cue_rows(er, cue)


class CueResponses:
    """Evoked SCRs to cues, live: each cue is resolved once its answer is certain.

    Gives the rows :func:`cue_responses` gives offline, in resolution order.

    Parameters
    ----------
    window : (float, float)
        Onset latency window, s.
    params : EDAParams, optional
        The detector's settings (how long an SCR can take to be confirmed).
    """

    def __init__(
        self, window: tuple[float, float] = (1.0, 4.0), params: EDAParams | None = None
    ) -> None:
        self.window = (float(window[0]), float(window[1]))
        self._er = EventRelatedSCR(_CUE_GRID_HZ, self.window, params)
        self._t: dict[int, list[float]] = {}  # grid index -> cue times (two cues may share one)

    def add_cue(self, t: float) -> None:
        """Register a cue at LSL time ``t`` (s)."""
        if not math.isfinite(t):
            raise ExposureInputError(f"cue time {t!r} is not a finite LSL time")
        g = int(_to_grid(np.array([t]))[0])
        self._t.setdefault(g, []).append(float(t))
        self._er.add_event(g)

    def update(self, new_scrs: SCRTable, now_t: float) -> np.ndarray:
        """Add newly confirmed SCRs and return the cues now resolved (CUE_DTYPE).

        Parameters
        ----------
        new_scrs : SCRTable
            SCRs confirmed since the last call.
        now_t : float
            LSL time up to which the EDA has been processed, s.
        """
        res = self._er.update(_grid_scrs(new_scrs), math.floor(now_t * _CUE_GRID_HZ) + 1)
        times = []
        for e in res["event"]:
            same = self._t[int(e)]
            times.append(same.pop(0))
            if not same:
                del self._t[int(e)]
        return _cue_rows(res, np.array(times, dtype=np.float64))


def cue_summary(rows: np.ndarray, groups: np.ndarray | None = None) -> dict[str, dict]:
    """Evoked-SCR figures per group of cues (e.g. per event code).

    Parameters
    ----------
    rows : ndarray (CUE_DTYPE)
        From :func:`cue_responses`.
    groups : array_like, optional
        One label per row (default: one group, ``"all"``).

    Returns
    -------
    dict
        Per group (key ``str(label)``): ``n``, ``valid``, ``responded``,
        ``response_rate`` (of the valid cues), ``amplitude_mean_us``,
        ``amplitude_median_us``, ``latency_median_s`` (over responses; None if none).
    """
    g = np.full(len(rows), "all", dtype=object) if groups is None else np.asarray(groups)
    if g.shape != (len(rows),):
        raise ExposureInputError(f"groups must have one label per cue ({len(rows)}), got {g.shape}")
    out: dict[str, dict] = {}
    for key in sorted(set(g.tolist()), key=str):
        r = rows[g == key]
        ok = r[r["valid"]]
        resp = ok[ok["responded"]]
        amp = resp["amplitude_us"]
        out[str(key)] = {
            "n": len(r),
            "valid": len(ok),
            "responded": len(resp),
            "response_rate": _none(len(resp) / len(ok)) if len(ok) else None,
            "amplitude_mean_us": _none(np.mean(amp)) if amp.size else None,
            "amplitude_median_us": _none(np.median(amp)) if amp.size else None,
            "latency_median_s": _none(np.median(resp["latency_s"])) if amp.size else None,
        }
    return out


def _none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# ============================================================================ exercises
@dataclass(frozen=True)
class ExerciseParams:
    """Settings of the per-exercise figures.

    Attributes
    ----------
    baseline_s : float
        Pre-exercise baseline window, s (ends at the start; clipped to begin no earlier
        than the previous exercise's end and the first sample).
    min_baseline_s : float
        Shorter baselines give NaN changes, with an issue.
    max_eda_loss_s : float
        An exercise whose EDA was lost (NaN SCL, flatline, or not covered by the level
        series) for longer than this in total is invalid: its EDA figures are NaN. An SCR
        takes at least 0.5 s to rise (Boucsein et al. 2012), so a shorter loss cannot
        hide one whole.
    flat_s, flat_tol_us : float
        A flatline is a run of at least ``flat_s`` s over which the smoothed EDA varies by
        less than ``flat_tol_us`` µS (a stuck sensor or a held value; live skin with
        0.002 µS sensor noise varies by ~0.001 µS within 5 s after the 1 Hz smoothing).
    hr_peak_window_s : float
        HR peak = the highest mean over a window of this length inside the exercise
        (one ectopic beat is not a peak).
    min_hr_coverage : float
        Fraction of valid HR samples an exercise (or its baseline) needs for HR figures.
    cue_window : (float, float)
        Onset latency window of an evoked SCR, s.
    """

    baseline_s: float = 30.0
    min_baseline_s: float = 5.0
    max_eda_loss_s: float = 1.0
    flat_s: float = 5.0
    flat_tol_us: float = 1e-4
    hr_peak_window_s: float = 5.0
    min_hr_coverage: float = 0.8
    cue_window: tuple[float, float] = (1.0, 4.0)

    def __post_init__(self) -> None:
        for name in ("baseline_s", "min_baseline_s", "flat_s", "hr_peak_window_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ExposureInputError(f"{name} must be > 0 s, got {v!r}")
        if not (math.isfinite(self.max_eda_loss_s) and self.max_eda_loss_s >= 0):
            raise ExposureInputError(f"max_eda_loss_s must be >= 0 s, got {self.max_eda_loss_s!r}")
        if not 0 < self.min_hr_coverage <= 1:
            raise ExposureInputError(
                f"min_hr_coverage must be in (0, 1], got {self.min_hr_coverage!r}"
            )
        lo, hi = self.cue_window
        if not 0 <= lo < hi:
            raise ExposureInputError(
                f"cue_window must be (lo, hi) s with 0 <= lo < hi, got {self.cue_window!r}"
            )

    @property
    def settle_s(self) -> float:
        """How long after an exercise ends its figures can still change, s.

        A cue at the very end is answered by an SCR with onset up to ``cue_window[1]``
        s later, confirmed up to 5 s (longest rise) + 1 s (plateau) + 1 s (filter delay)
        after its onset, as :class:`stimloop.dsp.eda.EventRelatedSCR` waits.
        """
        return self.cue_window[1] + 7.0


@dataclass(frozen=True)
class ExerciseFigures:
    """The physiology of one exercise. NaN means "not available", never zero.

    Attributes
    ----------
    number : int
        1-based position in the intervals given.
    start_t, end_t, duration_s : float
        LSL s, and s.
    eda_valid : bool
        False when the EDA was lost or flat for more than ``max_eda_loss_s``; then every
        ``scr_*``/``scl_*`` figure is NaN.
    eda_lost_s : float
        Time without usable EDA during the exercise, s.
    scr_count, scr_rate_per_min, scr_amp_sum_us : float
        SCRs with onset in [start, end): count, per minute, sum of amplitudes (µS).
    scl_baseline_us, scl_mean_us, scl_change_us, scl_peak_change_us : float
        Mean SCL over the baseline and the exercise, µS; mean and maximum minus baseline.
    hr_valid : bool
        HR figures available (an ECG was given and covered the exercise).
    hr_baseline_bpm, hr_mean_bpm, hr_change_bpm, hr_peak_bpm, hr_peak_change_bpm : float
        bpm; the peak is the highest ``hr_peak_window_s`` mean.
    hr_peak_t : float
        Centre of the peak window, LSL s.
    arousal_mean, arousal_peak, arousal_peak_t : float
        Mean and maximum of the arousal index in the exercise, and the time of the maximum
        (LSL s); NaN without an index.
    frac_hypo, frac_within, frac_hyper : float
        Fractions of the exercise's valid band samples in each band (NaN without bands).
    time_hyper_s : float
        Time above the window, s.
    n_cues, n_cue_responses : int
        Cues in the exercise, and those with an evoked SCR (valid cues only).
    cue_amp_mean_us : float
        Mean evoked-SCR amplitude over the responses, µS.
    cues : ndarray (CUE_DTYPE)
        The exercise's cues.
    issues : tuple of str
        Why a figure is missing.
    """

    number: int
    start_t: float
    end_t: float
    duration_s: float
    eda_valid: bool
    eda_lost_s: float
    scr_count: float
    scr_rate_per_min: float
    scr_amp_sum_us: float
    scl_baseline_us: float
    scl_mean_us: float
    scl_change_us: float
    scl_peak_change_us: float
    hr_valid: bool
    hr_baseline_bpm: float
    hr_mean_bpm: float
    hr_change_bpm: float
    hr_peak_bpm: float
    hr_peak_change_bpm: float
    hr_peak_t: float
    arousal_mean: float
    arousal_peak: float
    arousal_peak_t: float
    frac_hypo: float
    frac_within: float
    frac_hyper: float
    time_hyper_s: float
    n_cues: int
    n_cue_responses: int
    cue_amp_mean_us: float
    cues: np.ndarray = field(repr=False)
    issues: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes None, cues become a list of dicts."""
        out = {}
        for k, v in asdict(self).items():
            if k == "cues":
                out[k] = [
                    {
                        n: (_none(r[n]) if r.dtype[n].kind == "f" else r[n].item())
                        for n in CUE_DTYPE.names
                    }
                    for r in self.cues
                ]
            elif isinstance(v, float):
                out[k] = _none(v)
            elif k == "issues":
                out[k] = list(v)
            else:
                out[k] = v
        return out


def median_step(t: np.ndarray) -> float:
    """Median spacing of sample times, s (NaN for fewer than 2 samples)."""
    return float(np.median(np.diff(t))) if t.size > 1 else math.nan


def _flat_mask(t: np.ndarray, x: np.ndarray, flat_s: float, tol: float) -> np.ndarray:
    """Samples inside a run of >= flat_s s whose values stay within ``tol``."""
    n = x.size
    dt = median_step(t)
    if n < 2 or not math.isfinite(dt) or dt <= 0:
        return np.zeros(n, dtype=bool)
    w = round(flat_s / dt) + 1
    if w > n:
        return np.zeros(n, dtype=bool)
    # hi[i], lo[i]: over the w samples ending at i (this origin makes the window
    # trailing). NaN, and the space before the first sample, break a run.
    trail = (w - 1) // 2
    hi = maximum_filter1d(
        np.where(np.isnan(x), np.inf, x), w, origin=trail, mode="constant", cval=np.inf
    )
    lo = minimum_filter1d(
        np.where(np.isnan(x), -np.inf, x), w, origin=trail, mode="constant", cval=-np.inf
    )
    ends = (hi - lo) <= tol
    # Every sample of a flat window is flat: spread each window end back over its w
    # samples (a leading window from i: this origin).
    return maximum_filter1d(ends.astype(np.uint8), w, origin=-(w // 2), mode="constant") > 0


def _lost_s(level: EDALevel, a: float, b: float, params: ExerciseParams) -> tuple[float, str]:
    """Time in [a, b) without usable EDA, and a description."""
    i, j = np.searchsorted(level.t, (a, b), side="left")
    seg = level.slice(i, j)
    span = b - a
    if len(seg) == 0:
        return span, f"no EDA level samples in {a:.3f}-{b:.3f} s"
    dt = median_step(level.t) if len(level) > 1 else span
    # Flatlines are looked for with some context either side, so a run that straddles
    # the boundary is seen whole.
    pad = math.ceil(params.flat_s / dt) + 1 if math.isfinite(dt) and dt > 0 else 0
    ci, cj = max(0, i - pad), min(len(level), j + pad)
    ctx = level.slice(ci, cj)
    flat = _flat_mask(ctx.t, ctx.smoothed_us, params.flat_s, params.flat_tol_us)[i - ci : j - ci]
    nan = ~np.isfinite(seg.scl_us)
    uncovered = max(0.0, float(seg.t[0]) - a - dt) + max(0.0, b - float(seg.t[-1]) - dt)
    lost = float(np.count_nonzero(nan | flat)) * dt + uncovered
    parts = []
    if nan.any():
        parts.append(f"{np.count_nonzero(nan) * dt:.1f} s NaN (lost or invalid EDA)")
    if flat.any():
        parts.append(f"{np.count_nonzero(flat & ~nan) * dt:.1f} s flatline")
    if uncovered > 0:
        parts.append(f"{uncovered:.1f} s not covered by the EDA level series")
    return lost, ", ".join(parts)


def _window_peak(s: Series, w_s: float) -> tuple[float, float]:
    """Highest mean over a window of ``w_s`` s (sample count from the median spacing)."""
    v = s.values
    if v.size == 0:
        return math.nan, math.nan
    dt = median_step(s.t)
    k = v.size if not math.isfinite(dt) else max(1, min(v.size, round(w_s / dt)))
    ok = np.isfinite(v)
    c_sum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    c_n = np.concatenate([[0], np.cumsum(ok)])
    n = c_n[k:] - c_n[:-k]
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (c_sum[k:] - c_sum[:-k]) / n
    m[n * 2 < k] = np.nan  # a window needs half its samples valid
    if not np.isfinite(m).any():
        return math.nan, math.nan
    p = int(np.nanargmax(m))
    return float(m[p]), float(0.5 * (s.t[p] + s.t[p + k - 1]))


def _coverage(s: Series, a: float, b: float) -> float:
    seg = s.between(a, b)
    dt = median_step(s.t)
    if not math.isfinite(dt) or dt <= 0 or b <= a:
        return 0.0
    return min(1.0, np.count_nonzero(np.isfinite(seg.values)) * dt / (b - a))


def exercise_figures(
    start_t: float,
    end_t: float,
    *,
    scrs: SCRTable,
    level: EDALevel,
    hr: Series | None = None,
    cue_t: np.ndarray | None = None,
    arousal: Series | None = None,
    band: Series | None = None,
    prev_end_t: float = -math.inf,
    number: int = 1,
    params: ExerciseParams | None = None,
) -> ExerciseFigures:
    """The physiology of one exercise.

    Parameters
    ----------
    start_t, end_t : float
        The exercise, LSL s (``end_t > start_t``).
    scrs : SCRTable
        All SCRs (those with onset in the exercise are counted).
    level : EDALevel
        The EDA level series around the exercise (from ``baseline_s`` before its start).
    hr : Series, optional
        HR in bpm (NaN = invalid); None = the session has no ECG (HR figures NaN).
    cue_t : array_like, optional
        Cue times, LSL s (those inside the exercise are scored).
    arousal : Series, optional
        The arousal index (:func:`arousal_timeline`).
    band : Series, optional
        The band state per sample (``UNKNOWN``/``HYPO``/``WITHIN``/``HYPER``).
    prev_end_t : float
        End of the previous exercise, LSL s: the baseline never reaches back before it.
    number : int
        The exercise's number, for the record.
    params : ExerciseParams, optional

    Returns
    -------
    ExerciseFigures
    """
    p = params or ExerciseParams()
    a, b = float(start_t), float(end_t)
    if not (math.isfinite(a) and math.isfinite(b) and b > a):
        raise ExposureInputError(
            f"exercise {number}: interval ({start_t!r}, {end_t!r}) s is not a finite start < end"
        )
    issues: list[str] = []
    nan = math.nan
    dur = b - a
    # --- EDA
    lost, why = _lost_s(level, a, b, p)
    eda_valid = lost <= p.max_eda_loss_s
    base0 = max(a - p.baseline_s, prev_end_t, float(level.t[0]) if len(level) else a)
    scr_count = scr_rate = scr_sum = nan
    scl_base = scl_mean = scl_change = scl_peak = nan
    if not eda_valid:
        issues.append(f"EDA invalid: {why} (more than {p.max_eda_loss_s:g} s)")
    else:
        on = scrs.onset_t
        sel = (on >= a) & (on < b)
        scr_count = float(np.count_nonzero(sel))
        scr_rate = scr_count * 60.0 / dur
        scr_sum = float(np.sum(scrs.amplitude_us[sel]))
        seg = level.scl.between(a, b)
        scl_mean = float(np.nanmean(seg.values))
        if a - base0 < p.min_baseline_s:
            issues.append(
                f"baseline {a - base0:.1f} s is shorter than {p.min_baseline_s:g} s "
                "(previous exercise or recording start too close): no SCL/HR change"
            )
        else:
            b_lost, b_why = _lost_s(level, base0, a, p)
            if b_lost > 0.5 * (a - base0):
                issues.append(f"SCL baseline invalid: {b_why}")
            else:
                base = level.scl.between(base0, a).values
                scl_base = float(np.nanmean(base))
                scl_change = scl_mean - scl_base
                scl_peak = float(np.nanmax(seg.values)) - scl_base
    # --- HR
    hr_valid = False
    hr_base = hr_mean = hr_change = hr_peak = hr_peak_change = hr_peak_t = nan
    if hr is None:
        issues.append("no ECG in this session: HR figures missing")
    elif _coverage(hr, a, b) < p.min_hr_coverage:
        issues.append(
            f"HR valid for {100 * _coverage(hr, a, b):.0f} % of the exercise, "
            f"less than {100 * p.min_hr_coverage:.0f} %: HR figures missing"
        )
    else:
        hr_valid = True
        seg = hr.between(a, b)
        hr_mean = float(np.nanmean(seg.values))
        hr_peak, hr_peak_t = _window_peak(seg, p.hr_peak_window_s)
        if a - base0 >= p.min_baseline_s:
            if _coverage(hr, base0, a) >= 0.5:
                hr_base = float(np.nanmean(hr.between(base0, a).values))
                hr_change = hr_mean - hr_base
                hr_peak_change = hr_peak - hr_base
            else:
                issues.append("HR baseline less than half valid: no HR change")
    # --- arousal and band
    ar_mean = ar_peak = ar_peak_t = nan
    if arousal is not None:
        seg = arousal.between(a, b)
        if np.isfinite(seg.values).any():
            ar_mean = float(np.nanmean(seg.values))
            k = int(np.nanargmax(seg.values))
            ar_peak, ar_peak_t = float(seg.values[k]), float(seg.t[k])
    f_hypo = f_within = f_hyper = t_hyper = nan
    if band is not None:
        seg = band.between(a, b)
        st = seg.values
        ok = st >= 0
        if ok.any():
            f_hypo, f_within, f_hyper = (float(np.mean(st[ok] == s)) for s in (HYPO, WITHIN, HYPER))
            t_hyper = float(np.count_nonzero(st == HYPER)) * median_step(band.t)
    # --- cues
    cues = np.zeros(0, dtype=CUE_DTYPE)
    if cue_t is not None:
        ct = np.asarray(cue_t, dtype=np.float64)
        ct = np.sort(ct[(ct >= a) & (ct < b)])
        cues = cue_responses(scrs, ct, p.cue_window)
        cues["exercise"] = number
        if not eda_valid:
            cues["valid"] = False
            cues["responded"] = False
            for name in ("latency_s", "amplitude_us", "rise_time_s", "onset_t"):
                cues[name] = np.nan
    ok = cues[cues["valid"]]
    resp = ok[ok["responded"]]
    return ExerciseFigures(
        number=int(number),
        start_t=a,
        end_t=b,
        duration_s=dur,
        eda_valid=bool(eda_valid),
        eda_lost_s=float(lost),
        scr_count=scr_count,
        scr_rate_per_min=scr_rate,
        scr_amp_sum_us=scr_sum,
        scl_baseline_us=scl_base,
        scl_mean_us=scl_mean,
        scl_change_us=scl_change,
        scl_peak_change_us=scl_peak,
        hr_valid=hr_valid,
        hr_baseline_bpm=hr_base,
        hr_mean_bpm=hr_mean,
        hr_change_bpm=hr_change,
        hr_peak_bpm=hr_peak,
        hr_peak_change_bpm=hr_peak_change,
        hr_peak_t=hr_peak_t,
        arousal_mean=ar_mean,
        arousal_peak=ar_peak,
        arousal_peak_t=ar_peak_t,
        frac_hypo=f_hypo,
        frac_within=f_within,
        frac_hyper=f_hyper,
        time_hyper_s=t_hyper,
        n_cues=len(ok),
        n_cue_responses=len(resp),
        cue_amp_mean_us=float(np.mean(resp["amplitude_us"])) if len(resp) else nan,
        cues=cues,
        issues=tuple(issues),
    )


def _check_intervals(intervals: np.ndarray) -> np.ndarray:
    iv = np.asarray(intervals, dtype=np.float64)
    if iv.size == 0:
        return iv.reshape(0, 2)
    if iv.ndim != 2 or iv.shape[1] != 2:
        raise ExposureInputError(f"intervals must have shape (n, 2) (start, end), got {iv.shape}")
    if not np.all(np.isfinite(iv)):
        k = int(np.flatnonzero(~np.isfinite(iv).all(axis=1))[0])
        raise ExposureInputError(
            f"exercise {k + 1} has a non-finite start or end {iv[k].tolist()}; an exercise "
            "without an end cannot be scored"
        )
    bad = np.flatnonzero(iv[:, 1] <= iv[:, 0])
    if bad.size:
        k = int(bad[0])
        raise ExposureInputError(
            f"exercise {k + 1} ends at {float(iv[k, 1])!r} s, not after its start "
            f"{float(iv[k, 0])!r} s"
        )
    if iv.shape[0] > 1 and np.any(iv[1:, 0] < iv[:-1, 1]):
        k = int(np.flatnonzero(iv[1:, 0] < iv[:-1, 1])[0])
        raise ExposureInputError(
            f"exercise {k + 2} starts at {float(iv[k + 1, 0])!r} s, before exercise {k + 1} ends "
            f"({float(iv[k, 1])!r} s); exercises must not overlap"
        )
    return iv


def exercise_physiology(
    intervals: np.ndarray,
    *,
    scrs: SCRTable,
    level: EDALevel,
    hr: Series | None = None,
    cue_t: np.ndarray | None = None,
    arousal: Series | None = None,
    band: Series | None = None,
    params: ExerciseParams | None = None,
) -> list[ExerciseFigures]:
    """The physiology of every exercise of a session (see :func:`exercise_figures`).

    Parameters
    ----------
    intervals : array_like, shape (n, 2)
        (start, end) of each exercise in LSL s, in order, not overlapping.
    scrs, level, hr, cue_t, arousal, band, params
        As for :func:`exercise_figures`.

    Returns
    -------
    list of ExerciseFigures
        One per exercise, numbered from 1.
    """
    iv = _check_intervals(intervals)
    out = []
    for k, (a, b) in enumerate(iv):
        prev = float(iv[k - 1, 1]) if k else -math.inf
        out.append(
            exercise_figures(
                a,
                b,
                scrs=scrs,
                level=level,
                hr=hr,
                cue_t=cue_t,
                arousal=arousal,
                band=band,
                prev_end_t=prev,
                number=k + 1,
                params=params,
            )
        )
    return out


class ExerciseTracker:
    """Per-exercise figures live: the same :func:`exercise_figures`, once data are complete.

    Feed it the streams as they arrive and the exercise start/end/cue times as the markers
    come; :meth:`update` returns each exercise's :class:`ExerciseFigures` once the data it
    depends on are in: ``params.settle_s`` after its end in EDA time (SCRs confirmed,
    cues resolved), and HR up to its end (or ``hr_wait_s`` more, if the ECG stalls). The
    figures equal :func:`exercise_physiology` on the whole recording.

    Parameters
    ----------
    params : ExerciseParams, optional
    use_hr : bool
        Whether the session has an ECG (False: HR figures are missing, not zero).
    hr_wait_s : float
        How long past the settle time to wait for HR that lags, s.

    Notes
    -----
    SCRs must be added no later than the EDA level samples up to their confirmation
    time (the EDA stage produces both from the same chunk).
    """

    def __init__(
        self, params: ExerciseParams | None = None, use_hr: bool = True, hr_wait_s: float = 5.0
    ) -> None:
        self.params = params or ExerciseParams()
        self.use_hr = bool(use_hr)
        self.hr_wait_s = float(hr_wait_s)
        self._level: list[EDALevel] = []
        self._scrs: list[SCRTable] = []
        self._hr_t: list[np.ndarray] = []
        self._hr_v: list[np.ndarray] = []
        self._ar: list[Series] = []
        self._band: list[Series] = []
        self._cues: list[float] = []
        self._done: list[tuple[int, float, float, float]] = []  # number, start, end, prev_end
        self._open: tuple[int, float, float] | None = None  # number, start, prev_end
        self._prev_end = -math.inf
        self._n = 0
        self._eda_t = -math.inf
        self._hr_last = -math.inf

    # ------------------------------------------------------------------ input
    def add_level(self, level: EDALevel) -> None:
        """EDA level samples (in time order, after those already given)."""
        if len(level):
            if level.t[0] < self._eda_t:
                raise ExposureInputError(
                    f"EDA level sample at {float(level.t[0])!r} s comes before the last one given "
                    f"({self._eda_t!r} s)"
                )
            self._level.append(level)
            self._eda_t = float(level.t[-1])

    def add_scrs(self, scrs: SCRTable) -> None:
        """Newly confirmed SCRs."""
        if len(scrs):
            self._scrs.append(scrs)

    def add_hr(self, hr: Series) -> None:
        """HR samples, bpm (in time order)."""
        if len(hr):
            self._hr_t.append(hr.t)
            self._hr_v.append(hr.values)
            self._hr_last = float(hr.t[-1])

    def add_arousal(self, index: Series, band: Series | None = None) -> None:
        """Arousal index samples and, optionally, their band states."""
        if len(index):
            self._ar.append(index)
        if band is not None and len(band):
            self._band.append(band)

    def start_exercise(self, t: float) -> int:
        """An exercise starts at LSL time ``t`` (s); returns its number."""
        if self._open is not None:
            raise ExposureInputError(
                f"exercise {self._open[0]} (started {self._open[1]:.3f} s) is still open; "
                "end it before starting another"
            )
        if not (math.isfinite(t) and t >= self._prev_end):
            raise ExposureInputError(
                f"exercise start {t!r} s must be finite and not before the previous end "
                f"({self._prev_end!r} s)"
            )
        self._n += 1
        self._open = (self._n, float(t), self._prev_end)
        return self._n

    def end_exercise(self, t: float) -> None:
        """The open exercise ends at LSL time ``t`` (s)."""
        if self._open is None:
            raise ExposureInputError(f"exercise end at {t!r} s without an open exercise")
        n, a, prev = self._open
        if not (math.isfinite(t) and t > a):
            raise ExposureInputError(f"exercise {n} end {t!r} s must come after its start {a!r} s")
        self._done.append((n, a, float(t), prev))
        self._open = None
        self._prev_end = float(t)

    def add_cue(self, t: float) -> None:
        """A cue at LSL time ``t`` (s)."""
        if not math.isfinite(t):
            raise ExposureInputError(f"cue time {t!r} is not a finite LSL time")
        self._cues.append(float(t))

    # ------------------------------------------------------------------ output
    def update(self) -> list[ExerciseFigures]:
        """Figures of the exercises whose data are now complete (each returned once)."""
        out = []
        while self._done:
            n, a, b, prev = self._done[0]
            ready_eda = self._eda_t >= b + self.params.settle_s
            late = self._eda_t >= b + self.params.settle_s + self.hr_wait_s
            ready_hr = (not self.use_hr) or self._hr_last >= b or late
            if not (ready_eda and ready_hr):
                break
            self._done.pop(0)
            out.append(self._figures(n, a, b, prev))
        self._trim()
        return out

    def _figures(self, n: int, a: float, b: float, prev: float) -> ExerciseFigures:
        level = EDALevel.concat(self._level)
        scrs = SCRTable.concat(self._scrs)
        hr = None
        if self.use_hr:
            hr = Series(
                np.concatenate(self._hr_t) if self._hr_t else np.zeros(0),
                np.concatenate(self._hr_v) if self._hr_v else np.zeros(0),
            )
        ar = _concat_series(self._ar)
        band = _concat_series(self._band)
        return exercise_figures(
            a,
            b,
            scrs=scrs,
            level=level,
            hr=hr,
            cue_t=np.asarray(self._cues),
            arousal=ar,
            band=band,
            prev_end_t=prev,
            number=n,
            params=self.params,
        )

    def _trim(self) -> None:
        # Keep what a pending or future exercise can still need: its baseline and the
        # flatline context before it.
        starts = [d[1] for d in self._done] + ([self._open[1]] if self._open else [])
        horizon = min(starts) if starts else self._eda_t
        keep_from = horizon - self.params.baseline_s - self.params.flat_s - 1.0
        if self._level:
            lv = EDALevel.concat(self._level)
            i = int(np.searchsorted(lv.t, keep_from))
            self._level = [lv.slice(i, len(lv))]
        if self._scrs:
            s = SCRTable.concat(self._scrs)
            self._scrs = [s.take(s.onset_t >= keep_from)]
        if self._hr_t:
            t, v = np.concatenate(self._hr_t), np.concatenate(self._hr_v)
            i = int(np.searchsorted(t, keep_from))
            self._hr_t, self._hr_v = [t[i:]], [v[i:]]
        for name in ("_ar", "_band"):
            s = _concat_series(getattr(self, name))
            if s is not None:
                i = int(np.searchsorted(s.t, keep_from))
                setattr(self, name, [Series(s.t[i:], s.values[i:])])
        self._cues = [c for c in self._cues if c >= keep_from]


def _concat_series(parts: Sequence[Series]) -> Series | None:
    if not parts:
        return None
    return Series(np.concatenate([p.t for p in parts]), np.concatenate([p.values for p in parts]))


# ============================================================================ across exercises
@dataclass(frozen=True)
class HabituationCurve:
    """A measure per exercise, in order, and how it changes.

    Attributes
    ----------
    measure : str
        The :class:`ExerciseFigures` field.
    number : ndarray of int
        Exercise numbers.
    value : ndarray
        The measure (NaN where not available).
    slope_per_exercise : float
        Least-squares slope over the exercises with a value (negative = habituation).
    rho : float
        Spearman rank correlation of value with exercise order (NaN if < 3 values).
    first, last : float
        First and last available value.
    """

    measure: str
    number: np.ndarray
    value: np.ndarray
    slope_per_exercise: float
    rho: float
    first: float
    last: float


def _measure(figs: Sequence[ExerciseFigures], measure: str) -> np.ndarray:
    names = {f.name for f in fields(ExerciseFigures)}
    if measure not in names or measure in ("cues", "issues"):
        allowed = sorted(n for n in names if n not in ("cues", "issues"))
        raise ExposureInputError(f"measure {measure!r} is not an exercise figure; one of {allowed}")
    return np.array([float(getattr(f, measure)) for f in figs], dtype=np.float64)


def habituation_curve(
    figures: Sequence[ExerciseFigures], measure: str = "arousal_peak"
) -> HabituationCurve:
    """The within-session habituation curve: ``measure`` per exercise, in order.

    Parameters
    ----------
    figures : sequence of ExerciseFigures
        The session's exercises.
    measure : str
        Default ``"arousal_peak"`` (peak arousal per exercise); any numeric field, e.g.
        ``"scl_peak_change_us"``, ``"scr_amp_sum_us"``, ``"hr_peak_change_bpm"``.
    """
    v = _measure(figures, measure)
    num = np.array([f.number for f in figures], dtype=np.int64)
    ok = np.isfinite(v)
    slope = rho = first = last = math.nan
    if ok.sum() >= 2:
        slope = float(np.polyfit(num[ok].astype(float), v[ok], 1)[0])
    if ok.sum() >= 3:
        rho = float(spearmanr(num[ok], v[ok]).statistic)
    if ok.any():
        first, last = float(v[ok][0]), float(v[ok][-1])
    return HabituationCurve(measure, num, v, slope, rho, first, last)


#: Rows of :func:`expectancy_violation`.
VIOLATION_DTYPE = np.dtype(
    [
        ("number", np.int64),
        ("expectancy", np.float64),
        ("outcome", np.float64),
        ("violation", np.float64),
        ("response", np.float64),
    ]
)


def expectancy_violation(
    expectancy: np.ndarray,
    outcome: np.ndarray,
    figures: Sequence[ExerciseFigures],
    measure: str = "arousal_peak",
) -> tuple[np.ndarray, float]:
    """Expectancy violation (expected minus outcome rating) beside the physiological response.

    Parameters
    ----------
    expectancy, outcome : array_like, shape (n,)
        Ratings 0-100 per exercise (NaN where not given), in the order of ``figures``.
    figures : sequence of ExerciseFigures
        The exercises.
    measure : str
        The physiological response shown beside it.

    Returns
    -------
    rows : ndarray (VIOLATION_DTYPE)
        Per exercise: number, expectancy, outcome, violation (points), response.
    rho : float
        Spearman correlation of violation with response over exercises that have both
        (NaN if fewer than 3).
    """
    e = np.asarray(expectancy, dtype=np.float64)
    o = np.asarray(outcome, dtype=np.float64)
    if e.shape != (len(figures),) or o.shape != (len(figures),):
        raise ExposureInputError(
            f"expectancy {e.shape} and outcome {o.shape} need one value per exercise "
            f"({len(figures)})"
        )
    for name, arr in (("expectancy", e), ("outcome", o)):
        bad = np.isfinite(arr) & ((arr < 0) | (arr > 100))
        if bad.any():
            raise ExposureInputError(f"{name} rating {arr[bad][0]:g} is outside 0-100")
    rows = np.zeros(len(figures), dtype=VIOLATION_DTYPE)
    rows["number"] = [f.number for f in figures]
    rows["expectancy"], rows["outcome"] = e, o
    rows["violation"] = e - o
    rows["response"] = _measure(figures, measure)
    ok = np.isfinite(rows["violation"]) & np.isfinite(rows["response"])
    rho = math.nan
    if ok.sum() >= 3:
        rho = float(spearmanr(rows["violation"][ok], rows["response"][ok]).statistic)
    return rows, rho


@dataclass(frozen=True)
class SessionComparison:
    """One session's exercises summarised, beside the first session.

    Attributes
    ----------
    name : str
        The session (e.g. its file name).
    n_exercises, n_valid : int
        Exercises, and those with a value of the measure.
    first, mean, last : float
        The measure at the first exercise, on average, at the last exercise.
    slope_per_exercise : float
        Within-session habituation slope.
    mean_change_from_first_session, first_change_from_first_session : float
        Between-session change of the mean and of the first exercise's value.
    """

    name: str
    n_exercises: int
    n_valid: int
    first: float
    mean: float
    last: float
    slope_per_exercise: float
    mean_change_from_first_session: float
    first_change_from_first_session: float


def compare_sessions(
    sessions: Mapping[str, Sequence[ExerciseFigures]], measure: str = "arousal_peak"
) -> list[SessionComparison]:
    """Between-session comparison of one measure (sessions in the order given).

    Parameters
    ----------
    sessions : mapping of name to sequence of ExerciseFigures
        Each session's exercises, sessions in chronological order.
    measure : str
        The exercise figure compared.

    Returns
    -------
    list of SessionComparison
    """
    out: list[SessionComparison] = []
    ref_mean = ref_first = math.nan
    for k, (name, figs) in enumerate(sessions.items()):
        curve = habituation_curve(figs, measure)
        ok = np.isfinite(curve.value)
        mean = float(np.mean(curve.value[ok])) if ok.any() else math.nan
        if k == 0:
            ref_mean, ref_first = mean, curve.first
        out.append(
            SessionComparison(
                str(name),
                len(figs),
                int(ok.sum()),
                curve.first,
                mean,
                curve.last,
                curve.slope_per_exercise,
                mean - ref_mean,
                curve.first - ref_first,
            )
        )
    return out
