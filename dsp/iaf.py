"""Individual alpha frequency (IAF): the alpha peak above the 1/f background.

The power spectrum of resting EEG is a 1/f-like aperiodic background plus peaks. The IAF
is the frequency of the alpha peak in 7–14 Hz once that background is removed
(Klimesch 1999; the aperiodic fit follows the idea of Donoghue et al. 2020, "FOOOF",
simplified to one straight line in log-log coordinates):

1. power spectral density by Welch's method (Welch 1967), Hann windows, 50 % overlap;
2. fit ``log10(power) = a + b * log10(f)`` by least squares over the fit range
   (2–35 Hz by default) *outside* the alpha search band, so the peak cannot pull the fit;
3. the residual ``10 * (log10(power) - fit)`` in dB is the periodic part. Its local
   maxima inside the search band that are at least ``min_peak_db`` high and 1 dB
   prominent are the candidate peaks; :func:`choose_alpha_peak` takes the tallest
   unless others are within 2 dB, then the one nearest 10 Hz (split alpha spectra,
   Chiang et al. 2011; see that function for why). A tracker keeps its previous peak
   while that stays tied (hysteresis). The chosen peak's height is the peak power
   above 1/f, its full width at half height (in dB) the bandwidth.

A peak is reported as reliable only if such a candidate exists: at least
``min_peak_db`` above the background, prominent, and not at the edge of the search band
(a maximum at the edge is the shoulder of something else, not a peak).

:func:`estimate_iaf` works offline (the tracker's twin; for a session's calibration use
:mod:`stimloop.dsp.calibration`, with finer bins and a full spectral fit); :class:`IAFTracker`
does the same on a stream, from Welch segments aligned to absolute sample indices
(so chunking never changes the estimate) with exponential forgetting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

__all__ = [
    "AlphaPeak",
    "IAFTracker",
    "aperiodic_residual_db",
    "choose_alpha_peak",
    "estimate_iaf",
    "fit_alpha_peak",
    "welch_psd",
]


@dataclass(frozen=True)
class AlphaPeak:
    """The alpha peak of a spectrum, after removal of the 1/f background.

    Attributes
    ----------
    iaf_hz : float
        Peak frequency in Hz (interpolated between bins). NaN if there is no spectrum.
    power_db : float
        Peak power above the 1/f fit in dB.
    bandwidth_hz : float
        Full width of the peak at half its height in dB, in Hz.
    reliable : bool
        True if the peak is at least ``min_peak_db`` above 1/f and not at a band edge.
    reason : str
        Empty if reliable; otherwise why not (for logs and reports).
    ambiguous : bool
        True if another candidate peak was within the tie margin (split alpha spectrum;
        see :func:`choose_alpha_peak`).
    """

    iaf_hz: float
    power_db: float
    bandwidth_hz: float
    reliable: bool
    reason: str = ""
    ambiguous: bool = False


def welch_psd(x: np.ndarray, fs: float, seg_s: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density with Hann windows and 50 % overlap (Welch 1967).

    Parameters
    ----------
    x : ndarray, shape (n,)
        Signal (any unit u); NaN samples make the segments containing them skipped.
    fs : float
        Sampling rate in Hz.
    seg_s : float
        Segment length in s (frequency resolution ``1 / seg_s`` Hz).

    Returns
    -------
    freqs : ndarray
        Frequencies in Hz.
    psd : ndarray
        One-sided PSD in u²/Hz (all NaN if no complete clean segment).
    """
    x = np.asarray(x, dtype=np.float64)
    nseg = round(seg_s * fs)
    if nseg < 8:
        raise ValueError(f"welch_psd: seg_s * fs must give >= 8 samples, got {nseg}")
    freqs = np.fft.rfftfreq(nseg, 1.0 / fs)
    win = np.hanning(nseg)
    scale = 1.0 / (fs * np.sum(win**2))
    acc = np.zeros(freqs.size)
    count = 0
    for start in range(0, x.size - nseg + 1, nseg // 2):
        seg = x[start : start + nseg]
        if not np.all(np.isfinite(seg)):
            continue
        spec = np.fft.rfft((seg - seg.mean()) * win)
        acc += np.abs(spec) ** 2
        count += 1
    if count == 0:
        return freqs, np.full(freqs.size, np.nan)
    psd = acc * scale / count
    psd[1:-1] *= 2.0
    return freqs, psd


def aperiodic_residual_db(
    freqs: np.ndarray, psd: np.ndarray, exclude_hz: tuple[float, float], fit_hz: tuple[float, float]
) -> tuple[np.ndarray, float, float] | None:
    """Residual in dB above a straight 1/f line fitted in log-log outside ``exclude_hz``.

    Returns ``(resid_db, slope, intercept)`` (``resid_db`` is -inf at 0 Hz), or None when
    fewer than 4 positive bins lie in the fit range.
    """
    lo, hi = exclude_hz
    fit_hi = min(fit_hz[1], 0.9 * freqs[-1])
    fitmask = (freqs >= fit_hz[0]) & (freqs <= fit_hi) & ((freqs < lo) | (freqs > hi))
    fitmask &= psd > 0
    if fitmask.sum() < 4:
        return None
    slope, icpt = np.polyfit(np.log10(freqs[fitmask]), np.log10(psd[fitmask]), 1)
    pos = freqs > 0
    resid = np.full(freqs.size, -np.inf)
    resid[pos] = 10.0 * (
        np.log10(np.maximum(psd[pos], 1e-300)) - (icpt + slope * np.log10(freqs[pos]))
    )
    return resid, float(slope), float(icpt)


def choose_alpha_peak(
    cand_hz: np.ndarray,
    cand_db: np.ndarray,
    prefer_hz: float = 10.0,
    tie_db: float = 2.0,
) -> int:
    """Index of the alpha peak among candidate peaks (frequency in Hz, height in dB).

    The tallest peak wins unless other peaks are within ``tie_db`` of it; among those,
    the one nearest ``prefer_hz`` wins. Why: split alpha spectra are common (Chiang et
    al. 2011), and on a spatially filtered derivation the taller of two nearly equal
    peaks is often a neighbouring generator seen through the filter's reference (on
    EEGMAT C3 the 11.7 Hz peak is the raw IAF of the neighbours T3 and P3, the mu peak
    is at 9.5 Hz). With heights within a few dB, the spectrum of one derivation cannot
    tell which is local, so the population's typical IAF (about 10 Hz in adults,
    Klimesch 1999) breaks the tie. A single clear peak is never moved by this rule.
    """
    top = float(np.max(cand_db))
    tied = np.flatnonzero(cand_db >= top - tie_db)
    return int(tied[np.argmin(np.abs(cand_hz[tied] - prefer_hz))])


def fit_alpha_peak(
    freqs: np.ndarray,
    psd: np.ndarray,
    search_hz: tuple[float, float] = (7.0, 14.0),
    fit_hz: tuple[float, float] = (2.0, 35.0),
    min_peak_db: float = 2.0,
    *,
    prefer_hz: float = 10.0,
    tie_db: float = 2.0,
    min_prominence_db: float = 1.0,
    previous_hz: float | None = None,
) -> AlphaPeak:
    """Find the alpha peak above a straight 1/f fit in log-log coordinates.

    Candidates are the local maxima of the 1/f residual inside ``search_hz`` (not at its
    edges) that rise at least ``min_peak_db`` above the background and
    ``min_prominence_db`` above the dips that separate them from taller peaks
    (topographic prominence). :func:`choose_alpha_peak` picks one. With
    ``previous_hz`` (a tracker's last choice), a local maximum within 0.75 Hz of it is
    kept as long as it stays within ``tie_db`` of the tallest candidate: hysteresis, so
    that nearly equal peaks do not make the phase band flip back and forth (each switch
    moves the target, and so the phase, by tens of degrees).

    Parameters
    ----------
    freqs : ndarray
        Frequencies in Hz (ascending, evenly spaced).
    psd : ndarray
        Power spectral density at ``freqs`` (any unit).
    search_hz : (float, float)
        Band in Hz in which the peak is sought; it is excluded from the 1/f fit.
    fit_hz : (float, float)
        Band in Hz over which the 1/f background is fitted (outside ``search_hz``).
    min_peak_db : float
        Minimum height above the background in dB for a reliable peak.
    prefer_hz : float
        Tie-break frequency in Hz (see :func:`choose_alpha_peak`).
    tie_db : float
        Peaks within this many dB of the tallest count as tied.
    min_prominence_db : float
        Minimum prominence in dB of a candidate peak.
    previous_hz : float, optional
        The previously chosen IAF in Hz (hysteresis), or None.

    Returns
    -------
    AlphaPeak
        Peak frequency (Hz), height (dB), bandwidth (Hz) and reliability.
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    if freqs.shape != psd.shape:
        raise ValueError(f"fit_alpha_peak: freqs {freqs.shape} and psd {psd.shape} differ")
    lo, hi = search_hz
    if not 0 < lo < hi:
        raise ValueError(f"fit_alpha_peak: search_hz must satisfy 0 < low < high, got {search_hz}")
    nyq = freqs[-1] if freqs.size else 0.0
    if not np.all(np.isfinite(psd)) or hi >= nyq:
        return AlphaPeak(np.nan, np.nan, np.nan, False, "no valid spectrum")
    fitted = aperiodic_residual_db(freqs, psd, search_hz, fit_hz)
    if fitted is None:
        return AlphaPeak(np.nan, np.nan, np.nan, False, "too few bins for the 1/f fit")
    resid = fitted[0]
    band = np.flatnonzero((freqs >= lo) & (freqs <= hi))
    if band.size < 3:
        return AlphaPeak(np.nan, np.nan, np.nan, False, "search band has < 3 bins")
    finite = np.where(np.isfinite(resid), resid, np.min(resid[np.isfinite(resid)]))
    peaks = scipy.signal.find_peaks(finite)[0]
    prom = scipy.signal.peak_prominences(finite, peaks)[0] if peaks.size else np.zeros(0)
    inner = (peaks > band[0]) & (peaks < band[-1]) & (finite[peaks] >= min_peak_db)
    local = peaks[inner]
    cands = local[prom[inner] >= min_prominence_db]
    if cands.size:
        k = int(cands[choose_alpha_peak(freqs[cands], resid[cands], prefer_hz, tie_db)])
        if previous_hz is not None and np.isfinite(previous_hz) and local.size:
            near = local[np.argmin(np.abs(freqs[local] - previous_hz))]
            top = float(np.max(resid[cands]))
            if abs(freqs[near] - previous_hz) <= 0.75 and resid[near] >= top - tie_db:
                k = int(near)
        ambiguous = int(np.sum(resid[cands] >= resid[cands].max() - tie_db)) > 1
    else:
        k = int(band[np.argmax(resid[band])])
        ambiguous = False
    peak_db = float(resid[k])
    # Parabolic interpolation of the peak on the dB residual (bins are coarse, 0.5 Hz).
    f_peak = float(freqs[k])
    if 0 < k < freqs.size - 1:
        a, b, c = resid[k - 1], resid[k], resid[k + 1]
        den = a - 2 * b + c
        if np.isfinite(den) and den < 0:
            f_peak += 0.5 * (a - c) / den * (freqs[1] - freqs[0])
    # Full width at half height (in dB), edges linearly interpolated.
    half = peak_db / 2.0
    i = k
    while i > 0 and resid[i - 1] >= half:
        i -= 1
    j = k
    while j < freqs.size - 1 and resid[j + 1] >= half:
        j += 1
    left = freqs[i]
    if i > 0 and resid[i] != resid[i - 1]:
        left = freqs[i - 1] + (half - resid[i - 1]) / (resid[i] - resid[i - 1]) * (
            freqs[i] - freqs[i - 1]
        )
    right = freqs[j]
    if j < freqs.size - 1 and resid[j] != resid[j + 1]:
        right = freqs[j] + (resid[j] - half) / (resid[j] - resid[j + 1]) * (freqs[j + 1] - freqs[j])
    bw = float(right - left)
    if not cands.size and k in (band[0], band[-1]):
        return AlphaPeak(f_peak, peak_db, bw, False, "maximum at the edge of the search band")
    if peak_db < min_peak_db:
        return AlphaPeak(
            f_peak, peak_db, bw, False, f"peak {peak_db:.1f} dB above 1/f < {min_peak_db} dB"
        )
    if not cands.size:
        return AlphaPeak(
            f_peak, peak_db, bw, False, f"no peak with >= {min_prominence_db} dB prominence"
        )
    return AlphaPeak(f_peak, peak_db, bw, True, "", ambiguous)


def estimate_iaf(
    x: np.ndarray,
    fs: float,
    seg_s: float = 2.0,
    search_hz: tuple[float, float] = (7.0, 14.0),
    min_peak_db: float = 2.0,
) -> AlphaPeak:
    """IAF of a calibration recording (offline): Welch PSD, 1/f removal, peak.

    Parameters
    ----------
    x : ndarray, shape (n,)
        One EEG channel (ideally spatially filtered, e.g. Hjorth), any unit.
    fs : float
        Sampling rate in Hz.
    seg_s : float
        Welch segment length in s.
    search_hz : (float, float)
        Alpha search band in Hz.
    min_peak_db : float
        Minimum peak height above 1/f in dB for a reliable peak.

    Returns
    -------
    AlphaPeak
    """
    freqs, psd = welch_psd(x, fs, seg_s)
    return fit_alpha_peak(freqs, psd, search_hz=search_hz, min_peak_db=min_peak_db)


class IAFTracker:
    """Rolling IAF of a stream from Welch segments aligned to absolute sample indices.

    A segment of ``seg_s`` seconds ends at every multiple of ``seg_s / 2`` seconds of
    stream time, so the set of segments, and therefore the estimate, does not depend on
    how the stream is chunked. Segments are averaged with exponential forgetting (time
    constant ``forget_s``; ``None`` keeps all).

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    seg_s : float
        Welch segment length in s.
    forget_s : float or None
        Forgetting time constant in s.
    search_hz : (float, float)
        Alpha search band in Hz.
    min_peak_db : float
        Minimum peak height above 1/f in dB for a reliable peak.
    """

    def __init__(
        self,
        fs: float,
        seg_s: float = 2.0,
        forget_s: float | None = 60.0,
        search_hz: tuple[float, float] = (7.0, 14.0),
        min_peak_db: float = 2.0,
    ) -> None:
        if not fs > 0:
            raise ValueError(f"IAFTracker: fs must be > 0 Hz, got {fs}")
        self.fs = float(fs)
        self.nseg = round(seg_s * fs)
        self.hop = self.nseg // 2
        self.search_hz = search_hz
        self.min_peak_db = min_peak_db
        self._lam = 1.0 if forget_s is None else float(np.exp(-self.hop / (forget_s * fs)))
        self._win = np.hanning(self.nseg)
        self.freqs = np.fft.rfftfreq(self.nseg, 1.0 / fs)
        self._acc = np.zeros(self.freqs.size)
        self._w = 0.0
        self._buf = np.zeros(self.nseg)
        self._n = 0  # absolute samples seen
        self.peak = AlphaPeak(np.nan, np.nan, np.nan, False, "no data yet")

    def add_segment(self, seg: np.ndarray) -> None:
        """Add one complete segment of ``nseg`` samples (used by PhaseEstimator)."""
        if seg.size != self.nseg or not np.all(np.isfinite(seg)):
            return
        spec = np.abs(np.fft.rfft((seg - seg.mean()) * self._win)) ** 2
        self._acc = self._lam * self._acc + spec
        self._w = self._lam * self._w + 1.0
        psd = self._acc / self._w
        prev = self.peak.iaf_hz if self.peak.reliable else None
        self.peak = fit_alpha_peak(
            self.freqs,
            psd,
            search_hz=self.search_hz,
            min_peak_db=self.min_peak_db,
            previous_hz=prev,
        )

    def update(self, chunk: np.ndarray) -> AlphaPeak:
        """Consume samples; return the current peak estimate.

        Parameters
        ----------
        chunk : ndarray, shape (n,)
            New samples of one channel.
        """
        chunk = np.asarray(chunk, dtype=np.float64).ravel()
        for v in chunk:
            self._buf[self._n % self.nseg] = v
            self._n += 1
            if self._n >= self.nseg and self._n % self.hop == 0:
                start = self._n % self.nseg
                self.add_segment(np.concatenate((self._buf[start:], self._buf[:start])))
        return self.peak
