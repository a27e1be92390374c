"""A second, independently written ECG test generator: ectopic beats and artifacts.

It exists to test the R-peak detector on cases that were not used to build it
(``devices/sim/ecg.py`` was). It shares no code with that simulator and is built
differently:

* **Morphology: the ECGSYN ODE, integrated.** McSharry PE, Clifford GD, Tarassenko L,
  Smith LA (2003), "A dynamical model for generating synthetic electrocardiogram
  signals", IEEE Trans Biomed Eng 50(3):289-294. The ECG is the ``z`` of
  ``dz/dt = -sum_i a_i dtheta_i exp(-dtheta_i^2 / (2 b_i^2)) - (z - z0)`` with
  ``dtheta_i = theta - theta_i``, integrated numerically (exponential integrator, at
  >= 4 kHz internally) rather than evaluated in closed form, so the leak term
  ``-(z - z0)`` gives every wave the slight asymmetry of the model. Each beat runs on its
  own phase ``theta = 2 pi (t - t_R) / RR_sinus``, so a premature beat keeps its shape.
  ECGSYN's heart-rate scaling of wave angles and widths (``sqrt(HR / 60)``) is applied
  per beat.
* **RR: the ECGSYN tachogram.** A bimodal spectrum (Mayer wave at 0.1 Hz, RSA at
  0.25 Hz, both 0.01 Hz wide, LF/HF 0.5) turned into a series by an inverse FFT with
  random phases (McSharry et al. 2003, section II-A).
* **Ectopic beats.** Sinus rhythm is the schedule of normal beats; ectopic beats are
  inserted into it the way the textbooks describe them (e.g. Goldberger AL, *Clinical
  Electrocardiography*, chapters on premature beats):

  - *PVC* (AAMI class V): premature (coupling 55-75 % of the sinus RR), no P wave, a wide
    QRS (widths x2-3, 130-200 ms, by default) of 1.5-2.8 mV, a large discordant T wave, and a full
    compensatory pause (the next sinus beat keeps its time, so the two intervals around
    the PVC sum to 2 RR).
    Two morphologies: *upright* (a tall wide R followed by a deep S and a deep
    discordant ST-T about 150-250 ms later, the case where a detector may mark the S/T
    deflection) and *inverted* (a deep QS with a positive T).
  - *APC* (AAMI class S): premature (coupling 60-80 %), a narrow QRS like the normal one,
    an abnormal P wave, and the sinus node reset (the next beat one sinus RR later, so
    the pause is not compensatory).
* **Artifacts.** Baseline steps (0.5-3 mV, rising in 1-10 ms, decaying with 0.3-3 s or
  not at all, as an AC-coupled amplifier does after an electrode pop), motion (bursts of
  0.5-8 Hz band-limited noise, 1-4 s long) and white noise; TMS pulse artifacts
  (:func:`tms_artifacts`) for trains at known pulse times (:func:`train_pulses`).

Truth: the sample of each beat's fiducial (the extremum of the dominant QRS deflection
of the clean, noise- and artifact-free ECG), its class, the underlying sinus RR, and
the times of every artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.signal import butter, lfilter, sosfiltfilt

__all__ = [
    "CLASS_APC",
    "CLASS_NORMAL",
    "CLASS_PVC",
    "ArrhythmiaTruth",
    "simulate_arrhythmia",
    "tms_artifacts",
    "train_pulses",
]

CLASS_NORMAL = "N"  #: sinus beat (AAMI N)
CLASS_APC = "S"  #: atrial premature complex (AAMI S)
CLASS_PVC = "V"  #: premature ventricular complex (AAMI V)

# ECGSYN defaults (McSharry et al. 2003, Table I) for P, Q, R, S, T: angles (deg) and
# widths (rad). Amplitudes are given here as the height in mV of each resulting wave at
# 60 bpm (the paper's a_i = 1.2, -5, 30, -7.5, 0.75 give these shapes after its output
# scaling); _to_model() turns them back into the model's a_i. With ECGSYN's heart-rate
# scaling (widths x sqrt(HR / 60)) a wave's height a_i b_i^2 / omega does not change
# with the rate.
_THETA_DEG = np.array([-70.0, -15.0, 0.0, 15.0, 100.0])
_AMP_MV = np.array([0.3, -0.2, 1.2, -0.3, 0.48])
_B = np.array([0.25, 0.1, 0.1, 0.1, 0.4])


def _to_model(amp_mv: np.ndarray, b: np.ndarray) -> np.ndarray:
    # the height of a wave of the ODE at omega = 2 pi (60 bpm) is a b^2 / (2 pi)
    return amp_mv * 2 * np.pi / b**2


@dataclass(frozen=True)
class ArrhythmiaTruth:
    """What :func:`simulate_arrhythmia` put into the signal.

    Attributes
    ----------
    r_index : ndarray of int64
        Sample of each beat's fiducial: the extremum of its dominant QRS deflection
        (maximum for an upright complex, minimum for an inverted one) in the clean ECG.
    beat_class : ndarray of str
        ``"N"``, ``"S"`` (APC) or ``"V"`` (PVC) per beat.
    polarity : ndarray of int8
        +1 if the beat's dominant deflection is upright, -1 if inverted.
    sinus_rr_s : ndarray
        Sinus RR in s at each beat (the interval the rhythm had without ectopy); a
        corrected heart rate should follow ``60 / sinus_rr_s``.
    step_index : ndarray of int64
        Onset sample of each baseline step.
    step_mv : ndarray
        Size of each step in mV.
    motion : ndarray of int64, shape (n, 2)
        Start and stop sample of each motion burst.
    fs : float
        Sampling rate in Hz.
    """

    r_index: np.ndarray
    beat_class: np.ndarray
    polarity: np.ndarray
    sinus_rr_s: np.ndarray
    step_index: np.ndarray
    step_mv: np.ndarray
    motion: np.ndarray
    fs: float
    params: dict = field(default_factory=dict)


def _tachogram(n_beats: int, rr_mean_s: float, rr_sd_s: float, rng) -> np.ndarray:
    """ECGSYN's RR series: bimodal spectrum, random phases, inverse FFT (1 value per beat)."""
    n = 1 << int(np.ceil(np.log2(max(n_beats, 16) * 2)))
    # sampled once per mean RR, so frequency in Hz is k / (n * rr_mean)
    f = np.fft.rfftfreq(n, d=rr_mean_s)
    lf_hf = 0.5
    s = lf_hf * np.exp(-((f - 0.1) ** 2) / (2 * 0.01**2)) + np.exp(
        -((f - 0.25) ** 2) / (2 * 0.01**2)
    )
    spec = np.sqrt(s) * np.exp(1j * rng.uniform(0, 2 * np.pi, f.size))
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)[:n_beats]
    sd = x.std()
    x = x / sd if sd > 0 else x
    return rr_mean_s + rr_sd_s * x


