"""Session calibration of the phase band: IAF, peak SNR, band and expected phase error.

From a rest segment of the target derivation (e.g. 2 min of the Hjorth derivation at
C3), :func:`calibrate` (offline) and :class:`Calibrator` (streaming) return a
:class:`CalibrationResult`: the individual alpha frequency, the peak's height above the
aperiodic (1/f) background, the recommended phase band, the phase error expected from
that height, and whether the peak is strong enough to phase-lock.

Method
------
1. **Spectrum**: Welch PSD (Welch 1967), 4 s Hann segments with 50 % overlap at
   absolute sample indices (0.25 Hz bins; 2 min give 59 segments). Segments holding a
   NaN sample are skipped.
2. **Aperiodic-corrected spectrum**: a spectral parameterisation after Donoghue et al.
   2020 (specparam/"FOOOF"), reimplemented from the paper: over 2–40 Hz, the log-power
   is modelled as an aperiodic line ``b - χ log10 f`` plus Gaussian peaks. The line is
   fitted robustly (least squares, then again on the points below it, so peaks cannot
   pull it up); peaks are then found one at a time on the flattened spectrum (highest
   point; width from its half-height; Gaussian subtracted) until the highest point is
   below ``peak_threshold`` standard deviations of the flattened spectrum; peaks too
   close to the range edges or overlapping a higher one are dropped; all Gaussians are
   refitted jointly (bounded least squares); the line is refitted on the spectrum minus
   the peaks.
3. **IAF**: among the peaks centred in 7–14 Hz at least ``min_peak_db`` high (see below),
   :func:`stimloop.dsp.iaf.choose_alpha_peak` picks one (the tallest, unless others are
   within ``tie_db``: then the one nearest 10 Hz; the same rule as the causal IAF
   tracker). The IAF is the maximum of the flattened measured spectrum within one
   Gaussian SD of that peak's centre (parabolic interpolation): Gaussian centres and
   heights are shared out between overlapping peaks by the fit, the measured maximum is
   not. The same measured maxima are the candidates' heights.
4. **SNR**: the flattened spectrum at the IAF, in dB above the aperiodic fit.
5. **Band**: IAF ± ``half_width_hz`` (2 Hz, the ground-truth convention of the field,
   Zrenner et al. 2018).
6. **Expected phase SD**: interpolated in :data:`SNR_SD_TABLE`, which relates this
   measured SNR to the circular SD of :class:`~stimloop.dsp.phase.PhaseEstimator`'s
   error against the true phase of a simulated rhythm (``devices/sim/eeg.py``;
   ``python bench/phase.py --snr-table`` rebuilds it).
7. **Recommendation**: ``"ok"`` if a peak was found and the expected SD is at most
   ``max_sd_deg``; ``"weak"`` if a peak was found but the expected SD is larger;
   ``"no_peak"`` if no alpha peak rises ``min_peak_db`` above the background;
   ``"insufficient_data"`` if fewer than ``min_segments`` clean segments were seen.
   ``lockable`` is True only for ``"ok"``. The operator decides what to do with a weak
   result; nothing here refuses a session. Default ``max_sd_deg`` = 45°: for a wrapped
   normal error that puts about 5 % of pulses more than 90° from the target phase, i.e.
   nearer the opposite phase than the intended one.

Streaming: :class:`Calibrator` consumes chunks and returns the result once
``duration_s`` seconds of stream time have arrived. The segments are fixed by absolute
sample indices and only samples before ``duration_s`` are used, so the result does not
depend on the chunking and never on later samples.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import scipy.optimize

from stimloop.dsp.iaf import choose_alpha_peak

__all__ = [
    "SNR_SD_TABLE",
    "CalibrationResult",
    "Calibrator",
    "SpectralPeak",
    "SpectrumFit",
    "calibrate",
    "expected_phase_sd",
    "fit_spectrum",
]

#: Measured alpha-peak SNR (dB above the aperiodic fit, as computed here from 2 min of the
#: Hjorth derivation) -> median circular SD (deg) of PhaseEstimator's error against the
#: simulated rhythm's true phase, band from this calibration. Built by
#: ``python bench/phase.py --snr-table`` (EEGGenerator, 19 channels, 500 Hz, Hjorth at
#: C3, IAF 8-13 Hz, alpha SNR -15..15 dB, 3 seeds; the SNRs are the medians of each SNR
#: setting's measured values). Ascending in SNR.
SNR_SD_TABLE: tuple[tuple[float, float], ...] = (
    (1.9, 107.8),
    (3.2, 88.2),
    (6.0, 67.1),
    (8.0, 57.1),
    (10.0, 47.9),
    (12.3, 39.7),
    (14.7, 32.9),
    (19.4, 22.5),
    (23.6, 14.9),
    (27.5, 9.6),
    (30.3, 7.2),
)


@dataclass(frozen=True)
class SpectralPeak:
    """One Gaussian peak of the aperiodic-corrected spectrum.

    Attributes
    ----------
    freq_hz : float
        Centre frequency in Hz.
    height_db : float
        Height above the aperiodic fit in dB.
    sd_hz : float
        Gaussian standard deviation in Hz (full width at half height = 2.355 sd_hz).
    """

    freq_hz: float
    height_db: float
    sd_hz: float


@dataclass(frozen=True)
class SpectrumFit:
    """Aperiodic line plus Gaussian peaks fitted to a log-power spectrum.

    Attributes
    ----------
    offset : float
        Aperiodic offset b (log10 of power, the input's unit).
    exponent : float
        Aperiodic exponent χ (power ~ f^-χ).
    peaks : tuple of SpectralPeak
        Peaks in ascending frequency.
    r_squared : float
        Share of the log-power variance the model explains over the fit range.
    freqs : ndarray
        Frequencies of the fit range in Hz.
    flat_db : ndarray
        Measured log-power minus the aperiodic fit, in dB, at ``freqs``.
    """

    offset: float
    exponent: float
    peaks: tuple[SpectralPeak, ...]
    r_squared: float
    freqs: np.ndarray
    flat_db: np.ndarray


@dataclass(frozen=True)
class CalibrationResult:
    """The outcome of a calibration (see the module docstring). JSON-serialisable.

    Attributes
    ----------
    recommendation : str
        ``"ok"``, ``"weak"``, ``"no_peak"`` or ``"insufficient_data"``.
    lockable : bool
        True if the peak is strong enough to phase-lock (``recommendation == "ok"``).
    iaf_hz : float
        Individual alpha frequency in Hz (NaN without a peak).
    snr_db : float
        Peak height above the aperiodic fit at the IAF in dB (without a peak: the
        largest value in 7-14 Hz, for the record).
    band_hz : (float, float)
        Recommended phase band in Hz (IAF ± half width; 10 ± half width without a peak).
    expected_sd_deg : float
        Expected circular SD of the phase error in deg, from ``snr_db`` via
        :data:`SNR_SD_TABLE` (the table's low-SNR end without a peak).
    ambiguous : bool
        True if another alpha peak was within the tie margin of the chosen one.
    candidates : tuple of (float, float)
        All alpha peaks (centre Hz, height dB) found in 7-14 Hz.
    aperiodic_exponent, aperiodic_offset : float
        The aperiodic fit (power ~ 10^offset f^-exponent).
    r_squared : float
        Goodness of the spectral model over 2-40 Hz.
    duration_s : float
        Stream time the calibration covered in s.
    n_segments : int
        Clean Welch segments used.
    fs_hz : float
        Sampling rate in Hz.
    reason : str
        Why the recommendation is not ``"ok"`` (empty if it is).
    """

    recommendation: str
    lockable: bool
    iaf_hz: float
    snr_db: float
    band_hz: tuple[float, float]
    expected_sd_deg: float
    ambiguous: bool
    candidates: tuple[tuple[float, float], ...]
    aperiodic_exponent: float
    aperiodic_offset: float
    r_squared: float
    duration_s: float
    n_segments: int
    fs_hz: float
    reason: str = ""

    def to_dict(self) -> dict:
        """Plain-Python dict (NaN kept as float NaN)."""
        d = asdict(self)
        d["band_hz"] = [float(v) for v in self.band_hz]
        d["candidates"] = [[float(f), float(h)] for f, h in self.candidates]
        return d

    def to_json(self) -> str:
        """JSON text; NaN is written as null so that any JSON reader accepts it."""

        def clean(v):
            if isinstance(v, float) and not np.isfinite(v):
                return None
            if isinstance(v, list):
                return [clean(u) for u in v]
            return v

        return json.dumps({k: clean(v) for k, v in self.to_dict().items()})

    @classmethod
    def from_json(cls, text: str) -> CalibrationResult:
        """Inverse of :meth:`to_json` (null becomes NaN)."""
        d = json.loads(text)
        for k, v in d.items():
            if v is None:
                d[k] = float("nan")
        d["band_hz"] = tuple(float("nan") if v is None else v for v in d["band_hz"])
        d["candidates"] = tuple(tuple(c) for c in d["candidates"])
        return cls(**d)


def expected_phase_sd(snr_db: float) -> float:
    """Expected circular SD (deg) of the phase error for a measured peak SNR (dB).

    Linear interpolation in :data:`SNR_SD_TABLE`, clamped at its ends. NaN -> the
    low-SNR end.
    """
    snr = np.array([r[0] for r in SNR_SD_TABLE])
    sd = np.array([r[1] for r in SNR_SD_TABLE])
    if not np.isfinite(snr_db):
        return float(sd[0])
    return float(np.interp(snr_db, snr, sd))


def _gauss_sum(f: np.ndarray, params: np.ndarray) -> np.ndarray:
    y = np.zeros_like(f)
    for c, h, s in params.reshape(-1, 3):
        y += h * np.exp(-((f - c) ** 2) / (2 * s * s))
    return y


def _aperiodic_lstsq(lf: np.ndarray, lp: np.ndarray) -> np.ndarray:
    a = np.stack((np.ones_like(lf), -lf), axis=1)
    return np.linalg.lstsq(a, lp, rcond=None)[0]


def fit_spectrum(
    freqs: np.ndarray,
    psd: np.ndarray,
    freq_range: tuple[float, float] = (2.0, 40.0),
    max_peaks: int = 8,
    peak_threshold: float = 2.0,
    min_height_db: float = 0.5,
    width_limits_hz: tuple[float, float] = (0.5, 8.0),
) -> SpectrumFit:
    """Spectral parameterisation: aperiodic line + Gaussian peaks (Donoghue et al. 2020).

    Parameters
    ----------
    freqs : ndarray
        Frequencies in Hz (ascending, evenly spaced).
    psd : ndarray
        Power spectral density at ``freqs`` (any unit; all > 0 in ``freq_range``).
    freq_range : (float, float)
        Fit range in Hz.
    max_peaks : int
        Largest number of peaks.
    peak_threshold : float
        A peak must rise this many SDs of the flattened spectrum above 0.
    min_height_db : float
        Smallest peak height in dB.
    width_limits_hz : (float, float)
        Limits of a peak's full width at half height in Hz.

    Returns
    -------
    SpectrumFit
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    if freqs.shape != psd.shape:
        raise ValueError(f"fit_spectrum: freqs {freqs.shape} and psd {psd.shape} differ")
    m = (freqs >= freq_range[0]) & (freqs <= freq_range[1])
    if m.sum() < 8:
        raise ValueError(
            f"fit_spectrum: fewer than 8 bins in {freq_range} Hz (Nyquist {freqs[-1]:g} Hz)"
        )
    f = freqs[m]
    p = psd[m]
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise ValueError("fit_spectrum: the PSD must be finite and > 0 over the fit range")
    lf = np.log10(f)
    lp = np.log10(p)
    # Robust aperiodic fit: refit on the points that lie below the first fit.
    ap = _aperiodic_lstsq(lf, lp)
    flat = lp - (ap[0] - ap[1] * lf)
    below = flat <= np.percentile(np.maximum(flat, 0.0), 2.5)
    if below.sum() >= 4:
        ap = _aperiodic_lstsq(lf[below], lp[below])
    flat = lp - (ap[0] - ap[1] * lf)
    df = f[1] - f[0]
    sd_lo, sd_hi = (w / 2.3548 for w in width_limits_hz)
    resid = flat.copy()
    guesses = []
    for _ in range(max_peaks):
        k = int(np.argmax(resid))
        h = resid[k]
        if h <= peak_threshold * np.std(resid) or 10.0 * h < min_height_db:
            break
        half = h / 2.0
        i = k
        while i > 0 and resid[i - 1] > half:
            i -= 1
        j = k
        while j < f.size - 1 and resid[j + 1] > half:
            j += 1
        # The shorter side is the one least disturbed by a neighbouring peak.
        side = min(k - i, j - k) if min(k - i, j - k) > 0 else max(k - i, j - k)
        sd = float(np.clip((2 * side + 1) * df / 2.3548, sd_lo, sd_hi))
        guesses.append([f[k], h, sd])
        resid = resid - _gauss_sum(f, np.array([f[k], h, sd]))
    # Drop peaks within one SD of the range edges, and the lower of two overlapping ones.
    guesses = [g for g in guesses if f[0] + g[2] <= g[0] <= f[-1] - g[2]]
    guesses.sort(key=lambda g: g[0])
    kept: list[list[float]] = []
    for g in guesses:
        if kept and g[0] - kept[-1][0] < 0.75 * (g[2] + kept[-1][2]):
            if g[1] > kept[-1][1]:
                kept[-1] = g
            continue
        kept.append(g)
    params = np.array(kept, dtype=np.float64).ravel()
    if params.size:
        lo = []
        hi = []
        for c, h, s in kept:
            lo += [c - 1.5 * s, 0.0, sd_lo]
            hi += [c + 1.5 * s, max(2.0 * h, 1e-6), sd_hi]
        fitted = scipy.optimize.least_squares(
            lambda q: _gauss_sum(f, q) - flat,
            np.clip(params, np.array(lo) + 1e-9, np.array(hi) - 1e-9),
            bounds=(np.array(lo), np.array(hi)),
        )
        params = fitted.x
        ap = _aperiodic_lstsq(lf, lp - _gauss_sum(f, params))
    flat = lp - (ap[0] - ap[1] * lf)
    model = ap[0] - ap[1] * lf + _gauss_sum(f, params)
    ss_tot = float(np.sum((lp - lp.mean()) ** 2))
    r2 = 1.0 - float(np.sum((lp - model) ** 2)) / ss_tot if ss_tot > 0 else np.nan
    peaks = tuple(
        SpectralPeak(float(c), float(10.0 * h), float(s))
        for c, h, s in sorted(params.reshape(-1, 3).tolist())
    )
    return SpectrumFit(float(ap[0]), float(ap[1]), peaks, r2, f, 10.0 * flat)


def _result_from_psd(
    freqs: np.ndarray,
    psd: np.ndarray,
    n_segments: int,
    duration_s: float,
    fs: float,
    *,
    search_hz: tuple[float, float],
    half_width_hz: float,
    min_peak_db: float,
    tie_db: float,
    max_sd_deg: float,
    min_segments: int,
) -> CalibrationResult:
    nan = float("nan")
    common = dict(duration_s=float(duration_s), n_segments=int(n_segments), fs_hz=float(fs))
    default_band = (10.0 - half_width_hz, 10.0 + half_width_hz)
    if n_segments < min_segments:
        return CalibrationResult(
            "insufficient_data", False, nan, nan, default_band, expected_phase_sd(nan),
            False, (), nan, nan, nan, **common,
            reason=f"{n_segments} clean segments, need >= {min_segments}",
        )  # fmt: skip
    fit = fit_spectrum(freqs, psd)
    lo, hi = search_hz
    inband = (fit.freqs >= lo) & (fit.freqs <= hi)
    ap = dict(
        aperiodic_exponent=fit.exponent,
        aperiodic_offset=fit.offset,
        r_squared=fit.r_squared,
    )
    # Each Gaussian in the search band stands for the measured maximum of the flattened
    # spectrum within one SD of its centre: Gaussian centres and heights are shared out
    # between overlapping peaks by the fit, the measured maximum is not.
    idx: list[int] = []
    for p in fit.peaks:
        if lo <= p.freq_hz <= hi:
            near = np.flatnonzero(np.abs(fit.freqs - p.freq_hz) <= max(p.sd_hz, 0.5))
            k = int(near[np.argmax(fit.flat_db[near])])
            # Climb to the local maximum: two Gaussians on one peak give one candidate.
            while True:
                up = [j for j in (k - 1, k + 1) if 0 <= j < fit.freqs.size]
                best = max(up, key=lambda j: fit.flat_db[j])
                if fit.flat_db[best] <= fit.flat_db[k]:
                    break
                k = best
            if lo <= fit.freqs[k] <= hi and fit.flat_db[k] >= min_peak_db and k not in idx:
                idx.append(k)
    if not idx:
        snr = float(np.max(fit.flat_db[inband]))
        sd = expected_phase_sd(nan)
        return CalibrationResult(
            "no_peak", False, nan, snr, default_band, sd, False, (), **ap, **common,
            reason=f"no alpha peak >= {min_peak_db} dB above 1/f in {lo:g}-{hi:g} Hz "
            f"(largest {snr:.1f} dB)",
        )  # fmt: skip
    cand = np.array(sorted(idx))
    hz = fit.freqs[cand]
    db = fit.flat_db[cand]
    k = int(cand[choose_alpha_peak(hz, db, tie_db=tie_db)])
    ambiguous = int(np.sum(db >= db.max() - tie_db)) > 1
    iaf = float(fit.freqs[k])
    if 0 < k < fit.freqs.size - 1:
        a, b, c = fit.flat_db[k - 1 : k + 2]
        den = a - 2 * b + c
        if den < 0:  # k is a local maximum, so the vertex lies within half a bin
            iaf += 0.5 * (a - c) / den * (fit.freqs[1] - fit.freqs[0])
    snr = float(fit.flat_db[k])
    sd = expected_phase_sd(snr)
    ok = sd <= max_sd_deg
    return CalibrationResult(
        "ok" if ok else "weak",
        ok,
        iaf,
        snr,
        (iaf - half_width_hz, iaf + half_width_hz),
        sd,
        ambiguous,
        tuple((float(f), float(h)) for f, h in zip(hz, db, strict=True)),
        **ap,
        **common,
        reason=""
        if ok
        else f"expected phase SD {sd:.0f} deg > {max_sd_deg:g} deg (peak {snr:.1f} dB above 1/f)",
    )


_DEFAULTS = dict(
    search_hz=(7.0, 14.0),
    half_width_hz=2.0,
    min_peak_db=2.0,
    tie_db=2.0,
    max_sd_deg=45.0,
    min_segments=10,
)


def calibrate(
    x: np.ndarray,
    fs: float,
    *,
    seg_s: float = 4.0,
    search_hz: tuple[float, float] = (7.0, 14.0),
    half_width_hz: float = 2.0,
    min_peak_db: float = 2.0,
    tie_db: float = 2.0,
    max_sd_deg: float = 45.0,
    min_segments: int = 10,
) -> CalibrationResult:
    """Calibrate the phase band from a whole rest recording (offline).

    Parameters
    ----------
    x : ndarray, shape (n,)
        Rest EEG of the target derivation (e.g. Hjorth) in µV; NaN marks missing samples.
    fs : float
        Sampling rate in Hz (>= 90, so that the 2-40 Hz fit range is below Nyquist).
    seg_s : float
        Welch segment length in s.
    search_hz : (float, float)
        Alpha search band in Hz.
    half_width_hz : float
        Half-width of the recommended band in Hz.
    min_peak_db : float
        Smallest alpha peak height above 1/f in dB.
    tie_db : float
        Peaks within this many dB of the tallest are tied (see ``choose_alpha_peak``).
    max_sd_deg : float
        Largest expected phase SD in deg for ``recommendation == "ok"``.
    min_segments : int
        Fewest clean Welch segments for a result.

    Returns
    -------
    CalibrationResult
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"calibrate: x must have shape (n,), got {x.shape}")
    _check_fs(fs, "calibrate")
    cal = Calibrator(
        fs,
        duration_s=x.size / fs,
        seg_s=seg_s,
        search_hz=search_hz,
        half_width_hz=half_width_hz,
        min_peak_db=min_peak_db,
        tie_db=tie_db,
        max_sd_deg=max_sd_deg,
        min_segments=min_segments,
    )
    out = cal.update(x)
    return out if out is not None else cal.finish()


def _check_fs(fs: float, who: str) -> None:
    if not (np.isfinite(fs) and fs >= 90.0):
        raise ValueError(f"{who}: fs must be a finite rate >= 90 Hz, got {fs}")


class Calibrator:
    """Streaming calibration: feed chunks, get the result after ``duration_s`` s.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz (>= 90).
    duration_s : float
        Calibration length in s of stream time (default 2 min of rest).
    seg_s : float
        Welch segment length in s.
    **kwargs
        ``search_hz``, ``half_width_hz``, ``min_peak_db``, ``tie_db``, ``max_sd_deg``,
        ``min_segments`` as in :func:`calibrate`.

    Notes
    -----
    :meth:`update` returns None until ``duration_s`` has arrived, then the result (the
    same object on every later call). Samples after ``duration_s`` are ignored.
    :meth:`finish` computes the result early from what has arrived (e.g. an operator
    stopping the calibration).
    """

    def __init__(self, fs: float, duration_s: float = 120.0, seg_s: float = 4.0, **kwargs) -> None:
        _check_fs(fs, "Calibrator")
        unknown = set(kwargs) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"Calibrator: unknown parameters {sorted(unknown)}")
        self.fs = float(fs)
        self.nseg = round(seg_s * fs)
        self.n_total = round(duration_s * fs)
        if not 0 < self.nseg <= self.n_total:
            raise ValueError(
                f"Calibrator: need 0 < seg_s <= duration_s, got seg_s={seg_s}, "
                f"duration_s={duration_s}"
            )
        self.hop = self.nseg // 2
        self.opts = {**_DEFAULTS, **kwargs}
        self._win = np.hanning(self.nseg)
        self.freqs = np.fft.rfftfreq(self.nseg, 1.0 / self.fs)
        self.reset()

    def reset(self) -> None:
        """Start a new calibration."""
        self._buf = np.zeros(self.nseg)
        self._n = 0
        self._acc = np.zeros(self.freqs.size)
        self._count = 0
        self.result: CalibrationResult | None = None

    @property
    def progress(self) -> float:
        """Share of ``duration_s`` received, in [0, 1]."""
        return min(self._n / self.n_total, 1.0)

    def update(self, chunk: np.ndarray) -> CalibrationResult | None:
        """Consume samples of the target derivation; the result once complete, else None."""
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1:
            raise ValueError(
                f"Calibrator.update: chunk must have shape (n,) or (n, 1), got {x.shape}"
            )
        if self.result is not None:
            return self.result
        x = x[: self.n_total - self._n]
        i = 0
        while i < x.size:
            # Copy up to the next segment end (absolute index multiple of hop).
            pos = self._n
            nxt = (pos // self.hop + 1) * self.hop
            take = min(nxt - pos, x.size - i)
            idx = (pos + np.arange(take)) % self.nseg
            self._buf[idx] = x[i : i + take]
            self._n += take
            i += take
            if self._n >= self.nseg and self._n % self.hop == 0:
                start = self._n % self.nseg
                seg = np.concatenate((self._buf[start:], self._buf[:start]))
                if np.all(np.isfinite(seg)):
                    self._acc += np.abs(np.fft.rfft((seg - seg.mean()) * self._win)) ** 2
                    self._count += 1
        if self._n >= self.n_total:
            self.result = self.finish()
        return self.result

    def finish(self) -> CalibrationResult:
        """The result from the samples received so far."""
        if self.result is not None:
            return self.result
        scale = 1.0 / (self.fs * np.sum(self._win**2))
        psd = self._acc * scale / max(self._count, 1)
        psd[1:-1] *= 2.0
        return _result_from_psd(
            self.freqs,
            psd,
            self._count,
            self._n / self.fs,
            self.fs,
            **self.opts,
        )
