"""Causal per-SCR shape fit that refines the onset of an SCR when it is confirmed.

The rule-based onset of :func:`stimloop.dsp.eda_kernel._confirm` (a slope criterion on a
zero-phase copy) is within 0.04 s (median) of the truth for isolated SCRs, but late on a
rise that follows the previous SCR closely (median +0.16 s, p90 +0.49 s on the wearable
generator's overlapping SCRs): the previous response's recovery bends the slope that the
criterion reads. A model of the response shape does not need the slope: at confirmation,
the samples from 2 s before the detector's onset up to the confirming sample are fitted
with

    baseline + a * shape_j(t - t0),

where the baseline is a constant, a linear trend, the earlier fitted responses (their sum,
one free scale) and a decaying exponential (the part of a recovery the earlier fits
missed; its time constant, 2 or 5 s, is chosen on the part of the window before the
detector's onset, so it cannot absorb the rise), and ``shape_j`` is one of 40 unit-peak
response shapes: a Gaussian sudomotor burst (σ = 0, 0.25, 0.5, 0.75 or 1 s; 0 is an
impulse) convolved with a Bateman function exp(-t/τ2) - exp(-t/τ1) (τ1 = 0.05, 0.3, 0.7,
1.2 s; τ2 = 2.5, 6 s). The Bateman function is the SCR shape of Benedek & Kaernbach (2010,
J Neurosci Methods 190:80-91, "A continuous measure of phasic electrodermal activity");
a Gaussian burst convolved with a fast rise and exponential decays is the canonical SCRF
of Bach, Flandin, Friston & Dolan (2010, Int J Psychophysiol 75:349-356, "Modelling
event-related skin conductance responses"), which the family contains approximately.
The onset t0 runs over a 0.1 s grid; for each (t0, j) the amplitude a is linear, so the
best pair is the one whose column, projected off the baseline, removes most of the
residual sum of squares (variable projection; Golub & Pereyra 1973). A shape starts at
the point where it reaches 2 % of its peak, so t0 is directly an onset in the sense of
the generator's truth and of the rule-based criterion.

The fit runs on means over blocks of round(fs / 10) samples (the raw samples below
10 Hz), aligned to absolute sample indices, kept in a ring of ``RING_S`` s. Everything the
fit reads is in explicit state (the block ring, the last ``N_COMPONENTS`` fitted responses)
plus a constant shape table; it runs once per confirmed SCR at the confirming sample, so
the onset it gives is causal and independent of how the samples were chunked.

Which onset is reported (see docs/eda.md, Method item 5, and ``EDAParams.onset_fit``) was
decided on the wearable generator, seeds 1-4 (held-out seeds 10-13 only measured).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit
from scipy.signal import fftconvolve

# ---- the shape dictionary ------------------------------------------------------------
SHAPE_SIGMAS_S = (0.0, 0.25, 0.5, 0.75, 1.0)  # Gaussian burst widths (0: impulse)
SHAPE_TAU1_S = (0.05, 0.3, 0.7, 1.2)  # Bateman rise time constants
SHAPE_TAU2_S = (2.5, 6.0)  # Bateman decay time constants
ONSET_FRACTION = 0.02  # a shape starts where it reaches this fraction of its peak
TABLE_DT_S = 0.025  # step of the shape table (linear interpolation between)
TABLE_S = 45.0  # length of the shape table (beyond: 0; < 0.1 % of the peak)
_FINE_DT_S = 0.005  # step on which the shapes are built

# ---- the fit -------------------------------------------------------------------------
FIT_RATE_HZ = 10.0  # block means at this rate (the raw samples below it)
RING_S = 14.0  # block means kept (the window is at most ~10 s: 2 s + lookback)
N_COMPONENTS = 16  # earlier fitted responses kept
BEFORE_S = 2.0  # the window starts this long before the detector's onset
EARLY_S = 0.8  # the fitted onset is searched from this long before the detector's onset
LATE_S = 0.5  # ... up to this long before the end of the window
STEP_S = 0.1  # onset grid
GAP_S = 0.8  # no closer than this after the previous fitted onset
PREV_GAP_S = 0.3  # earlier responses: onset at least this long before the detector's
PREV_SPAN_S = 40.0  # earlier responses whose onset lies within this span enter
DECAY_TAUS_S = (2.0, 5.0)  # time constants tried for the residual recovery
MIN_BLOCKS = 8  # fewer block means: no fit
N_BASE = 4  # baseline columns: constant, trend, earlier responses, decay

# ---- modes (EDAParams.onset_fit) -------------------------------------------------------
MODE_OFF = 0.0
MODE_MEAN = 1.0  # report the mean of the rule-based and the fitted onset
MODE_FIT = 2.0  # report the fitted onset

# ---- fit state layout (float64 vector) ---------------------------------------------------
F_M = 0  # samples per block
F_R = 1  # ring length, blocks
F_C = 2  # capacity of the component ring
F_BSUM = 3  # sum of the current block
F_BCNT = 4  # samples in it
F_NC = 5  # components pushed so far
F_FS = 6  # sampling rate, Hz
F_NEAR = 7  # s: apply the fit only if the previous SCR peaked within this (0: always)
F_GUARD = 8  # smallest share of the residual variance the response must explain
F_N_FIT = 9  # fits made (diagnostics)
F_N_USED = 10  # fitted onsets used (diagnostics)
N_FHDR = 16

# ---- scratch rows --------------------------------------------------------------------
R_Y = 0  # block means in the window
R_T = 1  # their times, s (absolute)
R_R = 2  # residual after the baseline
R_A = 3  # baseline columns (N_BASE rows)
R_Q = R_A + N_BASE  # their orthonormal basis
R_ACC = R_Q + N_BASE  # per-shape accumulators (flattened)
N_RROWS = R_ACC + 1


def n_shapes() -> int:
    """Number of shapes in the dictionary."""
    return len(SHAPE_SIGMAS_S) * len(SHAPE_TAU1_S) * len(SHAPE_TAU2_S)


def _shape(sigma: float, tau1: float, tau2: float) -> np.ndarray:
    """Unit-peak response on the table grid, starting where it reaches 2 % of its peak."""
    t = np.arange(0.0, TABLE_S + 10.0, _FINE_DT_S)
    y = np.exp(-t / tau2) - np.exp(-t / tau1)
    if sigma > 0:
        tg = np.arange(-4.0 * sigma, 4.0 * sigma + _FINE_DT_S / 2, _FINE_DT_S)
        g = np.exp(-0.5 * (tg / sigma) ** 2)
        y = fftconvolve(y, g / g.sum())[: t.size]
    y = y / y.max()
    k0 = int(np.argmax(y >= ONSET_FRACTION))
    # The 2 % point lies between two fine samples: interpolate it to the start.
    f = (ONSET_FRACTION - y[k0 - 1]) / (y[k0] - y[k0 - 1]) if k0 > 0 else 0.0
    t_on = (k0 - 1 + f) * _FINE_DT_S if k0 > 0 else 0.0
    return np.interp(t_on + np.arange(0.0, TABLE_S, TABLE_DT_S), t, y)


@lru_cache(maxsize=1)
def shape_table() -> np.ndarray:
    """The shape dictionary, (n_table, n_shapes): row i is every shape i * TABLE_DT_S s
    after its onset (read-only; shared by all detectors)."""
    cols = [_shape(s, a, b) for s in SHAPE_SIGMAS_S for a in SHAPE_TAU1_S for b in SHAPE_TAU2_S]
    tab = np.ascontiguousarray(np.stack(cols, axis=1))
    tab.setflags(write=False)
    return tab


def new_fit_state(fs: float, near_s: float = 0.0, guard: float = 0.0) -> tuple[np.ndarray, ...]:
    """A fresh fit state for rate ``fs`` (Hz): (state vector, scratch, shape table)."""
    m = max(1, round(fs / FIT_RATE_HZ))
    r = int(np.ceil(RING_S * fs / m)) + 2
    fst = np.zeros(N_FHDR + r + 3 * N_COMPONENTS)
    fst[F_M] = m
    fst[F_R] = r
    fst[F_C] = N_COMPONENTS
    fst[F_FS] = fs
    fst[F_NEAR] = near_s
    fst[F_GUARD] = guard
    fst[N_FHDR : N_FHDR + r] = np.nan  # blocks not seen yet
    tab = shape_table()
    fscr = np.zeros((N_RROWS, max(r, tab.shape[1] * (2 + N_BASE))))
    return fst, fscr, tab


@njit(cache=True)
def fit_push(fst, n, x):
    """Add raw sample ``x`` (µS; NaN if invalid) with absolute index ``n`` to the block
    means."""
    m = fst[F_M]
    fst[F_BSUM] += x
    fst[F_BCNT] += 1.0
    if (n + 1.0) % m == 0.0:
        r = int(fst[F_R])
        j = int((n + 1.0) / m) - 1
        # A block that began before this detector started (cannot happen) or that holds an
        # invalid sample is NaN: no fit reads it.
        fst[N_FHDR + j % r] = fst[F_BSUM] / m if fst[F_BCNT] == m else np.nan
        fst[F_BSUM] = 0.0
        fst[F_BCNT] = 0.0


@njit(cache=True)
def _project_off(fscr, row, nq, nr):
    """Subtract from scratch row ``row`` (over [0, nr)) its projection on each of the
    first ``nq`` orthonormal basis rows, one after the other (modified Gram-Schmidt)."""
    for b in range(nq):
        d = 0.0
        for k in range(nr):
            d += fscr[R_Q + b, k] * fscr[row, k]
        for k in range(nr):
            fscr[row, k] -= d * fscr[R_Q + b, k]


@njit(cache=True)
def _basis(fscr, na, nr):
    """Orthonormalise the first ``na`` baseline columns over rows [0, nr) (modified
    Gram-Schmidt, dropping columns that are (nearly) in the span of earlier ones) and
    project the block means off them. Returns (basis size, residual sum of squares)."""
    nq = 0
    for a in range(na):
        qr = R_Q + nq
        n0 = 0.0
        for k in range(nr):
            v = fscr[R_A + a, k]
            fscr[qr, k] = v
            n0 += v * v
        if n0 <= 0.0:
            continue
        _project_off(fscr, qr, nq, nr)
        n1 = 0.0
        for k in range(nr):
            n1 += fscr[qr, k] * fscr[qr, k]
        if n1 <= 1e-10 * n0:
            continue
        s = 1.0 / np.sqrt(n1)
        for k in range(nr):
            fscr[qr, k] *= s
        nq += 1
    for k in range(nr):
        fscr[R_R, k] = fscr[R_Y, k]
    _project_off(fscr, R_R, nq, nr)
    rss = 0.0
    for k in range(nr):
        rss += fscr[R_R, k] * fscr[R_R, k]
    return nq, rss


@njit(cache=True)
def _shape_at(tab, j, t):
    """Shape ``j`` at ``t`` s after its onset (0 before it and past the table)."""
    if t < 0.0:
        return 0.0
    u = t / TABLE_DT_S
    i = int(u)
    if i >= tab.shape[0] - 1:
        return 0.0
    f = u - i
    return tab[i, j] * (1.0 - f) + tab[i + 1, j] * f


@njit(cache=True)
def fit_onset(fst, fscr, tab, onset, latest, n, last_art):
    """Fit one response to the window of a confirmed SCR; return the onset to report.

    Parameters
    ----------
    fst, fscr, tab : ndarray
        Fit state (updated: the fitted response is added to the component ring), scratch
        and shape table (see :func:`new_fit_state`).
    onset : float
        The rule-based onset (absolute sample index).
    latest : float
        Latest onset allowed (absolute sample index): the peak minus the shortest rise
        time accepted, so the response found is the rise that was confirmed.
    n : float
        Index of the confirming sample; nothing after it is read.
    last_art : float
        Index of the last flagged (artifact or invalid) sample: no fit across it.

    Returns
    -------
    (float, float)
        The fitted onset (absolute sample index, fractional; NaN if no fit was made) and
        the share of the baseline residual's sum of squares the fitted response explains.
    """
    fs = fst[F_FS]
    m = fst[F_M]
    r = int(fst[F_R])
    on_s = onset / fs
    w0 = max(0.0, on_s - BEFORE_S)
    i0 = np.floor(w0 * fs)
    if last_art >= i0 - 1.0:
        return np.nan, 0.0
    j0 = int(np.ceil(i0 / m))
    j1 = int(np.floor((n + 1.0) / m)) - 1
    if j1 - j0 + 1 > r - 1:
        j0 = j1 - r + 2
    nr = j1 - j0 + 1
    if nr < MIN_BLOCKS:
        return np.nan, 0.0
    half = (m - 1.0) / 2.0
    for k in range(nr):
        j = j0 + k
        v = fst[N_FHDR + j % r]
        if np.isnan(v):
            return np.nan, 0.0
        fscr[R_Y, k] = v
        fscr[R_T, k] = (j * m + half) / fs
    t_first = fscr[R_T, 0]
    t_end = fscr[R_T, nr - 1]
    # Baseline columns: constant, linear trend, earlier responses (one scale).
    na = 0
    for k in range(nr):
        fscr[R_A, k] = 1.0
        fscr[R_A + 1, k] = fscr[R_T, k] - t_end
    na = 2
    cb = N_FHDR + r
    cap = int(fst[F_C])
    n_prev = min(int(fst[F_NC]), cap)
    last_prev = -1.0e300
    any_prev = False
    for k in range(nr):
        fscr[R_A + 2, k] = 0.0
    for c in range(n_prev):
        t0 = fst[cb + 3 * c]
        if t0 > t_first - PREV_SPAN_S and t0 < on_s - PREV_GAP_S:
            any_prev = True
            last_prev = max(last_prev, t0)
            sj = int(fst[cb + 3 * c + 1])
            amp = fst[cb + 3 * c + 2]
            for k in range(nr):
                fscr[R_A + 2, k] += amp * _shape_at(tab, sj, fscr[R_T, k] - t0)
    if any_prev:
        na = 3
    # The residual recovery: the decay time constant that fits the pre-onset part best.
    n_pre = 0
    while n_pre < nr and fscr[R_T, n_pre] <= t_first + BEFORE_S:
        n_pre += 1
    best_tau = DECAY_TAUS_S[0]
    best_rss = np.inf
    if n_pre > na + 1:
        for tau in DECAY_TAUS_S:
            for k in range(nr):
                fscr[R_A + na, k] = np.exp(-(fscr[R_T, k] - t_first) / tau)
            _, rss = _basis(fscr, na + 1, n_pre)
            if rss < best_rss:
                best_rss = rss
                best_tau = tau
    for k in range(nr):
        fscr[R_A + na, k] = np.exp(-(fscr[R_T, k] - t_first) / best_tau)
    nq, rss0 = _basis(fscr, na + 1, nr)
    if rss0 <= 0.0:
        return np.nan, 0.0
    # Onset grid x shapes: the column that removes most of the residual.
    ns = tab.shape[1]
    w = 2 + N_BASE
    g_lo = max(w0 + 0.3, on_s - EARLY_S, last_prev + GAP_S)
    g_hi = min(t_end - LATE_S, latest / fs)
    best_red = 0.0
    best_g = np.nan
    best_j = -1
    best_a = 0.0
    g = g_lo
    while g <= g_hi + 1e-9:
        for q in range(ns * w):
            fscr[R_ACC, q] = 0.0
        for k in range(nr):
            tr = fscr[R_T, k] - g
            if tr < 0.0:
                continue
            u = tr / TABLE_DT_S
            i = int(u)
            if i >= tab.shape[0] - 1:
                continue
            f = u - i
            rk = fscr[R_R, k]
            for s in range(ns):
                c = tab[i, s] * (1.0 - f) + tab[i + 1, s] * f
                o = s * w
                fscr[R_ACC, o] += c * rk
                fscr[R_ACC, o + 1] += c * c
                for b in range(nq):
                    fscr[R_ACC, o + 2 + b] += c * fscr[R_Q + b, k]
        for s in range(ns):
            o = s * w
            cr = fscr[R_ACC, o]
            cc = fscr[R_ACC, o + 1]
            den = cc
            for b in range(nq):
                den -= fscr[R_ACC, o + 2 + b] * fscr[R_ACC, o + 2 + b]
            if den <= 1e-9 * cc or cr <= 0.0:
                continue
            red = cr * cr / den
            if red > best_red:
                best_red = red
                best_g = g
                best_j = s
                best_a = cr / den
        g += STEP_S
    fst[F_N_FIT] += 1.0
    if best_j < 0:
        return np.nan, 0.0
    # Keep the response for the baselines of later fits.
    c = int(fst[F_NC]) % cap
    fst[cb + 3 * c] = best_g
    fst[cb + 3 * c + 1] = best_j
    fst[cb + 3 * c + 2] = best_a
    fst[F_NC] += 1.0
    return best_g * fs, best_red / rss0


@njit(cache=True)
def refined_onset(fst, fscr, tab, mode, onset, latest, n, last_art, prev_pz, has_prev):
    """The onset to report for a confirmed SCR (absolute sample index).

    ``onset``, ``latest`` and ``n`` are absolute sample indices (rule-based onset, latest
    onset the fit may return, the confirming sample; see :func:`fit_onset`); ``last_art``
    the last flagged sample;
    ``prev_pz`` the previous SCR's peak index and ``has_prev`` its amplitude in µS (0:
    none). ``mode`` (``MODE_*``) 0 keeps the rule-based ``onset``; otherwise the fit of
    :func:`fit_onset` is made and, when it succeeded, explains at least ``fst[F_GUARD]``
    of the residual and (``fst[F_NEAR]`` > 0) the previous SCR peaked less than that many
    s before the rule-based onset, the fitted onset (``MODE_FIT``) or the mean of the two
    (``MODE_MEAN``) is reported instead.
    """
    if mode == MODE_OFF:
        return onset
    g, share = fit_onset(fst, fscr, tab, onset, latest, n, last_art)
    if np.isnan(g) or share < fst[F_GUARD]:
        return onset
    near = fst[F_NEAR]
    if near > 0.0 and not (has_prev > 0.0 and (onset - prev_pz) < near * fst[F_FS]):
        return onset
    fst[F_N_USED] += 1.0
    if mode == MODE_FIT:
        return np.floor(g + 0.5)
    return np.floor(0.5 * (g + onset) + 0.5)
