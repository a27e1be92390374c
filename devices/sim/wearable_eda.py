"""A second EDA test generator: wearable-style recordings with labelled SCRs and artifacts.

Written independently of :mod:`stimloop.devices.sim.eda` (whose SCRs are bi-exponentials
with one narrow range of time constants, white noise and no artifacts), so that the SCR
detector is tested on cases that were not used to build it. What differs:

- **SCR shapes.** Every SCR is a sudomotor burst (a Gaussian of width σ, or an impulse)
  convolved with a sum of exponentials, in one of two published forms:

  - the *canonical SCRF* of Bach, Flandin, Friston & Dolan (2010), "Modelling
    event-related skin conductance responses", Int J Psychophysiol 75:349-356: a Gaussian
    (σ = 0.7013 s) convolved with ``exp(-λ1 t) + exp(-λ2 t)`` (λ1 = 0.3176 /s,
    λ2 = 0.0708 /s; the values PsPM distributes for it), i.e. a smooth sigmoid rise and a
    two-stage recovery whose slow part (τ ≈ 14 s) lingers;
  - the *Bateman function* of Benedek & Kaernbach (2010), "A continuous measure of
    phasic electrodermal activity", J Neurosci Methods 190:80-91:
    ``exp(-t/τ2) - exp(-t/τ1)`` (τ1 rise, τ2 decay), driven by an impulse (a sharp onset)
    or by a Gaussian burst of 0.1-0.4 s.

  Rise and decay constants are drawn per SCR over wide ranges (below), so rise times run
  from about 0.6 to 4 s. A Gaussian convolved with an exponential has a closed form (the
  exponentially modified Gaussian), so the continuous-time model is evaluated exactly at
  any time and therefore at any sampling rate.
- **Overlap.** Besides non-specific SCRs (Poisson) and SCRs evoked by events, *bursts* of
  2-4 SCRs 1.2-4 s apart pile onto each other's rise and recovery.
- **Noise.** Pink (1/f) noise, specified by its standard deviation in the 0.05-1 Hz band
  where SCRs live, plus white electronic noise per sample.
- **Tonic level.** A smooth random walk (Ornstein-Uhlenbeck with τ = 120 s sampled every
  20 s, joined by a cubic spline) plus a linear trend, around a level drawn between 2 and
  12 µS. Its slope stays within about ±0.01 µS/s.
- **Motion artifacts.** *Steps* (the contact pressure changes: a lasting offset of
  0.08-1 µS reached within 20-150 ms) and *spikes* (a Hann-shaped transient of 0.15-3 µS,
  50-400 ms long), up or down, at random times. Their intervals are labelled.
- **Device.** The model is averaged over each sample period (a wearable's oversampling
  ADC; at least 64 Hz internally), then quantised either in uniform conductance steps
  (0.01 µS, as wristbands report) or through a 12-bit ADC reading a voltage divider (the
  common constant-voltage front end: the conductance step grows with the level, about
  0.005 µS at 5 µS and 0.014 µS at 12 µS with a 200 kΩ series resistor).

Ground truth is defined on each SCR's own (isolated) curve: the **amplitude** is its
maximum, the **peak** the time of that maximum, and the **onset** the first time it
reaches 2 % of its amplitude (for a sharp Bateman onset, the burst time; for a smooth
one, where the rise becomes visible, about 2 σ before the burst centre). Two labels mark
SCRs that a scorer cannot be asked to find: ``near_artifact`` (a motion artifact
overlaps its rise) and ``masked`` (its rise coincides with the rise or peak of an SCR at
least ``MASK_RATIO`` = 3 times larger). Everything is seeded; the same seed gives the same
physiology, artifacts and events at every rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import erfc, erfcx

#: dtype of the ground-truth SCRs. Times in s from the first sample; indices at ``fs``.
WEARABLE_SCR_DTYPE = np.dtype(
    [
        ("onset", np.int64),
        ("peak", np.int64),
        ("onset_s", np.float64),
        ("peak_s", np.float64),
        ("amplitude", np.float64),  # µS
        ("shape", np.int8),  # SHAPE_SCRF or SHAPE_BATEMAN
        ("burst_sigma_s", np.float64),  # width of the sudomotor burst, s (0: impulse)
        ("tau_rise_s", np.float64),  # Bateman τ1, or 1/λ1 of the SCRF, s
        ("tau_decay_s", np.float64),  # Bateman τ2, or 1/λ2 of the SCRF, s
        ("evoked", np.bool_),
        ("in_burst", np.bool_),
        ("near_artifact", np.bool_),  # its rise overlaps a motion artifact (see below)
        ("masked", np.bool_),  # hidden by a much larger SCR (see MASK_RATIO)
    ]
)

#: dtype of the labelled motion artifacts.
ARTIFACT_DTYPE = np.dtype(
    [
        ("start", np.int64),
        ("end", np.int64),  # first sample after the artifact
        ("start_s", np.float64),
        ("end_s", np.float64),
        ("kind", np.int8),  # ARTIFACT_STEP or ARTIFACT_SPIKE
        ("size_us", np.float64),  # signed: offset of a step, extreme of a spike
    ]
)

SHAPE_SCRF = 0
SHAPE_BATEMAN = 1
ARTIFACT_STEP = 1
ARTIFACT_SPIKE = 2

#: Canonical SCRF of Bach et al. (2010): burst width σ (s) and decay rates λ1, λ2 (1/s).
SCRF_SIGMA_S = 0.7013
SCRF_LAMBDA = (0.3176, 0.0708)

#: Onset criterion: fraction of its own amplitude an SCR has reached at its onset.
ONSET_FRACTION = 0.02
#: A true SCR whose span from onset - 1 s to peak + 1 s touches an artifact interval is
#: labelled ``near_artifact``: an artifact on a rise hides it, so it need not be found.
NEAR_ARTIFACT_PAD_S = 1.0
#: A true SCR is labelled ``masked`` when its rise (onset to peak) overlaps the rise or the
#: first second after the peak of an SCR at least this many times larger: its own upstroke
#: then only bends the larger one's, and trough-to-peak scoring cannot separate it
#: (Boucsein 2012 scores superimposed SCRs only where they show as a separate rise).
MASK_RATIO = 3.0


@dataclass(frozen=True)
class WearableEDAConfig:
    """Settings of :func:`simulate_wearable_eda` (defaults: a labile wrist recording).

    Attributes
    ----------
    spontaneous_per_min : float
        Rate of single non-specific SCRs, per min.
    bursts_per_min : float
        Rate of bursts of 2-4 SCRs 1.2-4 s apart, per min.
    event_interval_s : (float, float)
        Events (stimuli) come every U(lo, hi) s.
    event_response_prob : float
        Probability that an event evokes an SCR (its burst 1-3 s after the event).
    amplitude_median_us, amplitude_log_sd : float
        Log-normal SCR amplitude (µS): median and standard deviation of its logarithm.
    amplitude_range_us : (float, float)
        Amplitudes are clipped to this range, µS.
    scrf_fraction : float
        Share of SCRs with the canonical SCRF shape; the rest are Bateman.
    scl_range_us : (float, float)
        The tonic level starts log-uniformly within this range, µS.
    scl_walk_us : float
        Standard deviation of the tonic random walk (Ornstein-Uhlenbeck, τ = 120 s), µS.
    scl_trend_us_per_10min : float
        The linear tonic trend is drawn uniformly within ± this, µS per 10 min.
    pink_us : float
        Standard deviation of the pink (1/f) noise within 0.05-1 Hz, µS.
    white_us : float
        Standard deviation of white noise per output sample, µS.
    min_onset_gap_s : float
        SCRs whose onsets would lie closer than this to an earlier-drawn one are not
        generated: sudomotor bursts so close fuse into one response that no scorer can
        split (evoked SCRs are drawn first, then bursts, then single non-specific ones).
    artifacts_per_min : float
        Rate of motion artifacts (half steps, half spikes), per min.
    quantisation : {"step", "divider", "none"}
        ``"step"``: round to multiples of ``step_us``; ``"divider"``: a ``adc_bits`` ADC
        reads a voltage divider with a ``divider_kohm`` series resistor.
    step_us : float
        Uniform quantisation step, µS.
    adc_bits : int
        ADC resolution of the divider front end.
    divider_kohm : float
        Series resistor of the divider, kΩ (sets where the conductance steps are finest).
    """

    spontaneous_per_min: float = 2.5
    bursts_per_min: float = 0.6
    event_interval_s: tuple[float, float] = (10.0, 25.0)
    event_response_prob: float = 0.75
    amplitude_median_us: float = 0.2
    amplitude_log_sd: float = 0.9
    amplitude_range_us: tuple[float, float] = (0.005, 3.0)
    scrf_fraction: float = 0.5
    scl_range_us: tuple[float, float] = (2.0, 12.0)
    scl_walk_us: float = 0.3
    scl_trend_us_per_10min: float = 0.4
    pink_us: float = 0.003
    white_us: float = 0.002
    min_onset_gap_s: float = 1.0
    artifacts_per_min: float = 0.6
    quantisation: str = "step"
    step_us: float = 0.01
    adc_bits: int = 12
    divider_kohm: float = 200.0


@dataclass(frozen=True)
class WearableEDA:
    """A simulated recording and its ground truth.

    Attributes
    ----------
    eda_us : ndarray, shape (n,)
        Skin conductance in µS, sample ``k`` at ``k / fs`` s.
    fs : float
        Sampling rate, Hz.
    scrs : ndarray (``WEARABLE_SCR_DTYPE``)
        Every SCR whose onset lies in the recording, sorted by onset.
    artifacts : ndarray (``ARTIFACT_DTYPE``)
        Every motion artifact, sorted by start.
    events : ndarray of int64
        Sample index of each event (stimulus).
    clean_us : ndarray, shape (n,)
        The same recording without artifacts, noise and quantisation (SCL + SCRs), µS.
    config : WearableEDAConfig
    """

    eda_us: np.ndarray
    fs: float
    scrs: np.ndarray
    artifacts: np.ndarray
    events: np.ndarray
    clean_us: np.ndarray
    config: WearableEDAConfig = field(default_factory=WearableEDAConfig)


def _emg(u: np.ndarray, sigma: float, lam: float) -> np.ndarray:
    """A Gaussian burst (width ``sigma`` s, unit area) convolved with ``exp(-lam t)``.

    The exponentially modified Gaussian, 0.5 exp(λ²σ²/2 - λu) erfc((λσ² - u) / (σ√2)); the
    scaled complementary error function keeps it finite far from the burst. ``sigma`` = 0
    gives the plain exponential from ``u`` = 0 on.
    """
    if sigma == 0.0:
        return np.where(u >= 0.0, np.exp(-lam * np.clip(u, 0.0, None)), 0.0)
    z = (lam * sigma**2 - u) / (sigma * np.sqrt(2.0))
    out = np.empty_like(u)
    pos = z > 0
    # For z > 0: exp(λ²σ²/2 - λu) erfc(z) = exp(-u²/(2σ²)) erfcx(z), no overflow.
    out[pos] = 0.5 * np.exp(-(u[pos] ** 2) / (2.0 * sigma**2)) * erfcx(z[pos])
    up = u[~pos]
    out[~pos] = 0.5 * np.exp(0.5 * lam**2 * sigma**2 - lam * up) * erfc(z[~pos])
    return out


@dataclass(frozen=True)
class _SCR:
    burst_s: float  # centre of the sudomotor burst, s
    amplitude: float
    shape: int
    sigma: float
    lam: tuple[float, float]
    weights: tuple[float, float]
    evoked: bool
    in_burst: bool

    def curve(self, u: np.ndarray) -> np.ndarray:
        """Unnormalised response at ``u`` s after the burst centre."""
        return self.weights[0] * _emg(u, self.sigma, self.lam[0]) + self.weights[1] * _emg(
            u, self.sigma, self.lam[1]
        )

    def support_s(self) -> tuple[float, float]:
        """From where it starts to where it has decayed below 1e-6 of its peak, s."""
        return -6.0 * self.sigma, 14.0 / min(self.lam)

    def landmarks(self) -> tuple[float, float, float]:
        """Scale (peak of :meth:`curve`), onset and peak time relative to the burst, s."""
        lo, _ = self.support_s()
        u = np.arange(lo, 40.0, 0.001)
        c = self.curve(u)
        k = int(np.argmax(c))
        peak = float(c[k])
        onset = float(u[int(np.argmax(c >= ONSET_FRACTION * peak))])
        return peak, onset, float(u[k])


def _draw_scr(rng: np.random.Generator, cfg: WearableEDAConfig, burst_s: float, **kw) -> _SCR:
    lo, hi = cfg.amplitude_range_us
    amp = float(
        np.clip(
            cfg.amplitude_median_us * np.exp(cfg.amplitude_log_sd * rng.standard_normal()), lo, hi
        )
    )
    if rng.uniform() < cfg.scrf_fraction:
        # Canonical SCRF with its three time constants scaled independently.
        sigma = SCRF_SIGMA_S * rng.uniform(0.5, 1.4)
        lam = (SCRF_LAMBDA[0] * rng.uniform(0.6, 1.6), SCRF_LAMBDA[1] * rng.uniform(0.6, 1.6))
        return _SCR(burst_s, amp, SHAPE_SCRF, sigma, lam, (1.0, 1.0), **kw)
    tau1 = float(np.exp(rng.uniform(np.log(0.35), np.log(1.4))))
    tau2 = float(np.exp(rng.uniform(np.log(max(2.0 * tau1, 1.5)), np.log(8.0))))
    sigma = 0.0 if rng.uniform() < 0.5 else float(rng.uniform(0.1, 0.4))
    return _SCR(burst_s, amp, SHAPE_BATEMAN, sigma, (1.0 / tau2, 1.0 / tau1), (1.0, -1.0), **kw)


def _poisson_times(rng: np.random.Generator, rate_per_min: float, t_end: float) -> np.ndarray:
    if rate_per_min <= 0:
        return np.zeros(0)
    n = rng.poisson(rate_per_min * t_end / 60.0)
    return np.sort(rng.uniform(0.0, t_end, n))


def _pink(rng: np.random.Generator, n: int, fs: float, sd_band: float) -> np.ndarray:
    """Pink noise with one-sided PSD c / f, scaled so its 0.05-1 Hz share has ``sd_band``."""
    if sd_band <= 0 or n < 4:
        return np.zeros(n)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    f_lo = 1.0 / 300.0  # flat below: the tonic level model owns slower wandering
    # Power in [f1, f2] is c ln(f2 / f1); the band is 0.05 Hz to min(1 Hz, Nyquist).
    c = sd_band**2 / np.log(min(1.0, fs / 2.0) / 0.05)
    # A white unit-variance sequence has one-sided PSD 2 / fs; shape it to c / f.
    gain = np.sqrt(c * fs / (2.0 * np.maximum(f, f_lo)))
    gain[0] = 0.0
    spec = np.fft.rfft(rng.standard_normal(n)) * gain
    return np.fft.irfft(spec, n)


def _scl(rng: np.random.Generator, cfg: WearableEDAConfig, t_end: float):
    lo, hi = cfg.scl_range_us
    level = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    # Knots 20 s apart: the tonic level wanders over minutes and holds no SCR-like
    # wiggle of its own (a walk on a finer grid would put them in the SCR band).
    knots = np.arange(-20.0, t_end + 40.0, 20.0)
    a = np.exp(-20.0 / 120.0)
    walk = np.zeros(knots.size)
    innov = rng.standard_normal(knots.size) * cfg.scl_walk_us * np.sqrt(1.0 - a * a)
    walk[0] = cfg.scl_walk_us * rng.standard_normal()
    for i in range(1, knots.size):
        walk[i] = a * walk[i - 1] + innov[i]
    trend = rng.uniform(-1.0, 1.0) * cfg.scl_trend_us_per_10min / 600.0
    values = level + walk + trend * knots
    # Keep the tonic level physiological whatever the draw.
    values = np.maximum(values, 0.5 * lo)
    return CubicSpline(knots, values)


def _artifacts(rng: np.random.Generator, cfg: WearableEDAConfig, t_end: float) -> list:
    out = []
    for t0 in _poisson_times(rng, cfg.artifacts_per_min, t_end - 2.0):
        sign = 1.0 if rng.uniform() < 0.5 else -1.0
        if rng.uniform() < 0.5:
            size = sign * float(np.exp(rng.uniform(np.log(0.08), np.log(1.0))))
            out.append((ARTIFACT_STEP, t0 + 1.0, float(rng.uniform(0.02, 0.15)), size))
        else:
            size = sign * float(np.exp(rng.uniform(np.log(0.15), np.log(3.0))))
            out.append((ARTIFACT_SPIKE, t0 + 1.0, float(rng.uniform(0.05, 0.4)), size))
    return out


def _artifact_curve(t: np.ndarray, arts: list) -> np.ndarray:
    y = np.zeros_like(t)
    for kind, t0, dur, size in arts:
        u = np.clip((t - t0) / dur, 0.0, 1.0)
        if kind == ARTIFACT_STEP:
            y += size * 0.5 * (1.0 - np.cos(np.pi * u))  # raised-cosine ramp, then held
        else:
            y += size * 0.5 * (1.0 - np.cos(2.0 * np.pi * u))  # Hann pulse
    return y


def _quantise(x: np.ndarray, cfg: WearableEDAConfig) -> np.ndarray:
    if cfg.quantisation == "none":
        return x
    if cfg.quantisation == "step":
        return np.round(x / cfg.step_us) * cfg.step_us
    if cfg.quantisation == "divider":
        # V / Vcc = G R / (1 + G R) is what the ADC reads; G = code / (full - code) / R.
        full = 2**cfg.adc_bits - 1
        r_mohm = cfg.divider_kohm / 1000.0  # µS x MΩ is dimensionless
        gr = np.clip(x, 0.0, None) * r_mohm
        code = np.clip(np.round(full * gr / (1.0 + gr)), 0, full - 1)
        return code / (full - code) / r_mohm
    raise ValueError(f"quantisation must be 'step', 'divider' or 'none', got {cfg.quantisation!r}")


def simulate_wearable_eda(
    fs: float, minutes: float, seed: int, config: WearableEDAConfig | None = None
) -> WearableEDA:
    """Simulate a wearable EDA recording with labelled SCRs, events and motion artifacts.

    See the module text for the model and its sources. The physiology (SCRs, tonic level,
    events) and the artifacts depend only on ``seed`` and ``config``, not on ``fs``; noise
    is drawn per rate.

    Parameters
    ----------
    fs : float
        Sampling rate, Hz (any rate from 1 Hz up).
    minutes : float
        Length, min.
    seed : int
        Seed of every random draw.
    config : WearableEDAConfig, optional
        Settings; the defaults model a labile wrist recording.

    Returns
    -------
    WearableEDA
        Signal (µS), SCR truth (onset at 2 % of each SCR's own amplitude, peak, amplitude
        in µS), artifact intervals and events.
    """
    fs = float(fs)
    if not np.isfinite(fs) or fs < 1.0:
        raise ValueError(f"fs must be a finite rate of at least 1 Hz, got {fs!r}")
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    cfg = config or WearableEDAConfig()
    t_end = minutes * 60.0
    n = round(t_end * fs)
    r_scr, r_ev, r_scl, r_art, r_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    events, drawn = _draw_scrs(r_scr, r_ev, cfg, t_end)
    scrs = _separated(drawn, cfg)
    arts = _artifacts(r_art, cfg, t_end)

    # The device averages the continuous signal over each sample period (>= 64 Hz inside).
    m = max(1, int(np.ceil(64.0 / fs)))
    offsets = ((np.arange(m) + 0.5) / m - 0.5) / fs if m > 1 else np.zeros(1)
    t_fine = (np.arange(n)[:, None] / fs + offsets[None, :]).ravel()
    clean, rows = _clean_curve(_scl(r_scl, cfg, t_end), scrs, t_fine, t_end, fs)
    clean_dev = clean.reshape(n, m).mean(axis=1)
    art_dev = _artifact_curve(t_fine, arts).reshape(n, m).mean(axis=1)
    x = clean_dev + art_dev
    x = x + _pink(r_noise, n, fs, cfg.pink_us) + cfg.white_us * r_noise.standard_normal(n)
    x = _quantise(np.clip(x, 0.0, None), cfg)
    truth, art = _labelled_truth(rows, arts, fs)
    ev = np.round(np.asarray(events) * fs).astype(np.int64)
    return WearableEDA(x, fs, truth, art, ev, clean_dev, cfg)


def _draw_scrs(
    r_scr: np.random.Generator, r_ev: np.random.Generator, cfg: WearableEDAConfig, t_end: float
) -> tuple[list[float], list[_SCR]]:
    """Event times (s) and the SCRs drawn: evoked ones first, then bursts, then singles."""
    drawn: list[_SCR] = []
    events = []
    t = float(r_ev.uniform(*cfg.event_interval_s))
    while t < t_end - 5.0:
        events.append(t)
        if r_ev.uniform() < cfg.event_response_prob:
            burst = t + r_ev.uniform(1.0, 3.0)
            drawn.append(_draw_scr(r_scr, cfg, burst, evoked=True, in_burst=False))
        t += float(r_ev.uniform(*cfg.event_interval_s))
    for b in _poisson_times(r_scr, cfg.bursts_per_min, t_end):
        tb = float(b)
        for _ in range(int(r_scr.integers(2, 5))):
            drawn.append(_draw_scr(r_scr, cfg, tb, evoked=False, in_burst=True))
            tb += float(r_scr.uniform(1.2, 4.0))
    for b in _poisson_times(r_scr, cfg.spontaneous_per_min, t_end):
        drawn.append(_draw_scr(r_scr, cfg, float(b), evoked=False, in_burst=False))
    return events, drawn


def _separated(drawn: list[_SCR], cfg: WearableEDAConfig) -> list[tuple[_SCR, float, float, float]]:
    """The SCRs kept, with scale, onset and peak (s): none near an earlier one's onset."""
    # min_onset_gap_s: bursts so close fuse into one response no scorer can split
    scrs: list[tuple[_SCR, float, float, float]] = []
    onsets: list[float] = []
    for s in drawn:
        scale, on_rel, pk_rel = s.landmarks()
        on_s = s.burst_s + on_rel
        if onsets and np.min(np.abs(np.asarray(onsets) - on_s)) < cfg.min_onset_gap_s:
            continue
        onsets.append(on_s)
        scrs.append((s, scale, on_s, s.burst_s + pk_rel))
    return scrs


