"""Heart-brain coupling (HBC): the metrics of neuro-cardiac-guided TMS (NCG-TMS).

NCG-TMS stimulates candidate scalp sites with 10 Hz trains and ranks them by how
strongly the heart rate follows the stimulation rhythm (the frontal-vagal network:
DLPFC - sgACC - vagus; Iseger et al. 2020, "A frontal-vagal network theory for Major
Depressive Disorder: implications for optimizing neuromodulation techniques", Brain
Stimulation 13(1):1-9; Iseger et al. 2017, the first NCG-TMS report of heart-rate
deceleration under frontal 10 Hz trains). The protocol whose figures this module
computes is the 10 Hz "Dash" protocol of Dijkstra et al. (2023), "Transcranial Magnetic
Stimulation-Induced Heart-Brain Coupling: Implications for Site Selection and Frontal
Thresholding - Preliminary Findings", Biol Psychiatry Glob Open Sci 3(4):939-947:
trains of 5 s at 10 Hz, 11 s off, so one cycle lasts 16 s and the coupling is read at
1/16 Hz = 0.0625 Hz; per site 16 cycles, cycle 0 at rest, then 15 of increasing
intensity. NCG-TMS 2.0 (Feng, Martin et al. 2025, "Target-specificity and repeatability
in neuro-cardiac-guided TMS for heart-brain coupling", bioRxiv 10.1101/2025.02.19.638988)
runs the same 10 Hz protocol at several DLPFC sites and reports HBC rising non-linearly
with intensity and site-specifically.

Per cycle (its onset is the train onset; for the rest cycle, the time a train would
have started):

* **HR change**: the mean HR over the train and the 5 s after it (``[onset, onset +
  train_s + post_s)``) minus the mean over the 5 s before it (``[onset - pre_s,
  onset)``), in bpm and in % of the latter; negative is a deceleration (Iseger et al.
  2017).
* **HBC**: the natural log of the mean Morlet-wavelet power of the HR series at the
  train frequency within the cycle ``[onset, onset + cycle_s)``, the cycle's segment
  being mirror-padded at both edges before the transform (Dijkstra et al. 2023).

Conventions of this implementation (the papers give the method, not these details;
docs/hbc.md says why each was chosen):

* The segment's mean is removed before padding, so the mean HR cannot leak into the
  power at 0.0625 Hz.
* The wavelet is the complex Morlet with ``n_cycles`` cycles (Gaussian SD in time
  ``n_cycles / (2 pi f)``), amplitude-normalised: a sinusoid of amplitude A bpm at the
  train frequency has power A**2 bpm**2, so HBC = 2 ln(A / 1 bpm). HBC is therefore in
  ln(bpm**2).
* Missing HR samples (NaN: flagged beats, lost signal) are bridged by linear
  interpolation when they are at most ``max_nan_fraction`` of the window; beyond that the
  figure is NaN and the cycle is marked invalid, never scored from garbage.

Per site: HBC by intensity, its least-squares slope across intensities, and the count of
intensities whose HBC exceeds ``threshold``. Best site: the most intensities above
threshold, ties to the higher mean HBC; also reported, the alternative rule: the argmax
of the mean normalised HBC over the upper ``n_upper`` intensities (normalised by the
mean and SD of every cycle of the run; see :func:`rank_sites`).

The same functions serve offline analysis and the live loop: :class:`HBCTracker` feeds
the growing HR series and the cycle boundaries and hands out each cycle's figures as
soon as its window is complete, computed by :func:`cycle_metrics` on exactly the samples
the offline call uses, so live equals offline to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from stimloop.dsp.errors import DSPError
from stimloop.dsp.heart import FLAG_IBI_JUMP, FLAG_IBI_RANGE, HeartMonitor, pulse_blank_mask

__all__ = [
    "CYCLE_DTYPE",
    "DEFAULT_THRESHOLD",
    "Cycle",
    "HBCInputError",
    "HBCParams",
    "HBCTracker",
    "Localisation",
    "SiteSummary",
    "cycle_metrics",
    "dash_schedule",
    "hr_from_ecg",
    "localise",
    "morlet_power",
    "rank_sites",
    "summarise_site",
]

#: Default coupling threshold in ln(bpm**2). No numeric threshold could be found in the
#: published descriptions available to us (Dijkstra et al. 2023; Feng et al. 2025; see
#: docs/hbc.md), and the value of one is tied to the power normalisation, which the
#: papers do not give. This default is calibrated on real resting heart rate: it is the
#: 95th percentile of the HBC of 16 s windows of MIT-BIH 100 (5.5 % of its windows
#: exceed it; 14.1 % of the systole task recording's, 3.8 % of the virtual subject's at
#: rest; ``bench/hbc.py``). It equals a 1/16 Hz oscillation of 2.7 bpm (e**1).
DEFAULT_THRESHOLD = 2.0


class HBCInputError(DSPError):
    """Invalid argument or input of an HBC function (names what and what is allowed)."""


@dataclass(frozen=True)
class HBCParams:
    """Timing and scoring settings of the HBC metrics.

    Attributes
    ----------
    cycle_s : float
        Cycle length in s (train on + off): 16 s in the 10 Hz Dash protocol.
    train_s : float
        Train duration in s (5 s).
    pre_s : float
        Baseline window before the onset, s (5 s).
    post_s : float
        Window after the train's end counted with the train, s (5 s).
    freq_hz : float or None
        Frequency at which HBC is read, Hz; None means ``1 / cycle_s`` (0.0625 Hz).
    n_cycles : float
        Cycles of the Morlet wavelet (3). More cycles narrow the band but smear the
        estimate over neighbouring cycles' mirrored data.
    threshold : float
        Coupling threshold on HBC in ln(bpm**2); see :data:`DEFAULT_THRESHOLD`.
    min_above : int
        A site *passes* (a target is found there) when at least this many intensities
        exceed the threshold.
    n_upper : int
        Intensities (the highest) averaged by the alternative rule.
    max_nan_fraction : float
        Largest fraction of missing HR samples bridged in a window (0-1).
    """

    cycle_s: float = 16.0
    train_s: float = 5.0
    pre_s: float = 5.0
    post_s: float = 5.0
    freq_hz: float | None = None
    n_cycles: float = 3.0
    threshold: float = DEFAULT_THRESHOLD
    min_above: int = 4
    n_upper: int = 5
    max_nan_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("cycle_s", "train_s", "pre_s", "post_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise HBCInputError(f"{name} must be a positive number of s, got {v!r}")
        if self.train_s + self.post_s > self.cycle_s:
            raise HBCInputError(
                f"train_s + post_s must fit in cycle_s, got {self.train_s} + {self.post_s} "
                f"> {self.cycle_s}"
            )
        if self.freq_hz is not None and not (
            math.isfinite(self.freq_hz) and 0 < self.freq_hz < 10.0
        ):
            raise HBCInputError(f"freq_hz must be in (0, 10) Hz or None, got {self.freq_hz!r}")
        if not 1.0 <= self.n_cycles <= 20.0:
            raise HBCInputError(f"n_cycles must be within 1-20, got {self.n_cycles!r}")
        if not math.isfinite(self.threshold):
            raise HBCInputError(f"threshold must be a finite number, got {self.threshold!r}")
        if int(self.min_above) < 1 or int(self.n_upper) < 1:
            raise HBCInputError(
                f"min_above and n_upper must be >= 1, got {self.min_above}, {self.n_upper}"
            )
        if not 0.0 <= self.max_nan_fraction < 1.0:
            raise HBCInputError(
                f"max_nan_fraction must be within [0, 1), got {self.max_nan_fraction!r}"
            )

    @property
    def frequency_hz(self) -> float:
        """The frequency HBC is read at, Hz."""
        return self.freq_hz if self.freq_hz is not None else 1.0 / self.cycle_s

    @property
    def span_s(self) -> tuple[float, float]:
        """Start and end of the data a cycle needs, relative to its onset, s."""
        return -self.pre_s, max(self.cycle_s, self.train_s + self.post_s)


@dataclass(frozen=True)
class Cycle:
    """One cycle of the protocol at one site.

    Attributes
    ----------
    site : str
        Scalp site (10-20/10-10 name, e.g. ``"F3"``).
    index : int
        Cycle number at the site; 0 is the rest cycle.
    intensity : float
        Stimulation intensity (the caller's unit, % rMT or % MSO); 0 for rest.
    onset_s : float
        Train onset (for rest, when a train would have started), on the HR series'
        clock in s (LSL time live).
    """

    site: str
    index: int
    intensity: float
    onset_s: float

    @property
    def rest(self) -> bool:
        """True for the rest cycle (no train)."""
        return self.index == 0


#: One row per cycle: figures of :func:`cycle_metrics`.
CYCLE_DTYPE = np.dtype(
    [
        ("onset_s", np.float64),
        ("hr_pre_bpm", np.float64),
        ("hr_train_bpm", np.float64),
        ("delta_hr_bpm", np.float64),
        ("delta_hr_pct", np.float64),
        ("hbc", np.float64),
        ("nan_fraction", np.float64),
        ("valid", np.bool_),
    ]
)


def _check_series(hr_bpm: np.ndarray, rate_hz: float) -> tuple[np.ndarray, float]:
    try:
        rate = float(rate_hz)
    except (TypeError, ValueError):
        raise HBCInputError(f"rate_hz must be a number in Hz, got {rate_hz!r}") from None
    if not (math.isfinite(rate) and 0.5 <= rate <= 100.0):
        raise HBCInputError(f"rate_hz must be within 0.5-100 Hz, got {rate_hz!r}")
    hr = np.asarray(hr_bpm)
    if hr.ndim != 1:
        raise HBCInputError(f"hr_bpm must be 1-D (n_samples,), got shape {hr.shape}")
    if not (np.issubdtype(hr.dtype, np.floating) or np.issubdtype(hr.dtype, np.integer)):
        raise HBCInputError(f"hr_bpm must be real numbers in bpm, got dtype {hr.dtype}")
    hr = hr.astype(np.float64, copy=False)
    if np.any(np.isinf(hr)):
        raise HBCInputError("hr_bpm contains ±inf; mark missing samples with NaN")
    ok = hr[np.isfinite(hr)]
    if ok.size and (ok.min() < 10.0 or ok.max() > 300.0):
        raise HBCInputError(
            f"hr_bpm must be heart rate in bpm (10-300), got values {ok.min():g}-{ok.max():g}"
        )
    return hr, rate


def _index(t_s: float, t0_s: float, rate: float) -> int:
    # First sample at or after t_s. The tolerance keeps a time that falls on a sample
    # (up to float rounding) on that sample, so live and offline pick the same ones.
    return math.ceil((t_s - t0_s) * rate - 1e-6)


def morlet_power(x: np.ndarray, rate_hz: float, freq_hz: float, n_cycles: float) -> np.ndarray:
    """Morlet-wavelet power of one segment at one frequency, mirror-padded at both edges.

    Parameters
    ----------
    x : ndarray, shape (n,)
        The segment (e.g. HR in bpm), finite, evenly sampled.
    rate_hz : float
        Its sampling rate, Hz.
    freq_hz : float
        Frequency of the wavelet, Hz.
    n_cycles : float
        Cycles of the wavelet: the Gaussian's SD in time is ``n_cycles / (2 pi freq)``.

    Returns
    -------
    ndarray, shape (n,)
        Power at each sample of the segment, in the segment's unit squared. The
        wavelet is amplitude-normalised: a sinusoid of amplitude A at ``freq_hz`` gives
        power A**2 away from the edges.

    Notes
    -----
    The segment is extended at each edge by its mirror image (symmetric padding,
    repeated when the wavelet is longer than the segment), as in Dijkstra et al. (2023),
    so the transform needs no data outside the segment. The mean is *not* removed here.
    """
    x = np.asarray(x, np.float64)
    sd_s = n_cycles / (2.0 * np.pi * freq_hz)
    half = math.ceil(4.0 * sd_s * rate_hz)
    tau = np.arange(-half, half + 1) / rate_hz
    gauss = np.exp(-0.5 * (tau / sd_s) ** 2)
    # W(t) = 2 / sum(G) * sum_tau x(t + tau) G(tau) exp(-2 pi i f tau): |W| = A for A cos.
    kernel = gauss * np.exp(-2j * np.pi * freq_hz * tau) * (2.0 / gauss.sum())
    padded = np.pad(x, half, mode="symmetric")
    # correlation with the kernel == convolution with its reverse
    w = np.convolve(padded, kernel[::-1], mode="valid")
    return w.real**2 + w.imag**2


def _bridge(seg: np.ndarray, max_nan_fraction: float) -> tuple[np.ndarray | None, float]:
    bad = ~np.isfinite(seg)
    frac = float(bad.mean()) if seg.size else 1.0
    if seg.size == 0 or frac > max_nan_fraction or bad.all():
        return None, frac
    if bad.any():
        i = np.arange(seg.size)
        seg = seg.copy()
        seg[bad] = np.interp(i[bad], i[~bad], seg[~bad])
    return seg, frac


def _one_cycle(hr: np.ndarray, rate: float, t0: float, onset: float, p: HBCParams) -> tuple:
    i_pre = _index(onset - p.pre_s, t0, rate)
    i_on = _index(onset, t0, rate)
    i_post = _index(onset + p.train_s + p.post_s, t0, rate)
    i_end = _index(onset + p.cycle_s, t0, rate)
    n = hr.size

    def window(a: int, b: int) -> np.ndarray:
        # samples outside the series count as missing
        seg = np.full(max(b - a, 0), np.nan)
        lo, hi = max(a, 0), min(b, n)
        if hi > lo:
            seg[lo - a : hi - a] = hr[lo:hi]
        return seg

    pre, f_pre = _bridge(window(i_pre, i_on), p.max_nan_fraction)
    train, f_train = _bridge(window(i_on, i_post), p.max_nan_fraction)
    cyc, f_cyc = _bridge(window(i_on, i_end), p.max_nan_fraction)
    hr_pre = float(pre.mean()) if pre is not None else np.nan
    hr_train = float(train.mean()) if train is not None else np.nan
    delta = hr_train - hr_pre
    hbc = np.nan
    if cyc is not None:
        power = morlet_power(cyc - cyc.mean(), rate, p.frequency_hz, p.n_cycles)
        hbc = float(np.log(max(float(power.mean()), 1e-300)))
    valid = pre is not None and train is not None and cyc is not None
    return (
        onset,
        hr_pre,
        hr_train,
        delta,
        100.0 * delta / hr_pre if np.isfinite(delta) else np.nan,
        hbc,
        max(f_pre, f_train, f_cyc),
        valid,
    )


def cycle_metrics(
    hr_bpm: np.ndarray,
    rate_hz: float,
    t0_s: float,
    onsets_s: Sequence[float] | np.ndarray,
    params: HBCParams | None = None,
) -> np.ndarray:
    """HR change and HBC of each cycle (offline; :class:`HBCTracker` is the live form).

    Parameters
    ----------
    hr_bpm : ndarray, shape (n,)
        Evenly resampled heart rate in bpm; NaN marks missing samples.
    rate_hz : float
        Its sampling rate in Hz (e.g. 4 Hz).
    t0_s : float
        Time of ``hr_bpm[0]`` in s, on the clock of the onsets.
    onsets_s : sequence of float
        Train onset of each cycle in s (rest cycles: when a train would have started).
    params : HBCParams, optional
        Windows, wavelet and NaN tolerance.

    Returns
    -------
    ndarray of ``CYCLE_DTYPE``, one row per onset
        ``hr_pre_bpm`` (mean over ``[onset - pre_s, onset)``), ``hr_train_bpm`` (mean
        over ``[onset, onset + train_s + post_s)``), ``delta_hr_bpm`` (train minus pre;
        negative = deceleration), ``delta_hr_pct`` (in % of ``hr_pre_bpm``), ``hbc``
        (ln of the mean Morlet power at the train frequency over ``[onset, onset +
        cycle_s)``, ln(bpm**2)), ``nan_fraction`` (largest fraction of bridged samples
        among the three windows) and ``valid`` (every figure computed). A window with
        more than ``max_nan_fraction`` missing (or outside the series) gives NaN.
    """
    p = params or HBCParams()
    hr, rate = _check_series(hr_bpm, rate_hz)
    t0 = float(t0_s)
    onsets = np.asarray(onsets_s, np.float64).reshape(-1)
    if not (np.isfinite(t0) and np.all(np.isfinite(onsets))):
        raise HBCInputError("t0_s and onsets_s must be finite times in s")
    out = np.zeros(onsets.size, CYCLE_DTYPE)
    for k, onset in enumerate(onsets):
        out[k] = _one_cycle(hr, rate, t0, float(onset), p)
    return out


@dataclass(frozen=True)
class SiteSummary:
    """The HBC figures of one site.

    Attributes
    ----------
    site : str
        Site name.
    intensities : ndarray
        Intensities of the stimulation cycles (rest excluded), increasing.
    hbc : ndarray
        HBC of each, ln(bpm**2) (NaN for an invalid cycle).
    delta_hr_bpm, delta_hr_pct : ndarray
        HR change of each (negative = deceleration), bpm and %.
    rest_hbc : float
        HBC of the rest cycle(s) (their mean), NaN without one.
    slope : float
        Least-squares slope of HBC against intensity, ln(bpm**2) per intensity unit
        (NaN with fewer than two valid cycles).
    n_above : int
        Intensities whose HBC exceeds the threshold.
    mean_hbc : float
        Mean HBC over the valid stimulation cycles.
    upper_hbc : float
        Mean HBC over the ``n_upper`` highest intensities (valid ones).
    passes : bool
        ``n_above >= min_above``.
    n_valid : int
        Valid stimulation cycles.
    """

    site: str
    intensities: np.ndarray
    hbc: np.ndarray
    delta_hr_bpm: np.ndarray
    delta_hr_pct: np.ndarray
    rest_hbc: float
    slope: float
    n_above: int
    mean_hbc: float
    upper_hbc: float
    passes: bool
    n_valid: int


def summarise_site(
    site: str,
    cycles: Sequence[Cycle],
    metrics: np.ndarray,
    params: HBCParams | None = None,
) -> SiteSummary:
    """Per-site HBC by intensity, slope, count above threshold.

    Parameters
    ----------
    site : str
        The site.
    cycles : sequence of Cycle
        This site's cycles (any order; rest cycles have ``index == 0``).
    metrics : ndarray of ``CYCLE_DTYPE``
        Their figures, row k for ``cycles[k]``.
    params : HBCParams, optional
        Threshold, ``min_above`` and ``n_upper``.

    Returns
    -------
    SiteSummary
    """
    p = params or HBCParams()
    metrics = np.asarray(metrics)
    if metrics.dtype != CYCLE_DTYPE or metrics.shape != (len(cycles),):
        raise HBCInputError(
            f"metrics must be a CYCLE_DTYPE array with one row per cycle ({len(cycles)}), "
            f"got dtype {metrics.dtype} shape {metrics.shape}"
        )
    for c in cycles:
        if c.site != site:
            raise HBCInputError(f"cycle of site {c.site!r} given for site {site!r}")
    rest = np.array([c.rest for c in cycles], bool)
    inten = np.array([c.intensity for c in cycles], np.float64)
    stim = np.flatnonzero(~rest)
    order = stim[np.argsort(inten[stim], kind="stable")]
    hbc = np.where(metrics["valid"], metrics["hbc"], np.nan)
    rest_vals = hbc[rest]
    rest_vals = rest_vals[np.isfinite(rest_vals)]
    rest_hbc = float(rest_vals.mean()) if rest_vals.size else np.nan
    x, y = inten[order], hbc[order]
    ok = np.isfinite(y)
    slope = np.nan
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        slope = float(np.polyfit(x[ok], y[ok], 1)[0])
    n_above = int(np.sum(y[ok] > p.threshold))
    mean_hbc = float(y[ok].mean()) if ok.any() else np.nan
    upper = y[ok][-p.n_upper :]
    upper_hbc = float(upper.mean()) if upper.size else np.nan
    return SiteSummary(
        site=site,
        intensities=x,
        hbc=y,
        delta_hr_bpm=np.where(metrics["valid"], metrics["delta_hr_bpm"], np.nan)[order],
        delta_hr_pct=np.where(metrics["valid"], metrics["delta_hr_pct"], np.nan)[order],
        rest_hbc=rest_hbc,
        slope=slope,
        n_above=n_above,
        mean_hbc=mean_hbc,
        upper_hbc=upper_hbc,
        passes=n_above >= p.min_above,
        n_valid=int(ok.sum()),
    )


@dataclass(frozen=True)
class Localisation:
    """The site ranking and the chosen target.

    Attributes
    ----------
    ranking : tuple of SiteSummary
        Sites by the primary rule, best first: most intensities above threshold, ties
        to the higher mean HBC (a NaN mean ranks last).
    best_site : str or None
        ``ranking[0].site`` (None without sites).
    target_found : bool
        Whether the best site passes (``n_above >= min_above``); False means no site
        showed coupling (e.g. sham) and no target should be taken from this run.
    best_site_alt : str or None
        The alternative rule: argmax of ``upper_norm_hbc`` (None if every site's is NaN).
    upper_norm_hbc : dict of str to float
        Per site, the mean HBC over its ``n_upper`` highest intensities, normalised
        (z-scored) by the mean and SD of every valid cycle of the run (all sites, rest
        included), so runs and subjects are comparable.
    params : HBCParams
        The settings that produced it.
    """

    ranking: tuple[SiteSummary, ...]
    best_site: str | None
    target_found: bool
    best_site_alt: str | None
    upper_norm_hbc: dict[str, float] = field(default_factory=dict)
    params: HBCParams = field(default_factory=HBCParams)

    def site(self, name: str) -> SiteSummary:
        """The summary of one site by name."""
        for s in self.ranking:
            if s.site == name:
                return s
        raise KeyError(f"no site {name!r}; sites: {[s.site for s in self.ranking]}")


def rank_sites(summaries: Iterable[SiteSummary], params: HBCParams | None = None) -> Localisation:
    """Rank sites and choose the target (primary and alternative rules).

    Parameters
    ----------
    summaries : iterable of SiteSummary
        One per site.
    params : HBCParams, optional
        Recorded in the result (the summaries already applied it).

    Notes
    -----
    The alternative rule normalises by the whole run (every valid cycle of every site,
    rest cycles included), not per site: a single 16 s rest cycle is too noisy a
    baseline (one HBC value has an SD of about 1.2 at rest), and a normalisation shared
    by all sites leaves their order unchanged while making runs comparable.

    Returns
    -------
    Localisation
    """
    p = params or HBCParams()
    sums = list(summaries)
    names = [s.site for s in sums]
    if len(set(names)) != len(names):
        raise HBCInputError(f"each site must appear once, got {names}")

    def key(s: SiteSummary) -> tuple[int, float]:
        return (-s.n_above, -s.mean_hbc if np.isfinite(s.mean_hbc) else math.inf)

    ranking = tuple(sorted(sums, key=key))
    every = np.concatenate([s.hbc for s in sums] + [[s.rest_hbc] for s in sums]) if sums else []
    every = np.asarray(every, np.float64)
    every = every[np.isfinite(every)]
    mu = float(every.mean()) if every.size else np.nan
    sd = float(every.std()) if every.size > 1 else np.nan
    norm = {s.site: (s.upper_hbc - mu) / sd if sd > 0 else np.nan for s in sums}
    alt = [s for s in sums if np.isfinite(norm[s.site])]
    best_alt = max(alt, key=lambda s: norm[s.site]).site if alt else None
    best = ranking[0].site if ranking else None
    found = bool(ranking and ranking[0].passes)
    return Localisation(ranking, best, found, best_alt, norm, p)


def localise(
    hr_bpm: np.ndarray,
    rate_hz: float,
    t0_s: float,
    cycles: Sequence[Cycle],
    params: HBCParams | None = None,
) -> tuple[Localisation, np.ndarray]:
    """Offline: every cycle's figures, every site's summary, the ranking.

    Parameters
    ----------
    hr_bpm, rate_hz, t0_s
        The evenly resampled HR series (bpm), its rate (Hz) and first-sample time (s).
    cycles : sequence of Cycle
        The protocol's cycles, all sites.
    params : HBCParams, optional

    Returns
    -------
    localisation : Localisation
    metrics : ndarray of ``CYCLE_DTYPE``
        Row k belongs to ``cycles[k]``.
    """
    p = params or HBCParams()
    metrics = cycle_metrics(hr_bpm, rate_hz, t0_s, [c.onset_s for c in cycles], p)
    return _rank(cycles, metrics, p), metrics


def _rank(cycles: Sequence[Cycle], metrics: np.ndarray, p: HBCParams) -> Localisation:
    sites: dict[str, list[int]] = {}
    for k, c in enumerate(cycles):
        sites.setdefault(c.site, []).append(k)
    sums = [summarise_site(s, [cycles[k] for k in ks], metrics[ks], p) for s, ks in sites.items()]
    return rank_sites(sums, p)


class HBCTracker:
    """Live HBC: feed the growing HR series and the cycles; completed cycles come out.

    Each cycle's figures are computed by the same code as :func:`cycle_metrics`, on the
    same samples, once the series covers the cycle's whole span (``pre_s`` before its
    onset to the end of the cycle); mirror padding needs nothing beyond the cycle. A
    cycle's figures never change afterwards, whatever data follow.

    Parameters
    ----------
    rate_hz : float
        Rate of the HR series, Hz.
    t0_s : float
        Time of the first HR sample that will be fed, s (LSL time live).
    params : HBCParams, optional

    Examples
    --------
    >>> tr = HBCTracker(4.0, t0_s=100.0)  # doctest: +SKIP
    >>> tr.add_cycle(Cycle("F3", 0, 0.0, 110.0))
    >>> done = tr.update(hr_chunk)  # list of (Cycle, CYCLE_DTYPE row) completed now
    """

    def __init__(self, rate_hz: float, t0_s: float, params: HBCParams | None = None) -> None:
        _, self.rate_hz = _check_series(np.zeros(0), rate_hz)
        if not math.isfinite(float(t0_s)):
            raise HBCInputError(f"t0_s must be a finite time in s, got {t0_s!r}")
        self.t0_s = float(t0_s)
        self.params = params or HBCParams()
        self._hr = np.zeros(1024)
        self._n = 0
        self._pending: list[Cycle] = []
        self._cycles: list[Cycle] = []
        self._rows: list[np.void] = []

    @property
    def n_samples(self) -> int:
        """HR samples fed so far."""
        return self._n

    @property
    def hr_bpm(self) -> np.ndarray:
        """The HR series fed so far (a copy)."""
        return self._hr[: self._n].copy()

    def add_cycle(self, cycle: Cycle) -> list[tuple[Cycle, np.void]]:
        """Declare a cycle (its onset and intensity); returns it at once if already complete."""
        if not isinstance(cycle, Cycle) or not math.isfinite(cycle.onset_s):
            raise HBCInputError(f"expected a Cycle with a finite onset_s, got {cycle!r}")
        self._pending.append(cycle)
        return self._complete()

    def update(self, hr_chunk: np.ndarray) -> list[tuple[Cycle, np.void]]:
        """Append HR samples (bpm, NaN = missing) and return the cycles completed by them.

        Returns
        -------
        list of (Cycle, row of ``CYCLE_DTYPE``)
            In order of completion.
        """
        x, _ = _check_series(np.asarray(hr_chunk).reshape(-1), self.rate_hz)
        need = self._n + x.size
        if need > self._hr.size:
            grown = np.zeros(max(need, 2 * self._hr.size))
            grown[: self._n] = self._hr[: self._n]
            self._hr = grown
        self._hr[self._n : need] = x
        self._n = need
        return self._complete()

    def _complete(self) -> list[tuple[Cycle, np.void]]:
        done = []
        _, end = self.params.span_s
        for c in list(self._pending):
            if _index(c.onset_s + end, self.t0_s, self.rate_hz) <= self._n:
                row = _one_cycle(
                    self._hr[: self._n], self.rate_hz, self.t0_s, c.onset_s, self.params
                )
                rec = np.array([row], CYCLE_DTYPE)[0]
                self._pending.remove(c)
                self._cycles.append(c)
                self._rows.append(rec)
                done.append((c, rec))
        return done

    @property
    def completed(self) -> tuple[list[Cycle], np.ndarray]:
        """Cycles completed so far and their figures (``CYCLE_DTYPE``), in completion order."""
        return list(self._cycles), np.array(self._rows, CYCLE_DTYPE).reshape(-1)

    def localisation(self) -> Localisation:
        """The ranking over the cycles completed so far."""
        cycles, rows = self.completed
        return _rank(cycles, rows, self.params)


def dash_schedule(
    sites: Sequence[str],
    intensities: Sequence[float],
    start_s: float = 0.0,
    params: HBCParams | None = None,
    gap_s: float = 0.0,
) -> list[Cycle]:
    """The cycles of the 10 Hz Dash protocol, site after site (Dijkstra et al. 2023).

    Parameters
    ----------
    sites : sequence of str
        Sites in the order they are run.
    intensities : sequence of float
        Intensities of cycles 1..N (cycle 0 is rest), increasing as published.
    start_s : float
        Onset of the first site's cycle 0, s.
    params : HBCParams, optional
        ``cycle_s`` spaces the cycles.
    gap_s : float
        Extra time between sites (moving the coil), s, beyond the pre-onset baseline.

    Returns
    -------
    list of Cycle
        ``len(sites) * (len(intensities) + 1)`` cycles in time order.
    """
    p = params or HBCParams()
    out = []
    t = float(start_s)
    for site in sites:
        for k, inten in enumerate([0.0, *intensities]):
            out.append(Cycle(site, k, float(inten), t))
            t += p.cycle_s
        t += gap_s + p.pre_s
    return out


def hr_from_ecg(
    ecg: np.ndarray, fs: float, rate_hz: float = 4.0, pulse_index: np.ndarray | None = None
) -> np.ndarray:
    """ECG to the evenly resampled HR series the HBC metrics take, as the heart stage
    computes it live.

    :class:`stimloop.dsp.heart.HeartMonitor`: causal R-peaks with beat classes, HR from
    NN intervals corrected for ectopic, extra and missed beats (Lipponen & Tarvainen
    2019), zero-order hold at ``rate_hz``. Samples around the stimulation pulses are
    blanked (:func:`stimloop.dsp.heart.pulse_blank_mask`, 2 ms before to 25 ms after),
    as the heart stage blanks the pulses the gate reports. HR samples still flagged as
    implausible (``FLAG_IBI_RANGE``/``FLAG_IBI_JUMP``) are set missing, which the HBC
    windows bridge.

    Parameters
    ----------
    ecg : ndarray, shape (n,)
        One ECG lead (any unit).
    fs : float
        ECG sampling rate, Hz.
    rate_hz : float
        Rate of the HR series, Hz (4 Hz default); sample k is at ``k / rate_hz`` s
        after the first ECG sample (``resample_hr``'s grid).
    pulse_index : ndarray of int, optional
        ECG sample index of every stimulation pulse (each pulse of a train); None: no
        blanking.

    Returns
    -------
    ndarray
        HR in bpm at ``rate_hz``; NaN where no valid HR exists.
    """
    x = np.asarray(ecg, np.float64)
    blank = None
    if pulse_index is not None:
        blank = pulse_blank_mask(np.asarray(pulse_index, np.int64), 0, x.size, fs)
    mon = HeartMonitor(fs, rate_hz=rate_hz)
    upd = mon.update(x, blank=blank)
    hr = upd.series["hr_bpm"].copy()
    hr[(upd.series["flags"] & (FLAG_IBI_RANGE | FLAG_IBI_JUMP)) != 0] = np.nan
    return hr