def _wave_set(
    kind: str,
    variant: str,
    rng,
    pvc_widening: tuple[float, float],
    pvc_mv: tuple[float, float],
    pvc_t_ratio: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Angles (rad), model amplitudes a_i and widths b_i (rad) of one beat's waves."""
    theta = np.deg2rad(_THETA_DEG)
    amp = _AMP_MV.copy()
    b = _B.copy()
    if kind == CLASS_APC:
        # ectopic atrial focus: a different, often smaller or inverted P wave, same QRS
        amp[0] *= rng.choice([-0.6, 0.5, 0.7])
        theta[0] = np.deg2rad(-60.0)
        amp[2] *= rng.uniform(0.9, 1.05)
    elif kind == CLASS_PVC:
        w = rng.uniform(*pvc_widening)  # QRS widening
        amp[0] = 0.0  # no P wave
        b[1:4] = _B[1:4] * w
        b[4] = 0.4 * rng.uniform(1.0, 1.3)
        if variant == "upright":
            # tall wide R, deep S, then a deep discordant ST-T 150-200 ms after R
            theta[1:] = np.deg2rad([-25.0, 0.0, 32.0, rng.uniform(60.0, 85.0)])
            r = rng.uniform(*pvc_mv)
            amp[1:] = [-0.1, r, rng.uniform(-0.9, -0.5), -r * rng.uniform(*pvc_t_ratio)]
        else:
            # inverted: small initial r, deep wide QS, discordant positive T
            theta[1:] = np.deg2rad([-28.0, 0.0, 30.0, rng.uniform(70.0, 95.0)])
            q = rng.uniform(*pvc_mv)
            amp[1:] = [0.15, -q, 0.0, q * rng.uniform(*pvc_t_ratio)]
    return theta, _to_model(amp, b), b


def _integrate(forcing: np.ndarray, h: float) -> np.ndarray:
    """z' = forcing - z, exact for a piecewise-linear forcing (first-order hold).

    The recursion z[k] = e z[k-1] + c0 f[k-1] + c1 f[k], with e = exp(-h), is an IIR
    filter with one pole at e.
    """
    e = np.exp(-h)
    c1 = 1.0 - (1.0 - e) / h
    c0 = (1.0 - e) / h - e
    return lfilter([c1, c0], [1.0, -e], forcing)


def simulate_arrhythmia(
    duration_s: float = 120.0,
    fs: float = 360.0,
    seed: int = 0,
    hr_bpm: float = 70.0,
    hrv_sd_ms: float = 25.0,
    pvc_per_min: float = 4.0,
    apc_per_min: float = 4.0,
    pvc_inverted: float = 0.5,
    pvc_widening: tuple[float, float] = (2.0, 3.0),
    pvc_mv: tuple[float, float] = (1.5, 2.8),
    pvc_t_ratio: tuple[float, float] = (0.25, 0.5),
    steps_per_min: float = 0.0,
    motion_per_min: float = 0.0,
    motion_mv: float = 0.4,
    noise_mv: float = 0.02,
    wander_mv: float = 0.1,
    invert: bool = False,
) -> tuple[np.ndarray, ArrhythmiaTruth]:
    """Simulate an ECG lead with PVCs, APCs, baseline steps and motion, with truth.

    Parameters
    ----------
    duration_s : float
        Length in s.
    fs : float
        Sampling rate in Hz (100-4096).
    seed : int
        Seed of every random draw.
    hr_bpm : float
        Mean sinus heart rate in bpm (40-150).
    hrv_sd_ms : float
        Standard deviation of the sinus RR tachogram in ms.
    pvc_per_min, apc_per_min : float
        Mean number of PVCs / APCs per minute (placed at random normal beats, never two
        ectopic beats in a row).
    pvc_inverted : float
        Fraction of PVCs with the inverted (QS) morphology; the rest are upright.
    pvc_widening : tuple of float
        Range of the factor on the QRS wave widths of a PVC (default 2-3: a QRS of
        130-200 ms; 2.5-3.5 gives 170-240 ms).
    pvc_mv : tuple of float
        Range of the height of a PVC's dominant wave in mV.
    pvc_t_ratio : tuple of float
        Range of the height of a PVC's discordant T wave, as a fraction of its dominant
        wave (opposite sign).
    steps_per_min : float
        Baseline steps per minute (0.5-3 mV, random sign; none within 120 ms of an R).
    motion_per_min : float
        Motion bursts per minute (0.5-8 Hz noise, 1-4 s, RMS ``motion_mv``).
    motion_mv : float
        RMS of a motion burst in mV.
    noise_mv : float
        RMS of white noise in mV.
    wander_mv : float
        Amplitude of a 0.2-0.3 Hz respiratory baseline wander in mV.
    invert : bool
        Flip the lead.

    Returns
    -------
    ecg_mv : ndarray, shape (n,)
        The ECG in mV.
    truth : ArrhythmiaTruth
        Fiducial sample, class and sinus RR of every beat, and the artifacts.
    """
    _check_arguments(duration_s, fs, hr_bpm)
    rng = np.random.default_rng(seed)
    schedule = _beat_schedule(
        rng, duration_s, hr_bpm, hrv_sd_ms, pvc_per_min, apc_per_min, pvc_inverted
    )
    clean, beats = _clean_ecg(rng, fs, duration_s, schedule, (pvc_widening, pvc_mv, pvc_t_ratio))
    spec = _ArtifactSpec(wander_mv, steps_per_min, motion_per_min, motion_mv, noise_mv)
    ecg, steps, motion = _add_artifacts(clean, rng, fs, duration_s, beats.r_index, spec)
    sign = -1.0 if invert else 1.0
    params = {"seed": seed, "hr_bpm": hr_bpm, "duration_s": duration_s}
    return sign * ecg, _truth(beats, steps, motion, fs, sign, params)


class _Schedule(NamedTuple):
    """Beat times (s), classes, PVC morphologies and the sinus RR (s) at each beat."""

    times: np.ndarray
    kinds: list[str]
    variants: list[str]
    sinus: np.ndarray


class _Beats(NamedTuple):
    """The beats kept in the truth: fiducial sample, class, polarity, sinus RR (s)."""

    r_index: np.ndarray
    beat_class: np.ndarray
    polarity: np.ndarray
    sinus_rr_s: np.ndarray


class _ArtifactSpec(NamedTuple):
    """The artifact settings of :func:`simulate_arrhythmia` (mV, per minute)."""

    wander_mv: float
    steps_per_min: float
    motion_per_min: float
    motion_mv: float
    noise_mv: float


def _check_arguments(duration_s: float, fs: float, hr_bpm: float) -> None:
    """Refuse a rate, heart rate or length the model is not built for."""
    if not 100.0 <= fs <= 4096.0:
        raise ValueError(f"fs must be within 100-4096 Hz, got {fs}")
    if not 40.0 <= hr_bpm <= 150.0:
        raise ValueError(f"hr_bpm must be within 40-150 bpm, got {hr_bpm}")
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0 s, got {duration_s}")


def _beat_schedule(
    rng: np.random.Generator,
    duration_s: float,
    hr_bpm: float,
    hrv_sd_ms: float,
    pvc_per_min: float,
    apc_per_min: float,
    pvc_inverted: float,
) -> _Schedule:
    """Sinus rhythm from the tachogram, with ectopic beats inserted into it."""
    rr_mean = 60.0 / hr_bpm
    n_sinus = int(duration_s / rr_mean * 1.3) + 8
    rr = np.clip(_tachogram(n_sinus, rr_mean, hrv_sd_ms / 1e3, rng), 0.3, 2.0)
    p_pvc = pvc_per_min * rr_mean / 60.0
    p_apc = apc_per_min * rr_mean / 60.0
    times, kinds, variants, sinus = [], [], [], []
    t = 0.6
    k = 0
    last_ectopic = True  # never start with an ectopic beat
    while t < duration_s + 1.0 and k < n_sinus - 1:
        u = rng.random()
        if not last_ectopic and u < p_pvc:
            c = rng.uniform(0.55, 0.75)
            times.append(t - rr[k] + c * rr[k])  # replaces this sinus beat, keeps the next
            kinds.append(CLASS_PVC)
            variants.append("inverted" if rng.random() < pvc_inverted else "upright")
            sinus.append(rr[k])
            t += rr[k + 1]
            k += 1
            last_ectopic = True
            continue
        if not last_ectopic and u < p_pvc + p_apc:
            c = rng.uniform(0.6, 0.8)
            t_apc = t - rr[k] + c * rr[k]
            times.append(t_apc)
            kinds.append(CLASS_APC)
            variants.append("")
            sinus.append(rr[k])
            t = t_apc + rr[k + 1] * rng.uniform(1.0, 1.1)  # sinus node reset
            k += 1
            last_ectopic = True
            continue
        times.append(t)
        kinds.append(CLASS_NORMAL)
        variants.append("")
        sinus.append(rr[k])
        t += rr[k + 1]
        k += 1
        last_ectopic = False
    return _Schedule(np.asarray(times), kinds, variants, np.asarray(sinus))


def _clean_ecg(
    rng: np.random.Generator,
    fs: float,
    duration_s: float,
    schedule: _Schedule,
    pvc_shape: tuple[tuple[float, float], tuple[float, float], tuple[float, float]],
) -> tuple[np.ndarray, _Beats]:
    """The ECGSYN ODE beat by beat on its own phase; the beats kept, with their fiducials."""
    n = round(duration_s * fs)
    up = max(1, int(np.ceil(4000.0 / fs)))
    fsi = fs * up
    ni = n * up
    ti = np.arange(ni) / fsi
    forcing = np.zeros(ni)
    times, kinds, variants, sinus = schedule
    dom = np.zeros(times.size)  # time of the dominant wave centre
    pol = np.ones(times.size, np.int8)
    for j, (tr, kind, var, rrs) in enumerate(zip(times, kinds, variants, sinus, strict=True)):
        theta, a, b = _wave_set(kind, var, rng, *pvc_shape)
        hrfact = np.sqrt(1.0 / rrs)  # sqrt(HR / 60)
        theta = theta * np.array([np.sqrt(hrfact), hrfact, 1.0, hrfact, hrfact])
        b = b * hrfact
        w = 2 * np.pi / rrs
        lo, hi = np.searchsorted(ti, (tr - 0.6 * rrs, tr + 0.75 * rrs))
        ph = w * (ti[lo:hi] - tr)
        d = ph[:, None] - theta[None, :]
        forcing[lo:hi] -= (np.exp(-(d**2) / (2 * b**2)) * d) @ a
        big = int(np.argmax(np.abs(a[1:4] * b[1:4] ** 2))) + 1
        dom[j] = tr + theta[big] / w
        pol[j] = 1 if a[big] > 0 else -1
    clean = _integrate(forcing, 1.0 / fsi)[::up]
    r_idx, half = _fiducials(clean, dom, pol, fs)
    # a beat whose search window is cut by either end has no trustworthy fiducial
    inside = (r_idx > half) & (r_idx < n - half)
    beats = _Beats(r_idx[inside], np.asarray(kinds)[inside], pol[inside], sinus[inside])
    return clean, beats


def _fiducials(
    clean: np.ndarray, dom: np.ndarray, pol: np.ndarray, fs: float
) -> tuple[np.ndarray, int]:
    """Each beat's fiducial sample (-1 if off the signal) and the search half width."""
    # the extremum of the dominant deflection near its wave centre, in the clean ECG
    n = clean.size
    r_idx = np.empty(dom.size, np.int64)
    half = max(2, round(0.05 * fs))
    for j in range(dom.size):
        c = round(dom[j] * fs)
        lo, hi = max(0, c - half), min(n, c + half + 1)
        if lo >= hi:
            r_idx[j] = -1
            continue
        seg = pol[j] * clean[lo:hi]
        r_idx[j] = lo + int(np.argmax(seg))
    return r_idx, half


def _add_artifacts(
    clean: np.ndarray,
    rng: np.random.Generator,
    fs: float,
    duration_s: float,
    r_index: np.ndarray,
    spec: _ArtifactSpec,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Wander, baseline steps, motion and noise on a copy of the clean ECG, in that order."""
    # the draws keep the order they always had, so a seed gives the same recording
    n = clean.size
    ecg = clean.copy()
    if spec.wander_mv:
        tt = np.arange(n) / fs
        f_resp = rng.uniform(0.2, 0.3)
        ecg += spec.wander_mv * np.sin(2 * np.pi * f_resp * tt + rng.uniform(0, 2 * np.pi))
    n_steps = rng.poisson(spec.steps_per_min * duration_s / 60.0) if spec.steps_per_min else 0
    steps = _add_steps(ecg, rng, fs, r_index, n_steps)
    n_mot = rng.poisson(spec.motion_per_min * duration_s / 60.0) if spec.motion_per_min else 0
    motion = _add_motion(ecg, rng, fs, n_mot, spec.motion_mv)
    if spec.noise_mv:
        ecg += spec.noise_mv * rng.standard_normal(n)
    return ecg, steps, motion


def _add_steps(
    ecg: np.ndarray, rng: np.random.Generator, fs: float, r_index: np.ndarray, n_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Add ``n_steps`` baseline steps (none within 120 ms of an R); onsets and sizes (mV)."""
    n = ecg.size
    tt = np.arange(n) / fs
    step_idx, step_mv = [], []
    guard = int(0.12 * fs)
    tries = 0
    while len(step_idx) < n_steps and tries < 100 * (n_steps + 1):
        tries += 1
        s = int(rng.integers(int(2 * fs), n - 1))
        if np.any(np.abs(r_index - s) < guard) or any(abs(s - q) < fs for q in step_idx):
            continue
        size = rng.uniform(0.5, 3.0) * rng.choice([-1.0, 1.0])
        rise = rng.uniform(0.001, 0.01)
        tau = rng.choice([rng.uniform(0.3, 3.0), np.inf])
        x = (tt - s / fs) / rise
        edge = np.clip(x, 0.0, 1.0)
        decay = np.exp(-np.maximum(tt - s / fs - rise, 0.0) / tau) if np.isfinite(tau) else 1.0
        ecg += size * edge * decay
        step_idx.append(s)
        step_mv.append(size)
    order = np.argsort(step_idx)
    return np.asarray(step_idx, np.int64)[order], np.asarray(step_mv)[order]


def _add_motion(
    ecg: np.ndarray, rng: np.random.Generator, fs: float, n_mot: int, motion_mv: float
) -> np.ndarray:
    """Add ``n_mot`` bursts of 0.5-8 Hz noise; their (start, stop) samples, shape (n, 2)."""
    n = ecg.size
    motion = []
    sos = butter(2, [0.5, 8.0], "bandpass", fs=fs, output="sos")
    for _ in range(n_mot):
        dur = rng.uniform(1.0, 4.0)
        a0 = int(rng.integers(int(2 * fs), max(int(2 * fs) + 1, n - int(dur * fs))))
        m = int(dur * fs)
        burst = sosfiltfilt(sos, rng.standard_normal(m + int(2 * fs)))[int(fs) : int(fs) + m]
        burst *= np.hanning(m) / max(np.std(burst), 1e-12) * motion_mv * np.sqrt(2.0)
        ecg[a0 : a0 + m] += burst[: n - a0]
        motion.append((a0, min(n, a0 + m)))
    return np.asarray(motion, np.int64).reshape(-1, 2)


def _truth(
    beats: _Beats,
    steps: tuple[np.ndarray, np.ndarray],
    motion: np.ndarray,
    fs: float,
    sign: float,
    params: dict,
) -> ArrhythmiaTruth:
    """The truth record; ``sign`` flips the polarities and step sizes of an inverted lead."""
    return ArrhythmiaTruth(
        r_index=beats.r_index,
        beat_class=beats.beat_class,
        polarity=(sign * beats.polarity).astype(np.int8),
        sinus_rr_s=beats.sinus_rr_s,
        step_index=steps[0],
        step_mv=sign * steps[1],
        motion=motion,
        fs=float(fs),
        params=params,
    )


def train_pulses(
    fs: float,
    n_samples: int,
    rate_hz: float = 10.0,
    on_s: float = 5.0,
    off_s: float = 11.0,
    start_s: float = 5.0,
) -> np.ndarray:
    """Sample indices of TMS pulses in trains (NCG-TMS: 10 Hz, 5 s on, 11 s off).

    Parameters
    ----------
    fs : float
        ECG sampling rate in Hz.
    n_samples : int
        Length of the recording in samples.
    rate_hz : float
        Pulse rate within a train in Hz.
    on_s, off_s : float
        Train length and pause in s.
    start_s : float
        Time of the first pulse in s.

    Returns
    -------
    ndarray of int64
        Pulse sample indices, increasing.
    """
    out = []
    t0 = start_s
    end = n_samples / fs
    while t0 < end:
        k = np.arange(round(on_s * rate_hz))
        out.append(t0 + k / rate_hz)
        t0 += on_s + off_s
    t = np.concatenate(out) if out else np.empty(0)
    idx = np.rint(t * fs).astype(np.int64)
    return idx[idx < n_samples]


def tms_artifacts(
    n_samples: int,
    fs: float,
    pulse_index: np.ndarray,
    seed: int = 0,
    spike_mv: float = 8.0,
    decay_mv: float = 1.5,
    decay_ms: float = 4.0,
) -> np.ndarray:
    """Additive ECG artifact of TMS pulses: a biphasic spike and an amplifier decay.

    Each pulse gives a 1-sample-per-ms biphasic spike of ``spike_mv`` (random sign and
    +-30 % size, as coil orientation and lead geometry vary) and an exponential recovery
    of ``decay_mv`` with time constant ``decay_ms``, a common shape of TMS artifacts in
    ECG and EEG amplifiers (e.g. Veniero D et al. 2009, "TMS-EEG co-registration: on TMS-
    induced artifact", Clin Neurophysiol 120:1392-1399).

    Parameters
    ----------
    n_samples : int
        Length of the ECG.
    fs : float
        Sampling rate in Hz.
    pulse_index : ndarray of int
        Sample of each pulse.
    seed : int
        Seed of the per-pulse variation.
    spike_mv, decay_mv : float
        Peak of the spike and start of the decay in mV.
    decay_ms : float
        Time constant of the decay in ms.

    Returns
    -------
    ndarray, shape (n_samples,)
        The artifact in mV, to be added to the ECG.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(n_samples)
    spike_len = max(2, round(0.002 * fs))
    tail = round(8 * decay_ms * 1e-3 * fs)
    kern_t = np.arange(tail) / fs
    decay = np.exp(-kern_t / (decay_ms * 1e-3))
    for p in np.asarray(pulse_index, np.int64):
        if not 0 <= p < n_samples:
            continue
        s = rng.choice([-1.0, 1.0]) * rng.uniform(0.7, 1.3)
        half = spike_len // 2
        out[p : p + half] += s * spike_mv
        out[p + half : p + spike_len] -= s * spike_mv * 0.6
        a = p + spike_len
        m = min(tail, n_samples - a)
        if m > 0:
            out[a : a + m] += s * decay_mv * decay[:m]
    return out