def _clean_curve(
    scl: CubicSpline,
    scrs: list[tuple[_SCR, float, float, float]],
    t_fine: np.ndarray,
    t_end: float,
    fs: float,
) -> tuple[np.ndarray, list[tuple]]:
    """Tonic level plus every SCR on the fine grid, and a truth row per SCR starting inside."""
    clean = scl(t_fine)
    rows = []
    for s, scale, on_s, pk_s in scrs:
        lo, hi = s.support_s()
        i0 = np.searchsorted(t_fine, s.burst_s + lo)
        i1 = np.searchsorted(t_fine, s.burst_s + hi)
        clean[i0:i1] += s.amplitude / scale * s.curve(t_fine[i0:i1] - s.burst_s)
        if 0.0 <= on_s < t_end:
            rows.append(
                (
                    round(on_s * fs),
                    round(pk_s * fs),
                    on_s,
                    pk_s,
                    s.amplitude,
                    s.shape,
                    s.sigma,
                    1.0 / max(s.lam),
                    1.0 / min(s.lam),
                    s.evoked,
                    s.in_burst,
                    False,  # near_artifact and masked are set once all rows are known
                    False,
                )
            )
    return clean, rows


def _labelled_truth(rows: list[tuple], arts: list, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """The SCR truth by onset with its labels set, and the artifact table by start."""
    truth = np.array(rows, dtype=WEARABLE_SCR_DTYPE)
    truth = truth[np.argsort(truth["onset_s"], kind="stable")]
    art = np.zeros(len(arts), dtype=ARTIFACT_DTYPE)
    for i, (kind, t0, dur, size) in enumerate(sorted(arts, key=lambda a: a[1])):
        art[i] = (
            int(np.floor(t0 * fs)),
            int(np.ceil((t0 + dur) * fs)) + 1,
            t0,
            t0 + dur,
            kind,
            size,
        )
    for a in art:
        hit = (truth["onset_s"] - NEAR_ARTIFACT_PAD_S <= a["end_s"]) & (
            truth["peak_s"] + NEAR_ARTIFACT_PAD_S >= a["start_s"]
        )
        truth["near_artifact"] |= hit
    on, pk, amp = truth["onset_s"], truth["peak_s"], truth["amplitude"]
    # see MASK_RATIO: such an SCR only bends the upstroke of the larger one
    overlap = (on[:, None] <= pk[None, :] + 1.0) & (pk[:, None] >= on[None, :])
    truth["masked"] = np.any(overlap & (amp[None, :] >= MASK_RATIO * amp[:, None]), axis=1)
    return truth, art
