"""Causal instantaneous phase of the alpha/mu rhythm, and forecasts of a target phase.

Method: a causal Wiener filter for the analytic signal
------------------------------------------------------
The field defines the "true" phase at sample t as the angle of the analytic signal of
the whole recording after a zero-phase band-pass around the individual alpha frequency
(Zrenner et al. 2018, 2020; Schreglmann et al. 2021; Wodeyar et al. 2021):
``z = g * x``, where ``g`` is the non-causal impulse response of a Butterworth band-pass
applied forwards and backwards (``sosfiltfilt``, magnitude response ``|H(f)|²``) followed
by the Hilbert transform (doubling positive, removing negative frequencies).

A real-time system only has ``x`` up to t. The linear estimate of ``z(t)`` from the last
``L`` samples with the smallest mean squared error is the causal Wiener filter
(Wiener 1949; Kailath, Sayed & Hassibi 2000, ch. 7): the complex FIR ``h`` that solves the
Toeplitz normal equations ``R h = c`` with

- ``R[i, j] = r(i - j)``, the autocorrelation of the signal, and
- ``c[i] = E[z(t) x(t - i)] = sum_k g[k] r(i - k)``, the cross-correlation of the target
  with the past, which follows from ``r`` and ``g`` alone.

So the only thing learned from the data is the autocorrelation ``r`` (equivalently the
power spectrum): how much of the band is alpha and how much is background decides how
the filter trades delay against noise. ``z_hat(t) = sum_i h[i] x(t - i)`` estimates the
phase *at* t — the filter has no delay to compensate because it predicts the
non-causal target directly. AR forward prediction (phastimate, Zrenner et al. 2020) and
the endpoint-corrected Hilbert transform (ecHT, Schreglmann et al. 2021) approximate the
same quantity with fixed, data-independent rules; the Wiener filter is the optimum of all
linear causal estimators for the measured spectrum, so on stationary stretches it can
only do as well or better (to the extent ``r`` is well estimated).

The error variance of the estimate is known in closed form,
``mmse = E|z|² - c^H R^-1 c``, and gives the confidence
``|z_hat|² / (|z_hat|² + mmse)``: the fraction of the analytic power at t that the
filter explains. With little alpha the filter shrinks ``z_hat`` towards 0 and the
confidence falls.

Streaming and causality
-----------------------
The per-sample kernel (numba) runs a DC-blocking high-pass, stores the sample in a ring
buffer and applies the current FIR. Every ``refit_s`` seconds *of stream time* (at
absolute sample indices that are multiples of the block length, so chunking cannot move
them) the autocorrelation is updated from the last block with exponential forgetting, the
IAF is re-estimated if no band was given, and the filter is re-designed. Outputs are NaN
until ``calib_s`` seconds have arrived. :func:`causal_phase` runs the very same class on
a whole array, so ``causal_phase(x) == concatenated PhaseEstimator.update(chunks)``
holds by construction, bit for bit.

Forecasting
-----------
:meth:`PhaseEstimator.next_target_time` extrapolates the phase at the mean frequency of
the band-limited spectrum (the centroid of ``|G(f)|² S(f)``); its uncertainty combines the
current phase error (from ``mmse``) with the spread of the frequency over the horizon.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.signal
from numba import njit

from stimloop.dsp.iaf import AlphaPeak, IAFTracker

__all__ = [
    "PhaseEstimator",
    "PhaseFilter",
    "PhaseOutput",
    "analytic_target_response",
    "causal_phase",
    "design_phase_filter",
]


class PhaseOutput(NamedTuple):
    """Per-sample outputs of :meth:`PhaseEstimator.update`.

    Attributes
    ----------
    phase_rad : ndarray
        Instantaneous phase in rad, in (-π, π]; 0 is the positive peak, ±π the trough.
        NaN before calibration and while the input window contains NaN.
    amplitude : ndarray
        Envelope (modulus of the estimated analytic signal) in the input's unit.
    confidence : ndarray
        ``|z_hat|² / (|z_hat|² + mmse)`` in [0, 1); 0 where the phase is NaN.
    """

    phase_rad: np.ndarray
    amplitude: np.ndarray
    confidence: np.ndarray


class PhaseFilter(NamedTuple):
    """A designed causal analytic-signal filter.

    Attributes
    ----------
    h : ndarray of complex, shape (n_taps,)
        FIR taps; ``z_hat(t) = sum_i h[i] x(t - i)``.
    mmse : float
        Expected squared error ``E|z - z_hat|²`` in u² (u = input unit).
    power : float
        Expected target power ``E|z|²`` in u².
    freq_hz : float
        Centroid frequency of the band-limited spectrum in Hz.
    freq_sd_hz : float
        Spread (SD) of the band-limited spectrum around the centroid in Hz.
    """

    h: np.ndarray
    mmse: float
    power: float
    freq_hz: float
    freq_sd_hz: float


def _highpass_coefs(fs: float, hp_hz: float) -> tuple[float, float]:
    """First-order Butterworth high-pass (bilinear): y = b0 (x - x1) - a1 y1."""
    k = np.tan(np.pi * hp_hz / fs)
    b0 = 1.0 / (1.0 + k)
    a1 = (k - 1.0) / (k + 1.0)
    return b0, a1


def analytic_target_response(
    fs: float,
    band: tuple[float, float],
    n_support: int,
    hp: tuple[float, float] | None = None,
    order: int = 4,
) -> np.ndarray:
    """Impulse response of the ground-truth operator: zero-phase Butterworth + Hilbert.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    band : (float, float)
        Pass band in Hz.
    n_support : int
        Half-length K in samples; the response is returned for lags -K..K.
    hp : (b0, a1), optional
        Coefficients of the causal high-pass applied before the estimator; the target is
        divided by its response so that the estimate refers to the unfiltered signal.
    order : int
        Butterworth order of each pass (4 as in the ground-truth convention).

    Returns
    -------
    ndarray of complex, shape (2K + 1,)
        ``g[k + K]`` is the weight of ``x(t - k)`` in ``z(t)``.
    """
    nfft = 1 << int(np.ceil(np.log2(max(16 * n_support, 4096))))
    sos = scipy.signal.butter(order, band, "bandpass", fs=fs, output="sos")
    f = np.fft.fftfreq(nfft, 1.0 / fs)
    _, hresp = scipy.signal.sosfreqz(sos, worN=np.abs(f), fs=fs)
    gain = 2.0 * np.abs(hresp) ** 2 * (f > 0)
    if hp is not None:
        b0, a1 = hp
        e = np.exp(-2j * np.pi * f / fs)
        hpr = b0 * (1 - e) / (1 + a1 * e)
        nz = gain > 0
        gain = gain.astype(np.complex128)
        gain[nz] = gain[nz] / hpr[nz]
    g = np.fft.ifft(gain)
    k = np.arange(-n_support, n_support + 1)
    return g[k % nfft]


def design_phase_filter(
    r: np.ndarray,
    g: np.ndarray,
    fs: float,
    n_taps: int,
    loading: float = 1e-4,
    g_acf: np.ndarray | None = None,
) -> PhaseFilter:
    """Causal Wiener filter for the analytic signal ``z = g * x`` (Wiener 1949).

    Parameters
    ----------
    r : ndarray, shape (n_lags,)
        Autocorrelation of the (high-passed) input at lags 0..n_lags-1, in u²;
        needs ``n_lags >= max(n_taps + K, 2 K) + 1`` with ``g`` of length ``2K + 1``.
    g : ndarray of complex, shape (2K + 1,)
        Target response from :func:`analytic_target_response`.
    fs : float
        Sampling rate in Hz.
    n_taps : int
        FIR length L in samples.
    loading : float
        Diagonal loading relative to ``r[0]`` (a white-noise floor that keeps ``R``
        well conditioned and limits the filter's noise gain).
    g_acf : ndarray, optional
        ``fftconvolve(g, conj(g[::-1]))`` if already computed (it depends on ``g`` only).

    Returns
    -------
    PhaseFilter
    """
    K = (g.size - 1) // 2
    L = int(n_taps)
    need = max(L + K, 2 * K) + 1
    if r.size < need:
        raise ValueError(f"design_phase_filter: need {need} autocorrelation lags, got {r.size}")
    if not r[0] > 0:
        raise ValueError(f"design_phase_filter: r[0] must be > 0, got {r[0]}")
    m = L + K
    rsym = np.concatenate((r[m:0:-1], r[: m + 1]))  # lags -m..m
    conv = scipy.signal.fftconvolve(g, rsym)
    # conv[n] = sum_k g[k + K] rsym[n - k - K] with rsym index = lag + m, so
    # c[i] = sum_k g[k] r(i - k) sits at n = i + K + m.
    c = conv[K + m : K + m + L]
    col = r[:L].copy()
    col[0] *= 1.0 + loading
    sol = _levinson2(col, np.ascontiguousarray(np.stack((c.real, c.imag), axis=1)))
    h = sol[:, 0] + 1j * sol[:, 1]
    # E|z|² = sum_d r(d) a(d) with a(d) = sum_m g[m + d] conj(g[m]).
    a = scipy.signal.fftconvolve(g, np.conj(g[::-1])) if g_acf is None else g_acf
    lags = np.abs(np.arange(-2 * K, 2 * K + 1))
    power = float(np.real(np.sum(a * r[lags])))
    mmse = float(max(power - np.real(np.vdot(c, h)), 1e-12 * power))
    # Band-limited spectrum for the forecast frequency: Blackman-Tukey estimate of S(f)
    # (Hann lag window) times |G(f)|².
    nl = r.size
    w = np.hanning(2 * nl + 1)[nl:-1]
    nfft = 1 << int(np.ceil(np.log2(4 * nl)))
    rw = np.zeros(nfft)
    rw[:nl] = r * w
    rw[nfft - nl + 1 :] = (r * w)[1:][::-1]
    spec = np.maximum(np.real(np.fft.fft(rw)), 0.0)
    gspec = np.fft.fft(g, nfft) * np.exp(2j * np.pi * np.fft.fftfreq(nfft) * K)
    freqs = np.fft.fftfreq(nfft, 1.0 / fs)
    p = spec * np.abs(gspec) ** 2 * (freqs > 0)
    tot = p.sum()
    fc = float(np.sum(freqs * p) / tot) if tot > 0 else np.nan
    fsd = float(np.sqrt(np.sum((freqs - fc) ** 2 * p) / tot)) if tot > 0 else np.nan
    return PhaseFilter(h, mmse, power, fc, fsd)


@njit(cache=True)
def _levinson2(t, b):
    """Solve the symmetric Toeplitz system ``T x = b`` for two right-hand sides.

    Levinson (1947) recursion with Durbin's forward vector: O(L²), ``t`` is the first
    column of T, ``b`` has shape (L, 2). About 4x faster than two scipy solves.
    """
    L = t.size
    f = np.zeros(L)
    fn = np.zeros(L)
    x = np.zeros((L, 2))
    f[0] = 1.0 / t[0]
    x[0, 0] = b[0, 0] / t[0]
    x[0, 1] = b[0, 1] / t[0]
    for n in range(1, L):
        ef = 0.0
        e0 = 0.0
        e1 = 0.0
        for i in range(n):
            tt = t[n - i]
            ef += tt * f[i]
            e0 += tt * x[i, 0]
            e1 += tt * x[i, 1]
        a = 1.0 / (1.0 - ef * ef)
        # f_{n+1} = a ([f_n; 0] - ef [0; reversed f_n]); T f = e_1 keeps holding.
        for i in range(n + 1):
            fi = f[i] if i < n else 0.0
            bi = f[n - i] if i > 0 else 0.0
            fn[i] = a * (fi - ef * bi)
        for i in range(n + 1):
            f[i] = fn[i]
        # x_{n+1} = [x_n; 0] + (b_n - e) reversed(f_{n+1}), with T reversed(f) = e_{n+1}.
        d0 = b[n, 0] - e0
        d1 = b[n, 1] - e1
        for i in range(n + 1):
            bb = f[n - i]
            x[i, 0] += d0 * bb
            x[i, 1] += d1 * bb
    return x


@njit(cache=True)
def _phase_kernel(
    x, h_rev_re, h_rev_im, n_taps, mmse, conf_scale, hp, fstate, istate, ring, o_ph, o_amp, o_conf
):
    """Per-sample high-pass, ring buffer and complex FIR; state updated in place.

    fstate = [x_prev, y_prev, z_re_last, z_im_last]; istate = [pos, clean_run, primed].
    ``ring`` has length 2 * nbuf; every sample is written at pos and pos + nbuf so the
    last ``n_taps`` samples are always one contiguous slice.
    """
    nbuf = ring.size // 2
    b0 = hp[0]
    a1 = hp[1]
    for i in range(x.size):
        v = x[i]
        pos = istate[0]
        if np.isfinite(v):
            if istate[2] == 0:
                # Restart the high-pass on the first valid sample: no step transient.
                fstate[0] = v
                fstate[1] = 0.0
                istate[2] = 1
            y = b0 * (v - fstate[0]) - a1 * fstate[1]
            fstate[0] = v
            fstate[1] = y
            istate[1] += 1
        else:
            y = 0.0
            istate[1] = 0
            istate[2] = 0
        ring[pos] = y
        ring[pos + nbuf] = y
        if n_taps > 0 and istate[1] >= n_taps:
            start = pos + nbuf - n_taps + 1
            re = 0.0
            im = 0.0
            for j in range(n_taps):
                s = ring[start + j]
                re += h_rev_re[j] * s
                im += h_rev_im[j] * s
            p2 = re * re + im * im
            o_ph[i] = np.arctan2(im, re)
            o_amp[i] = np.sqrt(p2)
            o_conf[i] = conf_scale * p2 / (p2 + mmse)
            fstate[2] = re
            fstate[3] = im
        else:
            o_ph[i] = np.nan
            o_amp[i] = np.nan
            o_conf[i] = 0.0
            fstate[2] = np.nan
            fstate[3] = np.nan
        istate[0] = pos + 1 if pos + 1 < nbuf else 0


class PhaseEstimator:
    """Streaming causal phase, amplitude and confidence of the alpha/mu rhythm.

    Causal Wiener filter for the analytic signal (see the module docstring; Wiener 1949),
    targeting the field's ground truth (zero-phase Butterworth band-pass + Hilbert,
    Zrenner et al. 2018). Its autocorrelation is learned causally from the stream.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz (>= 60).
    band : (float, float), optional
        Pass band ``(low_hz, high_hz)``, e.g. IAF ± 2 Hz from a calibration recording.
        If None, the IAF is tracked causally from the data (:class:`IAFTracker`; peak
        choice in :func:`~stimloop.dsp.iaf.fit_alpha_peak`) and the band is IAF ±
        ``half_width_hz``; until a reliable peak is found, 10 Hz is assumed. For a
        session, :func:`stimloop.dsp.calibration.calibrate` gives a band from 2 min of
        rest (``CalibrationResult.band_hz``).
    taps_s : float
        Length of the causal FIR in s.
    support_s : float
        Half-length in s of the target's (non-causal) impulse response that is modelled.
    refit_s : float
        Block length in s: autocorrelation update and filter redesign every block.
    calib_s : float
        Stream time in s before the first filter is designed (outputs NaN until then).
    forget_s : float or None
        Time constant in s of the exponential forgetting of the autocorrelation
        (None: average over everything seen).
    hp_hz : float
        Cut-off in Hz of the first-order DC-blocking high-pass (compensated in the design).
    half_width_hz : float
        Half-width of the band around a tracked IAF in Hz.
    loading : float
        Diagonal loading of the normal equations relative to ``r(0)``.
    redesign_after_s, redesign_every : float, int
        The filter is redesigned at every block during the first ``redesign_after_s``
        seconds, then at every ``redesign_every``-th block (the autocorrelation is still
        updated every block).

    Notes
    -----
    Forecasts need the LSL time of each sample: pass ``timestamps`` to :meth:`update`.
    Without them the clock is ``sample_index / fs`` (s from the first sample).
    """

    def __init__(
        self,
        fs: float,
        band: tuple[float, float] | None = None,
        *,
        taps_s: float = 0.75,
        support_s: float = 1.0,
        refit_s: float = 1.0,
        calib_s: float = 2.0,
        forget_s: float | None = 120.0,
        hp_hz: float = 0.5,
        half_width_hz: float = 2.0,
        loading: float = 1e-4,
        redesign_after_s: float = 20.0,
        redesign_every: int = 5,
    ) -> None:
        fs = float(fs)
        if not np.isfinite(fs) or fs < 60.0:
            raise ValueError(f"PhaseEstimator: fs must be a finite rate >= 60 Hz, got {fs}")
        if band is not None:
            lo, hi = (float(b) for b in band)
            if not (0.0 < lo < hi < fs / 2):
                raise ValueError(
                    f"PhaseEstimator: band must satisfy 0 < low < high < fs/2 = {fs / 2} Hz, "
                    f"got {band}"
                )
            band = (lo, hi)
        for name, val in (("taps_s", taps_s), ("support_s", support_s), ("refit_s", refit_s)):
            if not val > 0:
                raise ValueError(f"PhaseEstimator: {name} must be > 0 s, got {val}")
        if not calib_s >= refit_s:
            raise ValueError(f"PhaseEstimator: calib_s must be >= refit_s, got {calib_s}")
        self.fs = fs
        self.fixed_band = band
        self.half_width_hz = float(half_width_hz)
        self.loading = float(loading)
        self.n_taps = round(taps_s * fs)
        self.n_support = round(support_s * fs)
        self.block = round(refit_s * fs)
        self.calib_n = round(calib_s * fs)
        # Redesign every block during the first redesign_after_s, then every
        # redesign_every blocks: the autocorrelation converges, a redesign costs ~1 ms.
        self.redesign_after_n = round(redesign_after_s * fs)
        self.redesign_every = int(redesign_every)
        self.n_lags = max(self.n_taps + self.n_support, 2 * self.n_support) + 1
        self._lam = 1.0 if forget_s is None else float(np.exp(-self.block / (forget_s * fs)))
        self._hp = np.array(_highpass_coefs(fs, hp_hz))
        self._forget_s = forget_s
        self._iaf = IAFTracker(fs, seg_s=2.0, forget_s=forget_s)
        nbuf = max(self.n_lags - 1 + self.block, self._iaf.nseg, self.n_taps) + 1
        self._nbuf = nbuf
        self._g_cache: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
        self.reset()
        self.warmup()

    def reset(self) -> None:
        """Forget everything: back to the state right after construction."""
        self._ring = np.zeros(2 * self._nbuf)
        self._fstate = np.zeros(4)
        self._fstate[2:] = np.nan
        self._istate = np.zeros(3, dtype=np.int64)
        self._acc = np.zeros(self.n_lags)
        self._w = 0.0
        self._n = 0
        self._t_last = np.nan
        self._h_re = np.zeros(0)
        self._h_im = np.zeros(0)
        self._mmse = np.inf
        self._alpha_frac = 0.0
        self.filter: PhaseFilter | None = None
        self.band: tuple[float, float] | None = self.fixed_band
        self._iaf = IAFTracker(self.fs, seg_s=2.0, forget_s=self._forget_s)

    def warmup(self) -> None:
        """Compile the numba kernels now (cached on disk), so update() never compiles."""
        _levinson2(np.array([2.0, 1.0]), np.zeros((2, 2)))
        e = np.zeros(0)
        _phase_kernel(
            e, e, e, 0, 1.0, 1.0, self._hp, np.zeros(4), np.zeros(3, np.int64), np.zeros(2), e, e, e
        )

    @property
    def n_seen(self) -> int:
        """Number of samples consumed so far."""
        return self._n

    @property
    def iaf(self) -> AlphaPeak:
        """The causally tracked alpha peak (only updated when ``band`` is None)."""
        return self._iaf.peak

    def _target(self, band: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        cached = self._g_cache.get(band)
        if cached is None:
            g = analytic_target_response(self.fs, band, self.n_support, tuple(self._hp))
            cached = (g, scipy.signal.fftconvolve(g, np.conj(g[::-1])))
            self._g_cache = {band: cached}  # keep one: a tracked band changes slowly
        return cached

    def _unrolled(self, n: int) -> np.ndarray:
        """The last n high-passed samples, oldest first."""
        pos = int(self._istate[0])  # next write position == oldest sample
        return self._ring[pos + self._nbuf - n : pos + self._nbuf]

    def _end_of_block(self) -> None:
        clean = int(self._istate[1])
        span = self.n_lags - 1 + self.block
        # A block contributes only if its lag window holds no NaN (pre-start zeros are fine).
        if clean >= min(self._n, span):
            seg = self._unrolled(span)
            blk = seg[-self.block :]
            corr = scipy.signal.correlate(seg, blk, mode="valid", method="fft")
            self._acc = self._lam * self._acc + corr[::-1]
            self._w = self._lam * self._w + self.block
        if clean >= self._iaf.nseg:
            self._iaf.add_segment(self._unrolled(self._iaf.nseg).copy())
            pk = self._iaf.peak
            if self.fixed_band is None and pk.reliable:
                self.band = (pk.iaf_hz - self.half_width_hz, pk.iaf_hz + self.half_width_hz)
            # Share of the power at the alpha peak that is rhythm rather than 1/f background.
            db = pk.power_db if np.isfinite(pk.power_db) else 0.0
            self._alpha_frac = 1.0 - 10.0 ** (-max(db, 0.0) / 10.0)
        k = self._n // self.block
        due = self._n < self.redesign_after_n or k % self.redesign_every == 0 or self.filter is None
        if due and self._n >= self.calib_n and self._w > 0:
            band = self.band
            if band is None:
                band = (10.0 - self.half_width_hz, 10.0 + self.half_width_hz)
            r = self._acc / self._w
            if r[0] > 0:
                g, g_acf = self._target(band)
                filt = design_phase_filter(r, g, self.fs, self.n_taps, self.loading, g_acf)
                if not (np.all(np.isfinite(filt.h)) and np.isfinite(filt.freq_hz)):
                    return  # a degenerate spectrum (e.g. flat-lined input): keep the old filter
                self.filter = filt
                self._h_re = np.ascontiguousarray(filt.h.real[::-1])
                self._h_im = np.ascontiguousarray(filt.h.imag[::-1])
                self._mmse = filt.mmse

    def update(self, chunk: np.ndarray, timestamps: np.ndarray | None = None) -> PhaseOutput:
        """Consume a chunk of one channel and return phase, amplitude and confidence.

        Parameters
        ----------
        chunk : ndarray, shape (n,) or (n, 1)
            New samples (e.g. µV of a Hjorth derivation). NaN marks missing samples;
            outputs are NaN (confidence 0) while the filter window contains one.
        timestamps : ndarray, shape (n,), optional
            LSL local-clock time of each sample in s, used by :meth:`next_target_time`.

        Returns
        -------
        PhaseOutput
            ``phase_rad``, ``amplitude`` and ``confidence``, one value per sample.
        """
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1:
            raise ValueError(
                f"PhaseEstimator.update: chunk must have shape (n,) or (n, 1), got {x.shape}"
            )
        x = np.ascontiguousarray(x)
        n = x.size
        if timestamps is not None:
            ts = np.asarray(timestamps, dtype=np.float64).ravel()
            if ts.size != n:
                raise ValueError(f"PhaseEstimator.update: {n} samples but {ts.size} timestamps")
        ph = np.empty(n)
        amp = np.empty(n)
        conf = np.empty(n)
        i = 0
        while i < n:
            m = min(n - i, self.block - self._n % self.block)
            _phase_kernel(
                x[i : i + m],
                self._h_re,
                self._h_im,
                self._h_re.size,
                self._mmse,
                self._alpha_frac,
                self._hp,
                self._fstate,
                self._istate,
                self._ring,
                ph[i : i + m],
                amp[i : i + m],
                conf[i : i + m],
            )
            self._n += m
            i += m
            if self._n % self.block == 0:
                self._end_of_block()
        if n:
            self._t_last = float(ts[-1]) if timestamps is not None else (self._n - 1) / self.fs
        return PhaseOutput(ph, amp, conf)

    def next_target_time(self, target_phase: float, min_lead_s: float = 0.0) -> tuple[float, float]:
        """When the rhythm will next reach ``target_phase``.

        Extrapolates the latest phase estimate at the band-limited spectrum's centroid
        frequency.

        Parameters
        ----------
        target_phase : float
            Target phase in rad (0 = positive peak, π = trough).
        min_lead_s : float
            Earliest acceptable time after the last sample, in s (e.g. the stimulator's
            latency); later cycles are returned if the next crossing is sooner.

        Returns
        -------
        t : float
            Predicted time in the clock of the timestamps (LSL s); NaN if no estimate.
        uncertainty_s : float
            1-SD uncertainty of ``t`` in s (inf if no estimate): the current phase error
            ``sqrt(mmse / (2 |z_hat|²))`` plus the frequency spread times the horizon.
        """
        re, im = self._fstate[2], self._fstate[3]
        filt = self.filter
        if filt is None or not (np.isfinite(re) and np.isfinite(im)):
            return np.nan, np.inf
        f = filt.freq_hz
        w = 2 * np.pi * f
        phi = np.arctan2(im, re)
        tau = float(np.mod(target_phase - phi, 2 * np.pi)) / w
        while tau < min_lead_s:
            tau += 1.0 / f
        p2 = re * re + im * im
        var0 = min(filt.mmse / (2 * p2) if p2 > 0 else np.inf, np.pi**2 / 3)
        sig = np.sqrt(var0 + (2 * np.pi * filt.freq_sd_hz * tau) ** 2)
        return self._t_last + tau, float(sig / w)


def causal_phase(
    x: np.ndarray, fs: float, band: tuple[float, float] | None = None, **kwargs
) -> np.ndarray:
    """Causal phase of a whole array: :class:`PhaseEstimator` run in one chunk.

    Parameters
    ----------
    x : ndarray, shape (n,)
        One channel (e.g. a Hjorth derivation).
    fs : float
        Sampling rate in Hz.
    band : (float, float), optional
        Pass band ``(low_hz, high_hz)``; None tracks the IAF causally.
    **kwargs
        Further :class:`PhaseEstimator` parameters.

    Returns
    -------
    ndarray, shape (n,)
        Phase in rad (0 = positive peak, ±π = trough); NaN until calibrated.
    """
    return PhaseEstimator(fs, band, **kwargs).update(x).phase_rad


def reference_phase(
    x: np.ndarray, fs: float, iaf_hz: float, half_width_hz: float = 2.0, order: int = 4
) -> np.ndarray:
    """The field's offline ground-truth phase (non-causal; for validation only).

    Zero-phase Butterworth band-pass at ``iaf_hz ± half_width_hz`` over the whole
    recording (``sosfiltfilt``), then the angle of the analytic signal (Hilbert), as in
    Zrenner et al. 2018 and ``../shared/data/README.md``. Discard the first and last 2 s
    before scoring: the filter and the Hilbert transform are unreliable at the edges.

    Parameters
    ----------
    x : ndarray, shape (n,)
        One channel, e.g. a Hjorth derivation, in any unit.
    fs : float
        Sampling rate in Hz.
    iaf_hz : float
        Individual alpha frequency in Hz.
    half_width_hz : float
        Half-width of the pass band in Hz.
    order : int
        Butterworth order (of the single pass).

    Returns
    -------
    ndarray, shape (n,)
        Phase in rad, 0 at the positive peak and ±π at the trough.
    """
    band = (iaf_hz - half_width_hz, iaf_hz + half_width_hz)
    sos = scipy.signal.butter(order, band, btype="bandpass", fs=fs, output="sos")
    filtered = scipy.signal.sosfiltfilt(sos, np.asarray(x, dtype=np.float64))
    return np.angle(scipy.signal.hilbert(filtered))
