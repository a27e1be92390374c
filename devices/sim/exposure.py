"""A simulated exposure-therapy client: EDA, ECG, exercise markers and their ground truth.

The client rests (the calibration period), then does the same exercise several times.
A latent arousal ``a(t)`` (in units of the arousal index: rest SDs) drives the physiology:

- within exercise ``k`` it rises over ``rise_s`` to a peak that habituates across
  repetitions, ``peak_k = settle + (first_peak - settle) * peak_habituation ** (k - 1)``,
  holds for ``hold_s``, then habituates within the exercise towards ``settle`` (time
  constant ``within_tau_s``); after the exercise it recovers towards 0
  (``recovery_tau_s``);
- each cue adds a brief bump (``cue_arousal`` for ``cue_arousal_s``) and evokes an SCR
  1-3 s later whose median amplitude habituates across exercises;
- the skin conductance level rises by ``scl_sd_us * a`` (lagging by ``scl_tau_s``), the
  rate of SCRs by ``rate_sd_per_min * a`` per minute (on top of the generator's
  2 per minute), and the heart rate by ``hr_sd_bpm * a`` (approached with the ECG
  generator's 3 s lag).

EDA comes from :class:`stimloop.devices.sim.eda.EDAGenerator` (its own SCRs, noise and a
slow drift of the level; the extra SCRs through ``trigger_event``), ECG from
:class:`stimloop.devices.sim.ecg.ECGGenerator` (``set_heart_rate``). Both are used
through their public interface; neither file is changed.

**Truth.** Two versions, both on a 10 Hz grid:

- ``index`` / ``band`` (what the estimator is scored against): the arousal index as
  :mod:`stimloop.dsp.arousal` defines it (``scenario.arousal``), applied to *perfectly
  measured* physiology: the noise-free skin conductance (a noise-free twin of the EDA
  generator), every SCR at its true onset (no detection, no confirmation delay), the
  heart rate of the true beats; calibrated on the same rest. Written here apart from
  ``dsp/arousal.py``. Its band uses the window's hysteresis but not the dwell (the
  estimator's guard against noise); the crossing times and due alerts follow from it.
  What separates the estimate from it is measurement: sensor noise, SCRs missed, merged
  or confirmed late, R-peak timing.
- ``design_index`` / ``design_band``: the expected z-scores under the design (``a``
  through the SCL lag; the expected SCR rate over the window; ``a`` through the HR lag),
  without the randomness of this client's SCRs, heartbeats and rest. It shows how far
  one session's physiology expresses the designed arousal.

Markers are sent as PsychoPy would send them: JSON per ``docs/exposure.md`` on a string
outlet of its own, written here with ``json.dumps`` as an outside program would (no
``"schema"`` field, integer ratings), not with stimloop's builders, so that parsing them
tests the schema as documented.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.signal import lfilter

from stimloop.devices.sim.ecg import ECGGenerator
from stimloop.devices.sim.eda import EDAGenerator
from stimloop.dsp.arousal import ArousalParams, BandParams
from stimloop.dsp.exposure import HYPER, HYPO, WITHIN
from stimloop.stream.replay import Player
from stimloop.stream.xdf import info_xml, write_xdf

#: Simulation step, s: the generators are advanced, the heart-rate target set and
#: arousal-driven SCRs drawn once per step (cues fall on the step grid).
STEP_S = 0.5
#: Rate of the truth stream, Hz.
TRUTH_HZ = 10.0
#: The calibration rest is marked from this time (s) to ``rest_s - 5``.
CALIBRATION_START_S = 10.0


@dataclass(frozen=True)
class ExposureScenario:
    """What the simulated client does (all times in s, arousal in index units).

    Attributes
    ----------
    seed : int
        Seed of every random stream.
    eda_fs, ecg_fs : float
        Sampling rates, Hz (multiples of ``1 / STEP_S`` = 2 Hz).
    rest_s : float
        Calibration rest before the first exercise (marked from 10 s to ``rest_s - 5``;
        5 min by default, the usual resting baseline).
    n_exercises : int
        Repetitions of the exercise.
    exercise_s, gap_s, tail_s : float
        Length of each exercise, of the recovery between two, and after the last.
    first_peak, peak_habituation, settle : float
        Peak arousal of exercise k: ``settle + (first_peak - settle) * h ** (k - 1)``.
    rise_s, hold_s, within_tau_s, recovery_tau_s : float
        Shape of the arousal within and after an exercise.
    cues_per_exercise : int
        Cues spread evenly over each exercise.
    cue_arousal, cue_arousal_s : float
        Height and length of the arousal bump after a cue.
    cue_scr_us, cue_scr_habituation : float
        Median evoked-SCR amplitude at the first exercise (µS) and its factor per
        repetition.
    scl_us : float
        Resting skin conductance level, µS (the generator's own drift is that of 1 µS).
    scl_sd_us, rate_sd_per_min, hr_sd_bpm : float
        One arousal unit per channel: SCL µS, SCRs per minute, HR bpm (the designed rest
        SDs; equal to :class:`stimloop.dsp.arousal.ArousalParams` floors and to the
        generators' rest variability).
    scl_tau_s : float
        Lag of the SCL behind arousal, s.
    hr_bpm : float
        Resting heart rate, bpm.
    ecg_snr_db : float
        ECG noise, dB.
    arousal : ArousalParams
        The arousal index definition the truth uses (give the estimator the same).
    bands : BandParams
        The window of tolerance the truth bands use.
    """

    seed: int = 0
    eda_fs: float = 100.0
    ecg_fs: float = 500.0
    rest_s: float = 300.0
    n_exercises: int = 6
    exercise_s: float = 150.0
    gap_s: float = 90.0
    tail_s: float = 60.0
    first_peak: float = 8.0
    peak_habituation: float = 0.6
    settle: float = 2.0
    rise_s: float = 8.0
    hold_s: float = 40.0
    within_tau_s: float = 25.0
    recovery_tau_s: float = 12.0
    cues_per_exercise: int = 3
    cue_arousal: float = 0.5
    cue_arousal_s: float = 8.0
    cue_scr_us: float = 0.5
    cue_scr_habituation: float = 0.8
    scl_us: float = 5.0
    scl_sd_us: float = 0.1
    rate_sd_per_min: float = 2.0
    hr_sd_bpm: float = 2.5
    scl_tau_s: float = 4.0
    hr_bpm: float = 70.0
    ecg_snr_db: float = 30.0
    arousal: ArousalParams = field(default_factory=ArousalParams)
    bands: BandParams = field(default_factory=BandParams)

    def __post_init__(self) -> None:
        for name in ("eda_fs", "ecg_fs"):
            fs = getattr(self, name)
            if not (fs > 0 and abs(fs * STEP_S - round(fs * STEP_S)) < 1e-9):
                raise ValueError(
                    f"{name} must be a positive multiple of {1 / STEP_S:g} Hz, got {fs!r}"
                )
        if self.n_exercises < 1:
            raise ValueError(f"n_exercises must be >= 1, got {self.n_exercises!r}")
        if self.rest_s < 90.0:
            raise ValueError(
                f"rest_s must be >= 90 s (calibration needs 60 s), got {self.rest_s!r}"
            )
        if self.rise_s + self.hold_s > self.exercise_s:
            raise ValueError("rise_s + hold_s must fit in exercise_s")

    @property
    def duration_s(self) -> float:
        """Length of the session, s."""
        n = self.n_exercises
        return self.rest_s + n * self.exercise_s + (n - 1) * self.gap_s + self.tail_s

    def intervals(self) -> np.ndarray:
        """(start, end) of each exercise, s from the session start; shape (n, 2)."""
        k = np.arange(self.n_exercises)
        start = self.rest_s + k * (self.exercise_s + self.gap_s)
        return np.column_stack([start, start + self.exercise_s])

    def peaks(self) -> np.ndarray:
        """Designed peak arousal of each exercise (before cue bumps)."""
        k = np.arange(self.n_exercises)
        return self.settle + (self.first_peak - self.settle) * self.peak_habituation**k

    def cue_times(self) -> np.ndarray:
        """Cue times, s (on the simulation step grid), sorted; shape (n * cues,)."""
        iv = self.intervals()
        frac = np.arange(1, self.cues_per_exercise + 1) / (self.cues_per_exercise + 1)
        t = iv[:, :1] + frac[None, :] * self.exercise_s
        return np.round(t.ravel() / STEP_S) * STEP_S


@dataclass
class ExposureTruth:
    """What the simulated client really did.

    Attributes
    ----------
    t : ndarray
        Truth grid at :data:`TRUTH_HZ`, s from the session start.
    arousal : ndarray
        Latent arousal on the grid.
    design_index, design_band : ndarray
        The expected index under the design, and its band (see the module text).
    index : ndarray
        The arousal index of perfectly measured physiology (see the module text).
    z_scl, z_rate, z_hr : ndarray
        Its three standardised channels.
    band : ndarray of int8
        Its band (``HYPO``, ``WITHIN``, ``HYPER``) under ``bands``: with the window's
        hysteresis, without the estimator's dwell.
    exercise : ndarray of int64
        Exercise number at each grid sample (0 outside exercises).
    intervals : ndarray, shape (n, 2)
        Exercises, s.
    peaks : ndarray
        Designed peak arousal per exercise.
    expressed_peaks : ndarray
        Peak of ``index`` per exercise (the habituation curve this client expressed).
    cue_t : ndarray
        Cue times, s.
    cue_exercise : ndarray of int64
        Exercise of each cue.
    cue_scr_onset_t, cue_scr_amplitude_us : ndarray
        The SCR each cue evoked (onset s, amplitude µS).
    crossings : ndarray, shape (k, 3)
        (t, from band, to band) of every band change of ``index``.
    episodes : ndarray, shape (k, 4)
        Above-the-window episodes of ``index`` (from going above ``high`` until falling
        below ``high - hysteresis``): start, end, when the alert is due
        (``bands.alert_after_s`` into it; NaN if it ended sooner), peak index.
    bands : BandParams
    """

    t: np.ndarray
    arousal: np.ndarray
    design_index: np.ndarray
    design_band: np.ndarray
    index: np.ndarray
    z_scl: np.ndarray
    z_rate: np.ndarray
    z_hr: np.ndarray
    band: np.ndarray
    exercise: np.ndarray
    intervals: np.ndarray
    peaks: np.ndarray
    expressed_peaks: np.ndarray
    cue_t: np.ndarray
    cue_exercise: np.ndarray
    cue_scr_onset_t: np.ndarray
    cue_scr_amplitude_us: np.ndarray
    crossings: np.ndarray
    episodes: np.ndarray
    bands: BandParams

    @property
    def alert_due_t(self) -> np.ndarray:
        """Times at which an alert is due, s."""
        due = self.episodes[:, 2]
        return due[np.isfinite(due)]


@dataclass
class ExposureSimulation:
    """A simulated session: raw signals, the markers as sent, and the truth.

    Times are s from the session start (sample ``i`` of a signal at ``i / fs``).

    Attributes
    ----------
    scenario : ExposureScenario
    eda_us : ndarray
        Skin conductance, µS, at ``scenario.eda_fs``.
    ecg_mv : ndarray
        ECG, mV, at ``scenario.ecg_fs``.
    markers : list of (float, str)
        Exposure markers (time s, JSON).
    truth : ExposureTruth
    """

    scenario: ExposureScenario
    eda_us: np.ndarray
    ecg_mv: np.ndarray
    markers: list[tuple[float, str]]
    truth: ExposureTruth


def _arousal(sc: ExposureScenario, t: np.ndarray) -> np.ndarray:
    """Latent arousal at times ``t`` (s), cue bumps included."""
    a = np.zeros_like(t)
    iv = sc.intervals()
    peaks = sc.peaks()
    for (s, e), p in zip(iv, peaks, strict=True):
        u = t - s
        inside = (u >= 0) & (t < e)
        ramp = np.clip(u / sc.rise_s, 0.0, 1.0) * p
        decay_from = sc.rise_s + sc.hold_s
        settle = sc.settle + (p - sc.settle) * np.exp(
            -np.maximum(u - decay_from, 0.0) / sc.within_tau_s
        )
        prof = np.where(u < sc.rise_s, ramp, np.where(u < decay_from, p, settle))
        a = np.where(inside, prof, a)
        # Recovery after the end, from the level reached at the end.
        u_end = e - s
        end_level = sc.settle + (p - sc.settle) * math.exp(
            -max(u_end - decay_from, 0.0) / sc.within_tau_s
        )
        after = t >= e
        a = np.where(after, a + end_level * np.exp(-(t - e) / sc.recovery_tau_s) * after, a)
    for c in sc.cue_times():
        u = t - c
        on = (u >= 0) & (u < sc.cue_arousal_s)
        a[on] += sc.cue_arousal * np.sin(np.pi * u[on] / sc.cue_arousal_s) ** 2
    return a


def _lag(x: np.ndarray, tau_s: float, fs: float) -> np.ndarray:
    """First-order lag (time constant ``tau_s``) of a series sampled at ``fs``, from rest."""
    alpha = 1.0 - math.exp(-1.0 / (tau_s * fs))
    return lfilter([alpha], [1.0, alpha - 1.0], x)


def _band(index: np.ndarray, bands: BandParams) -> np.ndarray:
    """The band of each sample with the window's hysteresis and no dwell.

    The first sample takes its plain band; then a higher band is entered above its edge
    + hysteresis and a lower one below its edge - hysteresis (the band definition of
    :class:`stimloop.dsp.arousal.BandParams`; the dwell is the estimator's guard against
    noise, which the truth does not need).
    """
    lo, hi, h = bands.low, bands.high, bands.hysteresis
    out = np.empty(index.size, dtype=np.int8)
    s = HYPO if index[0] < lo else (HYPER if index[0] > hi else WITHIN)
    for i, x in enumerate(index):
        if x > hi + h:
            s = HYPER
        elif x < lo - h:
            s = HYPO
        elif s == HYPER and x < hi - h:
            s = WITHIN
        elif s == HYPO and x > lo + h:
            s = WITHIN
        out[i] = s
    return out


def simulate_exposure(scenario: ExposureScenario | None = None) -> ExposureSimulation:
    """Simulate one exposure session (deterministic for a given scenario).

    Parameters
    ----------
    scenario : ExposureScenario, optional

    Returns
    -------
    ExposureSimulation
    """
    sc = scenario or ExposureScenario()
    n_steps = round(sc.duration_s / STEP_S)
    cues = sc.cue_times()
    p_scr, draw, cue_amp = _scr_schedule(sc, cues, n_steps)
    eda, clean, ecg, scrs, rpeaks = _generate(sc, n_steps, cues, draw, cue_amp)
    t_eda = np.arange(eda.size) / sc.eda_fs
    tonic_shift = (sc.scl_us - 1.0) + sc.scl_sd_us * _lag(
        _arousal(sc, t_eda), sc.scl_tau_s, sc.eda_fs
    )
    eda += tonic_shift
    clean += tonic_shift
    # The tonic level alone: the generator's drift (a twin without SCRs) plus the shift.
    drift_gen = EDAGenerator(
        sc.eda_fs, seed=sc.seed, scl_us=1.0, spontaneous_per_min=0.0, noise_us=0.0
    )
    tonic = drift_gen.generate(eda.size)[0] + tonic_shift
    cue_ex = np.searchsorted(sc.intervals()[:, 0], cues, side="right")
    cue_on, cue_a = _cue_scrs(sc, scrs, cues)
    truth = _truth(
        sc,
        p_scr / STEP_S * 60.0,
        clean,
        tonic,
        scrs["onset"] / sc.eda_fs,
        rpeaks / sc.ecg_fs,
        cues,
        cue_ex,
        cue_on,
        cue_a,
    )
    return ExposureSimulation(sc, eda, ecg, _markers(sc, truth), truth)


def _scr_schedule(sc: ExposureScenario, cues: np.ndarray, n_steps: int):
    """Per step: the arousal-driven SCR probability, which steps draw one, and each cue's
    evoked amplitude (habituating across exercises)."""
    rng = np.random.default_rng(sc.seed + 2)
    a_steps = _arousal(sc, np.arange(n_steps) * STEP_S)
    cue_step = np.round(cues / STEP_S).astype(np.int64)
    cue_ex = np.searchsorted(sc.intervals()[:, 0], cues, side="right")
    cue_amp = sc.cue_scr_us * sc.cue_scr_habituation ** (cue_ex - 1)
    # Arousal-driven SCRs: a Poisson process thinned per step. None is drawn within 2.5 s
    # of a cue (its SCR could land in the cue's 1-3 s latency window), so the SCR a cue
    # evokes is the only evoked one there.
    near_cue = np.zeros(n_steps, dtype=bool)
    for c in cue_step:
        near_cue[max(0, c - round(2.5 / STEP_S)) : c + round(2.5 / STEP_S)] = True
    p_scr = np.where(near_cue, 0.0, np.maximum(a_steps, 0.0) * sc.rate_sd_per_min / 60.0 * STEP_S)
    return p_scr, rng.random(n_steps) < p_scr, cue_amp


def _generate(
    sc: ExposureScenario, n_steps: int, cues: np.ndarray, draw: np.ndarray, cue_amp: np.ndarray
):
    """The measured EDA and its noise-free twin, the ECG, the SCRs and the R peaks."""
    e_step = round(sc.eda_fs * STEP_S)
    c_step = round(sc.ecg_fs * STEP_S)
    # Same seed and same calls for both EDA generators, so the same SCRs (the generator
    # draws its sensor noise from a stream of its own).
    eda_gen = EDAGenerator(sc.eda_fs, seed=sc.seed, scl_us=1.0)
    clean_gen = EDAGenerator(sc.eda_fs, seed=sc.seed, scl_us=1.0, noise_us=0.0)
    ecg_gen = ECGGenerator(sc.ecg_fs, sc.hr_bpm, seed=sc.seed + 1, snr_db=sc.ecg_snr_db)
    a_steps = _arousal(sc, np.arange(n_steps) * STEP_S)
    cue_at = {int(c): k for k, c in enumerate(np.round(cues / STEP_S).astype(np.int64))}
    eda, clean = np.empty(n_steps * e_step), np.empty(n_steps * e_step)
    ecg = np.empty(n_steps * c_step)
    scr_rows, peaks = [], []
    base_median = eda_gen.median_amplitude_us
    for j in range(n_steps):
        k = cue_at.get(j)
        if k is not None or draw[j]:
            for gen in (eda_gen, clean_gen):
                gen.median_amplitude_us = float(cue_amp[k]) if k is not None else base_median
                gen.trigger_event()
                gen.median_amplitude_us = base_median
        ecg_gen.set_heart_rate(float(np.clip(sc.hr_bpm + sc.hr_sd_bpm * a_steps[j], 30, 220)))
        x, rows = eda_gen.generate(e_step)
        eda[j * e_step : (j + 1) * e_step] = x
        clean[j * e_step : (j + 1) * e_step] = clean_gen.generate(e_step)[0]
        scr_rows.append(rows)
        y, r = ecg_gen.generate(c_step)
        ecg[j * c_step : (j + 1) * c_step] = y
        peaks.append(r)
    scrs = np.concatenate(scr_rows)
    return eda, clean, ecg, scrs[np.argsort(scrs["onset"], kind="stable")], np.concatenate(peaks)


def _cue_scrs(sc: ExposureScenario, scrs: np.ndarray, cues: np.ndarray):
    """The SCR each cue evoked: the evoked one with onset 1-3 s after it (onset, µS)."""
    ev = scrs[scrs["evoked"]]
    ev_on = ev["onset"] / sc.eda_fs
    cue_on = np.full(cues.size, np.nan)
    cue_a = np.full(cues.size, np.nan)
    for k, c in enumerate(cues):
        sel = np.flatnonzero((ev_on >= c + 1.0 - 1e-9) & (ev_on <= c + 3.0 + 1e-9))
        if sel.size:
            cue_on[k], cue_a[k] = ev_on[sel[0]], ev["amplitude"][sel[0]]
    return cue_on, cue_a


def _design_index(sc: ExposureScenario, t: np.ndarray, extra_rate: np.ndarray, cue_on: np.ndarray):
    """Expected z-scores of the three channels under the design (no randomness)."""
    fs = TRUTH_HZ
    a = _arousal(sc, t)
    z_scl = _lag(a, sc.scl_tau_s, fs)
    z_hr = _lag(a, 3.0, fs)  # ECGGenerator approaches its target with a 3 s time constant
    # Arousal-driven SCRs (expected rate per step, per min) follow their trigger by the
    # 1-3 s latency (2 s on average), counted over the index's window; each cue adds one.
    win = sc.arousal.scr_window_s
    w = round(win * fs)
    shift = round(2.0 * fs)
    lam = np.repeat(extra_rate, round(STEP_S * fs))[: t.size]
    lam_late = np.concatenate([np.zeros(shift), lam[:-shift]])
    z_rate = lfilter(np.ones(w) / w, [1.0], lam_late) / sc.rate_sd_per_min
    for on in cue_on:
        z_rate[(t >= on) & (t < on + win)] += (60.0 / win) / sc.rate_sd_per_min
    return (z_scl + z_rate + z_hr) / 3.0


def _ideal_index(
    sc: ExposureScenario,
    t: np.ndarray,
    level: np.ndarray,
    scr_onset_s: np.ndarray,
    beat_s: np.ndarray,
    rest: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The index definition applied to perfectly measured channels (written apart from
    :mod:`stimloop.dsp.arousal`): every SCR at its true onset, the noise-free level, the
    heart rate of the true beats; calibrated on the same rest."""
    p = sc.arousal
    win = p.scr_window_s
    on = np.sort(scr_onset_s)
    rate = (
        (np.searchsorted(on, t, side="right") - np.searchsorted(on, t - win, side="right"))
        * 60.0
        / win
    )
    beat_hr = np.concatenate([[np.nan], 60.0 / np.diff(beat_s)])
    k = np.searchsorted(beat_s, t, side="right") - 1
    hr = np.where(k >= 0, beat_hr[np.maximum(k, 0)], np.nan)
    in_rest = (t >= rest[0]) & (t < rest[1])
    zs = []
    for x, floor, full in (
        (level, p.sd_floor[0], in_rest),
        (rate, p.sd_floor[1], in_rest & (t - win >= t[0])),
        (hr, p.sd_floor[2], in_rest),
    ):
        ref = x[full & np.isfinite(x)]
        zs.append((x - ref.mean()) / max(float(ref.std(ddof=1)), floor))
    w = np.asarray(p.weights, dtype=float)
    z_hr_ok = np.isfinite(zs[2])
    raw = (w[0] * zs[0] + w[1] * zs[1] + np.where(z_hr_ok, w[2] * np.nan_to_num(zs[2]), 0.0)) / (
        w[0] + w[1] + np.where(z_hr_ok, w[2], 0.0)
    )
    index = np.empty_like(raw)
    alpha = 1.0 - math.exp(-1.0 / (p.smooth_s * TRUTH_HZ)) if p.smooth_s > 0 else 1.0
    acc = raw[0]
    for i, r in enumerate(raw):
        acc = acc + alpha * (r - acc)
        index[i] = acc
    return index, zs[0], zs[1], zs[2]


def _episodes(
    t: np.ndarray, index: np.ndarray, band: np.ndarray, bands: BandParams
) -> tuple[np.ndarray, np.ndarray]:
    """Band changes (t, from, to), and the above-the-window episodes.

    An episode runs from the index going above ``high`` until it falls below
    ``high - hysteresis``; its alert is due ``alert_after_s`` into it if it lasts that
    long (the definition of :class:`stimloop.dsp.arousal.BandParams`). Rows: start, end,
    due (NaN if too short), peak index.
    """
    ch = np.flatnonzero(np.diff(band) != 0) + 1
    crossings = np.column_stack([t[ch], band[ch - 1], band[ch]]).astype(np.float64)
    eps, since, peak = [], math.nan, -math.inf
    for ti, x in zip(t, index, strict=True):
        if math.isnan(since):
            if x > bands.high:
                since, peak = ti, x
        elif x < bands.high - bands.hysteresis:
            eps.append((since, ti, peak))
            since = math.nan
        else:
            peak = max(peak, x)
    if not math.isnan(since):
        eps.append((since, float(t[-1]), peak))
    rows = [
        (a, b, a + bands.alert_after_s if b - a >= bands.alert_after_s else math.nan, pk)
        for a, b, pk in eps
    ]
    return crossings.reshape(-1, 3), np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _truth(
    sc: ExposureScenario,
    extra_rate: np.ndarray,
    clean_eda: np.ndarray,
    tonic: np.ndarray,
    scr_onset_s: np.ndarray,
    beat_s: np.ndarray,
    cues: np.ndarray,
    cue_ex: np.ndarray,
    cue_on: np.ndarray,
    cue_a: np.ndarray,
) -> ExposureTruth:
    t = np.arange(round(sc.duration_s * TRUTH_HZ)) / TRUTH_HZ
    a = _arousal(sc, t)
    design = _design_index(sc, t, extra_rate, np.where(np.isfinite(cue_on), cue_on, cues + 2.0))
    k = np.round(t * sc.eda_fs).astype(np.int64)
    level = (clean_eda if sc.arousal.level == "sc" else tonic)[k]
    rest = (CALIBRATION_START_S, sc.rest_s - 5.0)
    index, z_scl, z_rate, z_hr = _ideal_index(sc, t, level, scr_onset_s, beat_s, rest)
    band = _band(index, sc.bands)
    iv = sc.intervals()
    exercise = np.zeros(t.size, dtype=np.int64)
    expressed = np.zeros(iv.shape[0])
    for n, (s, e) in enumerate(iv):
        inside = (t >= s) & (t < e)
        exercise[inside] = n + 1
        expressed[n] = float(index[inside].max())
    crossings, episodes = _episodes(t, index, band, sc.bands)
    return ExposureTruth(
        t=t,
        arousal=a,
        design_index=design,
        design_band=_band(design, sc.bands),
        index=index,
        z_scl=z_scl,
        z_rate=z_rate,
        z_hr=z_hr,
        band=band,
        exercise=exercise,
        intervals=iv,
        peaks=sc.peaks(),
        expressed_peaks=expressed,
        cue_t=cues,
        cue_exercise=cue_ex,
        cue_scr_onset_t=cue_on,
        cue_scr_amplitude_us=cue_a,
        crossings=crossings,
        episodes=episodes,
        bands=sc.bands,
    )


def _markers(sc: ExposureScenario, truth: ExposureTruth) -> list[tuple[float, str]]:
    """The markers a PsychoPy script running this session would send."""

    def at(t: float) -> float:
        return float(np.round(t / STEP_S) * STEP_S)

    def suds(t0: float, t1: float) -> float:
        sel = (truth.t >= t0) & (truth.t <= t1)
        return float(np.clip(round(10.0 * truth.arousal[sel].max()), 0, 100))

    def m(kind: str, **fields: object) -> str:
        return json.dumps({"kind": kind, **fields})

    def rating(scale: str, value: float, **more: object) -> str:
        return m("rating", scale=scale, value=int(value), **more)

    out = [
        (CALIBRATION_START_S, m("calibration_start")),
        (at(sc.rest_s - 5.0), m("calibration_end")),
    ]
    for k, (s, e) in enumerate(truth.intervals):
        n = k + 1
        label = f"elevator ride {n}"
        out += [
            (at(s - 20.0), rating("expectancy", max(5.0, 85.0 - 12.0 * k))),
            (at(s), m("exercise_start", label=label)),
            (at(s + 3.0), rating("suds", suds(s, s + 3.0), moment="start")),
            (at(e), m("exercise_end", label=label)),
            (at(e + 3.0), rating("suds", suds(s, e), moment="peak")),
            (at(e + 5.0), rating("suds", suds(e - 5.0, e), moment="end")),
            (at(e + 15.0), rating("outcome", 10.0)),
            (at(e + 30.0), m("learned", text=f"Ride {n}: I stayed in; nothing bad happened.")),
        ]
        for i, c in enumerate(truth.cue_t[truth.cue_exercise == n]):
            out.append((float(c), m("cue", label="doors close", code=i + 1)))
    out.sort(key=lambda m: m[0])
    return out


# ---------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class BandScore:
    """How an estimated band state follows the truth (see :func:`score_bands`).

    Attributes
    ----------
    samples : int
        Samples scored (from ``t_from`` on).
    agreement_outside : float
        Fraction of samples outside transitions whose state equals the true band.
    agreement_unambiguous : float
        The same, leaving out also the samples whose true index lies within the
        hysteresis of a band edge (where either neighbouring band is a correct state,
        depending on the path taken).
    agreement_all : float
        The same over every scored sample.
    excluded_fraction : float
        Share of samples inside transitions.
    ambiguous_fraction : float
        Share of samples outside transitions but within the hysteresis of an edge.
    truth_changes, est_changes : int
        Band changes of the truth and of the estimate (flicker shows here).
    alerts_due : int
        True above-the-window episodes long enough for an alert.
    alerts_on_time : int
        Of those, alerts fired no later than ``max_delay_s`` after they were due.
    alerts_late, alerts_missed : int
        Fired later; not fired before the episode ended (+ ``max_delay_s``).
    alert_delays_s : tuple of float
        Delay of each fired alert (estimate minus due; negative = early), s.
    clear_due, clear_on_time : int
        The same for the clear episodes: the true index stays above ``high +
        hysteresis`` from ``clear_rise_s`` after the episode starts until the alert is due
        (the others hover at the edge, where the band is ambiguous by design).
    false_alerts : int
        Alerts outside every true episode (widened by ``max_delay_s``).
    max_delay_s : float
        The allowed delay: ``min_dwell_s + 1 s``.
    """

    samples: int
    agreement_outside: float
    agreement_unambiguous: float
    agreement_all: float
    excluded_fraction: float
    ambiguous_fraction: float
    truth_changes: int
    est_changes: int
    alerts_due: int
    alerts_on_time: int
    alerts_late: int
    alerts_missed: int
    alert_delays_s: tuple[float, ...]
    clear_due: int
    clear_on_time: int
    false_alerts: int
    max_delay_s: float


def score_bands(
    truth: ExposureTruth,
    t: np.ndarray,
    state: np.ndarray,
    alert: np.ndarray,
    t_from: float,
    pre_s: float = 2.0,
    post_s: float | None = None,
    clear_rise_s: float = 2.0,
) -> BandScore:
    """Score an estimated band state and alert against the truth.

    Parameters
    ----------
    truth : ExposureTruth
    t : ndarray
        Times of the estimate, s from the session start (any grid; the truth is read at
        the nearest 10 Hz sample).
    state, alert : ndarray
        Estimated band (``UNKNOWN`` counts as a mismatch) and alert flag per sample.
    t_from : float
        First time scored (the end of the calibration: no index exists before it).
    pre_s, post_s : float
        A transition spans ``[c - pre_s, c + post_s)`` around every true band change
        ``c``; ``post_s`` defaults to ``min_dwell_s + 2 s`` (the dwell the state machine
        is designed to wait, plus the estimate's own lag).
    clear_rise_s : float
        Time an episode may take to rise clear of the edge, s.

    Returns
    -------
    BandScore
    """
    b = truth.bands
    post = b.min_dwell_s + 2.0 if post_s is None else post_s
    max_delay = b.min_dwell_s + 1.0
    t = np.asarray(t, dtype=np.float64)
    scored, trans, outside, edge, unamb, match = _sample_masks(truth, t, state, t_from, pre_s, post)
    onsets = t[np.flatnonzero(np.diff(np.concatenate([[False], np.asarray(alert, bool)])) > 0)]
    onsets = onsets[onsets >= t_from]
    eps = truth.episodes[truth.episodes[:, 1] >= t_from]
    timing = _alert_timing(truth, eps, onsets, max_delay, clear_rise_s)
    st = np.asarray(state)[scored]
    return BandScore(
        samples=int(scored.sum()),
        agreement_outside=float(match[outside].mean()) if outside.any() else math.nan,
        agreement_unambiguous=float(match[unamb].mean()) if unamb.any() else math.nan,
        agreement_all=float(match[scored].mean()) if scored.any() else math.nan,
        excluded_fraction=float(trans[scored].mean()) if scored.any() else math.nan,
        ambiguous_fraction=float((edge & outside)[scored].mean()) if scored.any() else math.nan,
        truth_changes=int(np.count_nonzero(truth.crossings[:, 0] >= t_from)),
        est_changes=int(np.count_nonzero(np.diff(st) != 0)),
        alerts_due=int(np.isfinite(eps[:, 2]).sum()),
        alerts_on_time=timing.on_time,
        alerts_late=timing.late,
        alerts_missed=timing.missed,
        alert_delays_s=tuple(timing.delays),
        clear_due=timing.clear_due,
        clear_on_time=timing.clear_on_time,
        false_alerts=_false_alerts(truth, onsets, max_delay),
        max_delay_s=max_delay,
    )


class _Masks(NamedTuple):
    """Per-sample masks of :func:`score_bands` and where the state matches the truth."""

    scored: np.ndarray
    trans: np.ndarray
    outside: np.ndarray
    edge: np.ndarray
    unamb: np.ndarray
    match: np.ndarray


def _sample_masks(
    truth: ExposureTruth,
    t: np.ndarray,
    state: np.ndarray,
    t_from: float,
    pre_s: float,
    post: float,
) -> _Masks:
    """Which samples are scored, in a transition, near a band edge, and matching."""
    b = truth.bands
    k = np.clip(np.round(t * TRUTH_HZ).astype(np.int64), 0, truth.t.size - 1)
    true_band = truth.band[k]
    scored = t >= t_from
    trans = np.zeros(t.size, dtype=bool)
    for c in truth.crossings[:, 0]:
        trans |= (t >= c - pre_s) & (t < c + post)
    outside = scored & ~trans
    x = truth.index[k]
    # within the hysteresis of an edge either neighbouring band is right, by the path taken
    edge = (np.abs(x - b.low) <= b.hysteresis) | (np.abs(x - b.high) <= b.hysteresis)
    unamb = outside & ~edge
    match = np.asarray(state) == true_band
    return _Masks(scored, trans, outside, edge, unamb, match)


class _AlertTiming(NamedTuple):
    """How the alerts of :func:`score_bands` met the episodes that were due one."""

    delays: list[float]
    on_time: int
    late: int
    missed: int
    clear_due: int
    clear_on_time: int


def _alert_timing(
    truth: ExposureTruth,
    eps: np.ndarray,
    onsets: np.ndarray,
    max_delay: float,
    clear_rise_s: float,
) -> _AlertTiming:
    """Match each due episode (rows of ``eps``) with the first alert onset within it."""
    b = truth.bands
    delays, late, missed, on_time, clear_due, clear_ok = [], 0, 0, 0, 0, 0
    for start, end, due, _ in eps:
        if not np.isfinite(due):
            continue
        fired = onsets[(onsets >= start) & (onsets <= end + max_delay)]
        m = (truth.t >= start + clear_rise_s) & (truth.t <= due)
        # an episode hovering at the edge is ambiguous by design; only clear ones count
        clear = bool(m.any() and truth.index[m].min() > b.high + b.hysteresis)
        clear_due += int(clear)
        if fired.size == 0:
            missed += 1
            continue
        d = float(fired[0] - due)
        delays.append(d)
        ok = d <= max_delay
        on_time += int(ok)
        late += int(not ok)
        clear_ok += int(ok and clear)
    return _AlertTiming(delays, on_time, late, missed, clear_due, clear_ok)


def _false_alerts(truth: ExposureTruth, onsets: np.ndarray, max_delay: float) -> int:
    """How many alert onsets lie outside every true episode widened by ``max_delay`` s."""
    inside_any = np.zeros(onsets.size, dtype=bool)
    for start, end, _, _ in truth.episodes:
        inside_any |= (onsets >= start - max_delay) & (onsets <= end + max_delay)
    return int((~inside_any).sum())


# ---------------------------------------------------------------------------- publishing
def write_exposure_xdf(sim: ExposureSimulation, path: str | Path, prefix: str) -> Path:
    """Write the simulated session as an XDF file (what a recorder would have kept).

    Streams (source_id): ``{prefix}-eda`` (µS, float32), ``{prefix}-ecg`` (mV,
    float32), ``{prefix}-exposure-markers`` (JSON strings, type ``Markers``, as
    PsychoPy would send them) and ``{prefix}-exposure-truth`` (float64 at 10 Hz:
    latent ``arousal``, true ``index``, true ``band``, ``exercise`` number).

    Returns
    -------
    Path
    """
    sc = sim.scenario
    streams = [
        _signal_stream("EDA", "uS", f"{prefix}-eda", sc.eda_fs, sim.eda_us),
        _signal_stream("ECG", "mV", f"{prefix}-ecg", sc.ecg_fs, sim.ecg_mv),
        _marker_stream(sim.markers, f"{prefix}-exposure-markers"),
        _truth_stream(sim.truth, f"{prefix}-exposure-truth", sc),
    ]
    p = Path(path)
    write_xdf(p, streams, samples_per_chunk=1000)
    return p


#: One stream for :func:`stimloop.stream.xdf.write_xdf`: (info XML, format, times, values).
_XDFStream = tuple[str, str, np.ndarray, np.ndarray | list]


def _signal_stream(kind: str, unit: str, source_id: str, fs: float, x: np.ndarray) -> _XDFStream:
    """One float32 channel of ``kind`` (``"EDA"``, ``"ECG"``), sample ``i`` at ``i / fs``."""
    info = info_xml(
        f"stimloop-sim {kind}",
        kind,
        source_id,
        [{"label": kind, "unit": unit, "type": kind}],
        fs,
        "float32",
    )
    return info, "float32", np.arange(x.size) / fs, x[:, None]


def _marker_stream(markers: list[tuple[float, str]], source_id: str) -> _XDFStream:
    """The exposure markers as PsychoPy would send them: one JSON string per sample."""
    info = info_xml(
        "PsychoPy exposure markers",
        "Markers",
        source_id,
        [{"label": "marker", "unit": "", "type": "Marker"}],
        0.0,
        "string",
    )
    return info, "string", np.array([m[0] for m in markers]), [[m[1]] for m in markers]


def _truth_stream(tr: ExposureTruth, source_id: str, sc: ExposureScenario) -> _XDFStream:
    """The truth at 10 Hz, with the scenario in the header so the file stands alone."""
    info = info_xml(
        "stimloop-sim exposure truth",
        "Truth",
        source_id,
        [
            {"label": "arousal", "unit": "z", "type": "Arousal"},
            {"label": "design_index", "unit": "z", "type": "Arousal"},
            {"label": "index", "unit": "z", "type": "Arousal"},
            {"label": "band", "unit": "state", "type": "Band"},
            {"label": "exercise", "unit": "number", "type": "Index"},
        ],
        TRUTH_HZ,
        "double64",
        {"scenario": json.dumps(asdict(sc), default=str)},
    )
    values = np.column_stack(
        [tr.arousal, tr.design_index, tr.index, tr.band.astype(float), tr.exercise.astype(float)]
    )
    return info, "double64", tr.t, values


def publish_exposure(
    sim: ExposureSimulation,
    prefix: str,
    *,
    speed: float = 1.0,
    directory: str | Path | None = None,
    wait_for_consumers_s: float = 0.0,
) -> Player:
    """Publish a simulated session over LSL in real time (or ``speed`` times faster).

    The session is written to an XDF file (:func:`write_exposure_xdf`) and replayed by
    :class:`stimloop.stream.replay.Player`, which paces every stream against the LSL
    clock; sample ``i`` is stamped ``player.t_start + (i / fs) / speed``.

    Parameters
    ----------
    sim : ExposureSimulation
    prefix : str
        Source_id prefix (unique per session).
    speed : float
        Playback speed.
    directory : path, optional
        Where to write the file (default: a new temporary directory).
    wait_for_consumers_s : float
        Wait up to this long for a consumer on every stream before starting the clock.

    Returns
    -------
    Player
        Started; call ``stop()`` (or use it as a context manager) when done.
    """
    folder = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="exposure-"))
    )
    path = write_exposure_xdf(sim, folder / f"{prefix}.xdf", prefix)
    return Player(path, speed=speed, wait_for_consumers_s=wait_for_consumers_s).start()
