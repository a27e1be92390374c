"""numba kernel of the causal EDA pipeline: artifact flags, SCL/phasic split, SCR scoring.

One kernel serves both the offline function (:func:`stimloop.dsp.eda.detect_scr`) and the
streaming class (:class:`stimloop.dsp.eda.SCRDetector`). It processes samples one at a
time and keeps *all* of its memory in explicit state that is passed in and updated in
place (the ``scipy.signal.sosfilt(..., zi=zi)`` idiom): a float64 state vector plus ring
buffers (smoothed signal, slope, the signal of the jump test, and a scratch buffer),
indexed by absolute sample index. Processing a recording in one call or in chunks of any
size therefore gives bit-identical outputs by construction.

Method (each step causal, i.e. it uses samples up to now only):

1. Validity: NaN, negative or above ``max_us`` conductance is invalid; below
   ``off_us`` (0.05 µS, the lower bound of Kleckner et al. 2018) is "electrode off".
   Invalid samples give NaN outputs and are skipped; the filters restart on the first
   valid sample, followed by a settling period in which no SCR may start.
2. Motion artifacts: a slope faster than ``art_slope`` (10 µS/s, Kleckner et al. 2018) in
   a 5 Hz low-passed copy, or an isolated jump (a step or a spike: see the kernel loop),
   flags the sample and a padding period after it; an SCR whose rise touches flagged
   samples is rejected, not counted, and the filters restart at the signal's level when
   the flag ends, so a step leaves no false rise and no offset in the SCL.
3. Smoothing: 2nd-order Butterworth low-pass (1 Hz by default) in direct form II
   transposed, initialised at steady state. Sensor noise is estimated twice, as running
   medians of the third difference: of the raw samples (white noise) and of 0.25 s block
   means (1/f noise, which the blocks do not average out). The rise thresholds below are
   kept at least ``noise_k`` noise standard deviations (of the smoothed signal and its
   slope) high.
4. Tonic level (SCL): a lower envelope. It follows the smoothed signal down at once and
   relaxes up with time constant ``tonic_tau`` only while no SCR is rising, so SCRs stay
   out of it. Phasic = smoothed - SCL (≥ 0). The SCL slope (EMA) is the local drift; the
   slope between rises (EMA) is the baseline trend.
5. SCR scoring: trough-to-peak (Boucsein et al. 2012; the "TTP" method of Ledalab,
   Benedek & Kaernbach 2010). A rise starts when the slope exceeds ``slope_on``, both
   absolutely and relative to the baseline trend, and the signal has risen
   ``rise_min_us``. Its peak (maximum) is confirmed when the signal has fallen ``fall_us``
   below it, has not exceeded it for ``plateau`` s, or its slope has been back at the
   pre-rise trend for ``plateau`` s (then the peak is where that flat stretch began). The
   rise is then measured on a zero-phase smoothing of the samples seen so far (see
   :func:`_confirm`): the onset is the last sample before the steepest point whose slope
   was at most ``onset_frac`` of the way from the pre-rise slope to the maximum; the onset
   level is the trough (lowest value from just before the onset to the peak); amplitude =
   peak - onset level, optionally measured from the extrapolated recovery of a preceding
   SCR. Accepted if amplitude ≥ ``min_amp`` and rise time within [``rise_lo``,
   ``rise_hi``] (0.5-5 s; Boucsein et al. 2012). The reported onset is then refined by a
   least-squares fit of one response shape to the window (:mod:`eda_shape_fit`).
   Half-recovery: the time from the peak until the signal falls to peak - amplitude/2,
   reported when seen before the next SCR.
6. Overlap: the look-back never passes the previous peak, so an SCR on the recovery limb
   of another gets its own onset; a slope dip-and-rebound within one rise (a shoulder)
   splits it into two SCRs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# numba caches eda_kernel keyed on this file only: after an edit of eda_shape_fit.py the
# old fit stays compiled in until this file's cache is dropped (numba/numba#1833;
# tests/conftest.py drops it when eda_shape_fit.py is newer).
from stimloop.dsp.eda_shape_fit import fit_push, refined_onset

# ---- parameter vector layout -------------------------------------------------------
P_B0, P_B1, P_B2, P_A1, P_A2 = 0, 1, 2, 3, 4  # smoothing low-pass biquad
P_FB0, P_FB1, P_FB2, P_FA1, P_FA2 = 5, 6, 7, 8, 9  # fast low-pass biquad (artifacts)
P_FS = 10
P_MIN_AMP = 11  # µS
P_RISE_LO = 12  # samples
P_RISE_HI = 13  # samples
P_SLOPE_ON = 14  # µS/s
P_SLOPE_FLOOR = 15  # µS/s
P_RISE_MIN_US = 16  # µS
P_FALL_US = 17  # µS
P_PLATEAU = 18  # samples
P_OFF_US = 19  # µS
P_MAX_US = 20  # µS
P_ART_SLOPE = 21  # µS/s
P_ART_PAD = 22  # samples
P_SETTLE = 23  # samples
P_TONIC_A = 24  # EMA coefficient per sample
P_DRIFT_A = 25  # EMA coefficient per sample
P_SLOPE_A = 26  # EMA coefficient per sample
P_DELAY = 27  # samples subtracted from reported peak indices (filter delay)
P_ONSET_SHIFT = 28  # samples added to the zero-phase onset (bias of the onset criterion)
P_ONSET_FRAC = 29  # onset = where the slope falls below this fraction of the rise's max slope
P_LOOKBACK = 30  # samples searched before the peak for the onset
P_TROUGH_WIN = 31  # samples before the onset searched for the onset level (trough)
P_SHOULDER = 32  # relative slope dip and rebound that split two SCRs within one rise
P_PROJECT = 33  # 1: extrapolate a decaying baseline (recovery limb) to the peak
P_PRE_LO = 34  # samples before the onset where the pre-onset slope window starts
P_PRE_HI = 35  # samples before the onset where it ends
P_PRE_W = 36  # samples over which the pre-rise slope and its trend are fitted
P_PEAK_SEARCH = 37  # samples searched around the delay-corrected peak in the zero-phase copy
P_KNEE = 38  # slope rebound, as a fraction of the preceding decay slope, that starts a rise
P_KNEE_W1 = 39  # samples back to the first reference slope of the knee test
P_KNEE_W2 = 40  # samples back to the second
P_NOISE_K = 41  # thresholds are at least this many noise standard deviations (0: off)
P_NOISE_A = 42  # EMA coefficient of the sample-scale |second difference| per sample
P_GAIN_Y = 43  # noise of the smoothed signal per unit white (sample-scale) noise
P_GAIN_S = 44  # noise of the slope per unit white (sample-scale) noise, per s
P_ONSET_A = 45  # s: how early the onset criterion fires on the sharpest upstroke
P_ONSET_U0 = 46  # s: upstroke width of the sharpest upstroke
P_ONSET_LAM = 47  # s: width over which that error fades
P_ART_W = 48  # samples: length of each of the three windows of the jump test
P_ART_RHO = 49  # the windows around a jump may change by at most this fraction of it
P_ART_JUMP = 50  # µS: smallest jump taken for an artifact
P_ART_SPIKE = 51  # a reversal by this fraction of the jump makes it a spike
P_FAST_RAW = 52  # 1: the jump test runs on the raw signal (low rates), 0: on the fast copy
P_NOISE_B = 53  # samples per block of the block-scale noise estimate (0.25 s)
P_NOISE_AB = 54  # factor of the block-scale running median per step (exp of the step)
P_GAIN_YB = 55  # noise of the smoothed signal per unit block-scale (1/f) noise
P_GAIN_SB = 56  # noise of the slope per unit block-scale (1/f) noise, per s
P_TREND_A = 57  # EMA coefficient per sample of the baseline trend (slope outside rises)
P_NOISE_AM = 58  # factor of the sample-scale running median per step (exp of the step)
P_REC_T1 = 59  # s: rise time constant of the recovery template (0: no template)
P_REC_T2 = 60  # s: decay time constant of the recovery template
P_ONSET_FIT = 61  # onset refinement by a shape fit (eda_shape_fit.MODE_*; 0: off)
N_PARAMS = 62

# ---- state vector layout -----------------------------------------------------------
S_N = 0  # absolute index of the next sample
S_STARTED = 1  # 1 once a valid sample has been seen
S_VALID_PREV = 2  # 1 if the previous sample was valid
S_Z1, S_Z2 = 3, 4  # smoothing biquad state
S_FZ1, S_FZ2 = 5, 6  # fast biquad state
S_Y_PREV = 7
S_FY_PREV = 8
S_SLOPE = 9  # EMA of the smoothed slope, µS/s
S_SCL = 10
S_SCL_PREV = 11
S_DRIFT = 12  # EMA of the SCL slope, µS/s
S_MODE = 13  # 0 = waiting for a rise, 1 = rising
S_BASE_IDX = 14  # candidate onset (last low-slope sample)
S_BASE_VAL = 15
S_PEAK_IDX = 16
S_PEAK_VAL = 17
S_ONSET_IDX = 18  # sample at which the current rise was detected
S_ONSET_VAL = 19
S_ART_UNTIL = 20  # samples < this are flagged (motion or settling)
S_ART_KIND = 21  # flag bit of the current artifact period
S_LAST_ART = 22  # index of the last flagged sample
S_HR_ACTIVE = 23  # 1 while waiting for the half-recovery of the last SCR
S_HR_ID = 24
S_HR_PEAK_IDX = 25
S_HR_LEVEL = 26
S_N_SCR = 27  # SCRs emitted so far (their ids)
S_N_REJ_ART = 28  # rises rejected because of artifacts
S_N_REJ_SHAPE = 29  # rises rejected by amplitude / rise-time rules
S_WIN_START = 30  # no onset may precede this index (last peak, restart or artifact)
S_NE_TMP = 31  # scratch: event count returned by _confirm
S_SMAX = 32  # largest slope of the current rise, µS/s
S_SMIN = 33  # smallest slope since that maximum (a shoulder), µS/s
S_SMIN_IDX = 34
S_RISE_DRIFT = 35  # tonic drift when the rise started, µS/s
S_FLAT_N = 36  # samples in a row whose slope is back at the pre-rise drift
S_KNEE = 37  # 1 while a rise started by a knee (see _knee) has not turned upward yet
S_KNEE_REF = 38  # decay slope before that knee, µS/s
S_KMAX_LO = 39  # the steepest point of the rise is searched from this index on
S_SMAX_IDX = 40
S_X1 = 41  # previous raw sample
S_X2 = 42  # raw sample before that
S_NOISE = 43  # EMA of |second difference| of the raw signal (clipped), µS; jump test
S_SON = 44  # effective slope_on, µS/s (raised above the noise)
S_SFLOOR = 45  # effective slope_floor, µS/s
S_RISEMIN = 46  # effective rise_min_us, µS
S_FALL = 47  # effective fall_us, µS
S_PEAK_KIND = 48  # what S_PEAK_IDX is: PEAK_MAX, PEAK_SHOULDER or PEAK_KNEE
S_ZWIN = 49  # no onset may precede this index in the zero-phase copy (last peak there)
S_ART_FROM = 50  # the jump test uses no sample before this one (last restart)
S_ART_RESTART = 51  # 1: restart the filters when the current motion flag ends
S_BSUM = 52  # sum of the raw samples of the current block
S_BCNT = 53  # samples in it
S_BM1 = 54  # mean of the previous block
S_BM2 = 55  # and of the one before
S_BM3 = 56  # and of the one before that
S_BN = 57  # complete blocks since the last restart
S_NOISE_B = 58  # running median of |third difference| of the block means, µS
S_NOISE_M = 59  # running median of |third difference| of the raw signal, µS
S_X3 = 60  # raw sample three back
S_TREND = 61  # EMA of the slope while no SCR rises and nothing is flagged, µS/s
S_NM_N = 62  # values seen by the sample-scale running median
S_NB_N = 63  # values seen by the block-scale running median
S_PREV_PZ = 64  # peak of the last accepted SCR in the zero-phase copy (absolute index)
S_PREV_AMP = 65  # its amplitude, µS (0: none since the last restart)
S_PREV_VAL = 66  # its peak value in the zero-phase copy, µS
N_STATE = 67

# ---- kinds of peak (how the end of a rise was found) --------------------------------
PEAK_MAX = 0.0  # the maximum of the rise
PEAK_SHOULDER = 1.0  # a slope minimum within a rise that is split in two
PEAK_KNEE = 2.0  # the flattest point of a recovery limb that never turned upward

# ---- noise estimates ---------------------------------------------------------------
MEDIAN_WARMUP = 16.0  # values averaged before a running median starts stepping

# ---- onset -------------------------------------------------------------------------
# A Gaussian-shaped slope crosses 10 % of its maximum at 2.146 sigma before it, and half
# of it at 1.177 sigma: 1.82 half-widths (see _confirm).
ONSET_WIDTHS = 1.82
# |N(0, 20 sigma^2)| (the third difference of white noise) has its median at
# 0.674 * sqrt(20) * sigma: sigma = median / 3.016.
NOISE_Q_TO_SD = 1.0 / 3.016

# ---- per-sample flag bits ----------------------------------------------------------
FLAG_NAN = 1
FLAG_RANGE = 2
FLAG_OFF = 4
FLAG_MOTION = 8
FLAG_SETTLING = 16
FLAG_INVALID = FLAG_NAN | FLAG_RANGE | FLAG_OFF

# ---- event record layout (rows of the event buffer) --------------------------------
E_KIND = 0  # 0 = SCR confirmed, 1 = half-recovery seen
E_ID = 1
E_ONSET = 2
E_PEAK = 3
E_AMP = 4
E_RISE = 5
E_HALF = 6
E_ONSET_VAL = 7
E_PEAK_VAL = 8
E_CONFIRM = 9
N_EVENT_COLS = 10
KIND_SCR = 0.0
KIND_HALF = 1.0


def new_state() -> np.ndarray:
    """A fresh kernel state (nothing seen yet)."""
    st = np.zeros(N_STATE, dtype=np.float64)
    st[S_ART_UNTIL] = -1.0
    st[S_LAST_ART] = -1.0e18
    return st


def history_size(params: np.ndarray) -> int:
    """Length of the ring buffers of smoothed signal and slope kept in the state."""
    return int(params[P_LOOKBACK] + params[P_PLATEAU] + params[P_TROUGH_WIN] + params[P_PRE_LO]) + 8


def event_capacity(n: int, params: np.ndarray) -> int:
    """Upper bound on event rows a chunk of ``n`` samples can produce."""
    # Each SCR needs at least rise_lo samples of rise and emits at most two rows;
    # +4 covers rows completed at the chunk's first samples from earlier state.
    return 2 * (n // max(1, int(params[P_RISE_LO])) + 1) + 4


@njit(cache=True)
def _running_median(est, count, v, mult):
    """One step of a running median of non-negative values; returns the new estimate.

    The first ``MEDIAN_WARMUP`` values are averaged (a start that no single value, a
    sharp SCR onset say, can dominate). After that it is multiplied by ``mult`` (> 1) when
    ``v`` is above it and divided by it when below, so it settles where half of the values
    lie below it (a stochastic-approximation quantile tracker); multiplicative steps keep
    it positive.
    """
    if count < MEDIAN_WARMUP:
        return est + (v - est) / (count + 1.0)
    est = max(est, 1e-12)
    if v > est:
        return est * mult
    if v < est:
        return est / mult
    return est


@njit(cache=True)
def _restart(st, p, hf, x, n, settle, artifact):
    """Restart filters and scoring at value ``x`` (first valid sample after invalid ones,
    or the first sample after a motion artifact; then the tonic drift and trend carry
    over, since an artifact does not change them)."""
    # Steady-state DF-II-T initial conditions for a unity-DC-gain biquad: z1, z2 such that
    # a constant input x gives output x at once (no start-up transient to mistake for an SCR).
    st[S_Z1] = x * (1.0 - p[P_B0])
    st[S_Z2] = x * (p[P_B2] - p[P_A2])
    st[S_FZ1] = x * (1.0 - p[P_FB0])
    st[S_FZ2] = x * (p[P_FB2] - p[P_FA2])
    st[S_Y_PREV] = x
    st[S_FY_PREV] = x
    st[S_X1] = x
    st[S_X2] = x
    st[S_X3] = x
    st[S_SLOPE] = 0.0
    st[S_SCL] = x
    st[S_SCL_PREV] = x
    if not artifact:
        st[S_DRIFT] = 0.0
        st[S_TREND] = 0.0
    st[S_MODE] = 0.0
    st[S_BASE_IDX] = n
    st[S_BASE_VAL] = x
    st[S_HR_ACTIVE] = 0.0
    st[S_WIN_START] = n
    st[S_ZWIN] = n
    st[S_PREV_AMP] = 0.0
    # The jump test sees a flat past at the new level, so a jump right after the restart
    # (artifacts come in bursts) is tested like any other.
    h = hf.shape[0]
    k = n - 3.0 * p[P_ART_W]
    st[S_ART_FROM] = k
    while k < n:
        hf[int(k) % h] = x
        k += 1.0
    st[S_BSUM] = 0.0
    st[S_BCNT] = 0.0
    st[S_BN] = 0.0
    if settle:
        st[S_ART_UNTIL] = n + p[P_SETTLE]
        st[S_ART_KIND] = FLAG_SETTLING


@njit(cache=True)
def _zero_phase(p, hy, hz, a, n):
    """Smooth ``hy[a..n]`` backward with the smoothing biquad, into ``hz``.

    ``hy`` is the raw signal after the causal (forward) pass of that biquad, so ``hz`` is
    the forward-backward, zero-phase smoothing of the raw signal over ``[a, n]``
    (Gustafsson's filtfilt idea; the backward pass starts at steady state at ``hy[n]``).
    It uses samples up to ``n`` only, so a measurement made on it at ``n`` is causal.
    """
    h = hy.shape[0]
    v0 = hy[int(n) % h]
    z1 = v0 * (1.0 - p[P_B0])
    z2 = v0 * (p[P_B2] - p[P_A2])
    k = n
    while k >= a:
        v = hy[int(k) % h]
        o = p[P_B0] * v + z1
        z1 = p[P_B1] * v - p[P_A1] * o + z2
        z2 = p[P_B2] * v - p[P_A2] * o
        hz[int(k) % h] = o
        k -= 1.0


@njit(cache=True)
def _zs(hz, k, fs):
    """Slope of the zero-phase copy at ``k`` (central difference), µS/s."""
    h = hz.shape[0]
    return (hz[int(k + 1.0) % h] - hz[int(k - 1.0) % h]) * 0.5 * fs


@njit(cache=True)
def _crossing(hz, fs, k, lo, level, trend, kc):
    """Last (fractional) index before ``k`` at which the zero-phase slope rose past a level.

    The level is ``level + trend * (index - kc)`` (µS/s), a line, so that a pre-rise slope
    that is itself changing (a recovery limb flattening out) is followed.
    """
    while k > lo + 1.0 and _zs(hz, k - 1.0, fs) > level + trend * (k - 1.0 - kc):
        k -= 1.0
    if k <= lo + 1.0:
        return k
    a = _zs(hz, k - 1.0, fs) - (level + trend * (k - 1.0 - kc))
    b = _zs(hz, k, fs) - (level + trend * (k - kc))
    if b > a:
        return k - 1.0 + min(max(-a / (b - a), 0.0), 1.0)
    return k


@njit(cache=True)
def _recovery(p, t):
    """The recovery template at ``t`` s after its peak, as a fraction of its peak (≤ 1).

    A Bateman function exp(-t/τ2) - exp(-t/τ1) (Benedek & Kaernbach 2010) with fixed
    time constants, shifted so that its peak lies at t = 0; 1 before the peak.
    """
    t1 = p[P_REC_T1]
    t2 = p[P_REC_T2]
    tp = t1 * t2 / (t2 - t1) * np.log(t2 / t1)
    top = np.exp(-tp / t2) - np.exp(-tp / t1)
    if t <= 0.0:
        return 1.0
    return (np.exp(-(tp + t) / t2) - np.exp(-(tp + t) / t1)) / top


@njit(cache=True)
def _confirm(st, p, hy, hs, hz, fst, fscr, tab, ev, ne, n, y):
    """Score the rise whose peak has just been confirmed at sample ``n``.

    The rise is measured on a zero-phase smoothing of the samples seen so far (see
    :func:`_zero_phase`), so onset and peak do not depend on the smoother's delay, which
    differs between sharp and gradual SCR onsets. The onset is found by looking back
    from the steepest point of the rise: it is the last sample whose slope was at most
    ``onset_frac`` of the way from the pre-rise slope to the maximum slope. The pre-rise
    slope is the mean slope over ``pre_w`` s ending twice the upstroke width before the
    steepest point (the upstroke width: from the last half-maximum slope to the steepest
    point), so a gradual onset (Bach et al. 2010's Gaussian-smoothed SCRF) and a sharp
    one (a Bateman function with an impulse driver) are both measured from before they
    start. On a decaying baseline this is the knee where the new SCR starts, before the
    composite trough. The onset level is the lowest smoothed value from just before the
    onset to the peak (the trough of trough-to-peak scoring, Boucsein et al. 2012).
    Looking back only as far as the previous peak keeps overlapping SCRs separate.
    Results are written to the event buffer ``ev`` and the new row count to
    ``st[S_NE_TMP]``.
    """
    fs = p[P_FS]
    h = hy.shape[0]
    peak = st[S_PEAK_IDX]
    lo = max(st[S_ZWIN], peak - p[P_DELAY] - p[P_LOOKBACK], n - h + 2.0)
    _zero_phase(p, hy, hz, lo, n)
    # The peak in the zero-phase copy: the causal one moved back by the smoother's group
    # delay, refined within +-peak_search to the maximum (or, for a shoulder split, the
    # slope minimum; for a knee, the flattest point).
    pz = min(max(st[S_PEAK_IDX] - p[P_DELAY], lo + 2.0), n - 1.0)
    k0 = max(lo + 2.0, pz - p[P_PEAK_SEARCH])
    k1 = min(n - 1.0, pz + p[P_PEAK_SEARCH])
    kind = st[S_PEAK_KIND]
    best = -np.inf
    k = k0
    while k <= k1:
        if kind == PEAK_MAX:
            v = hz[int(k) % h]
        elif kind == PEAK_SHOULDER:
            v = -_zs(hz, k, fs)
        else:
            v = _zs(hz, k, fs)
        if v > best:
            best = v
            pz = k
        k += 1.0
    peak_val = hz[int(pz) % h]
    # Steepest point of the rise (after the knee, for a rise started by one), refined
    # between samples by a parabola (low rates).
    lo_k = max(lo + 1.0, st[S_KMAX_LO] - p[P_DELAY])
    kmax = pz - 1.0
    smax = -1.0e300
    k = pz - 1.0
    while k >= lo_k:
        sl = _zs(hz, k, fs)
        if sl > smax:
            smax = sl
            kmax = k
        k -= 1.0
    if smax == -1.0e300:
        smax = _zs(hz, kmax, fs)
    kf = kmax
    if lo + 1.0 < kmax < n - 1.0:
        s0 = _zs(hz, kmax - 1.0, fs)
        s2 = _zs(hz, kmax + 1.0, fs)
        den = s0 - 2.0 * smax + s2
        if den < 0.0:
            off = 0.5 * (s0 - s2) / den
            kf = kmax + off
            smax = smax - 0.25 * (s0 - s2) * off
    # Upstroke width u (from the last half-way slope to the steepest point) and the
    # pre-rise slope d0 (mean over pre_w s ending 3u before the steepest point, where a
    # Gaussian-shaped upstroke has not begun), found together by fixed-point iteration:
    # on a recovery limb the half-way slope depends on d0 and the window on u. On a
    # recovery limb the slope itself keeps rising toward zero as the recovery flattens;
    # its trend over the window (at most -d0 / 1 s, the fastest physiological recovery)
    # is carried forward.
    d0 = max(st[S_DRIFT], 0.0)
    trend = 0.0
    kc = kmax
    u = 0.0
    for _ in range(4):
        kh = _crossing(hz, fs, kmax, lo, d0 + 0.5 * (smax - d0), trend, kmax)
        u = max(kf - kh, 0.0)
        k1 = np.floor(kf - 3.0 * u) - 1.0
        k0 = max(lo + 1.0, k1 - p[P_PRE_W])
        if k1 < k0:
            break
        # Least-squares line through the slope over [k0, k1].
        sw = 0.0
        sx = 0.0
        sy = 0.0
        sxx = 0.0
        sxy = 0.0
        k = k0
        while k <= k1:
            v = _zs(hz, k, fs)
            sw += 1.0
            sx += k - k0
            sy += v
            sxx += (k - k0) * (k - k0)
            sxy += (k - k0) * v
            k += 1.0
        mean_k = sx / sw
        mean_v = sy / sw
        var_k = sxx / sw - mean_k * mean_k
        b = (sxy / sw - mean_k * mean_v) / var_k if var_k > 0.0 else 0.0
        # Only a flattening recovery limb (negative slope rising toward zero) has a trend.
        b = min(max(b, 0.0), max(-mean_v, 0.0) / fs)
        kc = k0 + mean_k
        # The line, moved to the steepest point, is the slope without the new SCR there.
        d0 = min(mean_v + b * (kmax - kc), smax)
        trend = b
        kc = kmax
    thr = d0 + p[P_ONSET_FRAC] * (smax - d0)
    # Walking back from the steepest point, noise on the slope of a small SCR can cross
    # the threshold before the true onset; the width gives a second estimate that noise
    # does not stop early: a Gaussian-shaped upstroke (the SCRF's) crosses onset_frac =
    # 10 % of its maximum slope 1.82 widths before the steepest point. The earlier wins.
    onset_f = _crossing(hz, fs, kmax, lo, thr, trend, kmax)
    onset_f = max(min(onset_f, kf - ONSET_WIDTHS * u), lo + 1.0)
    # Smoothing spreads a sharp onset (a slope step) to both sides, so the crossing comes
    # early by onset_a s for the sharpest upstroke (width onset_u0 s); the error fades as
    # the upstroke widens, with onset_lam s (calibration in EDAParams.vector).
    shift = p[P_ONSET_A] * np.exp(-(u / fs - p[P_ONSET_U0]) / p[P_ONSET_LAM])
    onset_rep = np.floor(onset_f + min(shift, p[P_ONSET_A]) * fs + 0.5)
    onset = min(max(np.floor(onset_f + 0.5), lo + 1.0), pz)
    # Onset level: the lowest point from just before the onset up to the peak (the
    # trough of trough-to-peak scoring; on a decaying baseline it follows the onset).
    level = hz[int(onset) % h]
    k = onset - 1.0
    while k >= onset - p[P_TROUGH_WIN] and k >= lo:
        v = hz[int(k) % h]
        if v < level:
            level = v
        k -= 1.0
    y_on = level
    k = onset + 1.0
    while k <= pz:
        v = hz[int(k) % h]
        if v < level:
            level = v
        k += 1.0
    rise_n = pz - onset
    # An SCR on the recovery limb of an earlier one: the baseline keeps decaying during
    # the rise. Extrapolate it as an exponential from the slope at the onset, with the
    # time constant of the flattening seen before the rise or, failing that, the one that
    # decays the residual above the SCL at the pre-onset slope, tau = r0 / -slope
    # (amplitude measured from the extrapolated recovery, Boucsein 2012).
    base_at_peak = level
    base_seen = level
    if p[P_PROJECT] == 1.0:
        k0 = max(onset - p[P_PRE_LO], lo + 1.0)
        k1 = onset - p[P_PRE_HI]
        if k1 >= k0:
            acc = 0.0
            cnt = 0.0
            k = k0
            while k <= k1:
                acc += _zs(hz, k, fs)
                cnt += 1.0
                k += 1.0
            s_pre = acc / cnt - min(st[S_DRIFT], 0.0)
            r0 = y_on - st[S_SCL]
            # The recovery's own time constant, where the pre-rise slope was seen to
            # flatten: an exponential has tau = -slope / (rate of change of the slope).
            # It holds for the fast part of a two-stage recovery (the SCRF's), which the
            # residual above the SCL, spanning both stages, overstates.
            s_on = d0 + trend * (onset - kmax) - min(st[S_DRIFT], 0.0)
            tau = 0.0
            proj = level
            if trend > 0.0 and s_on < 0.0:
                tau = min(max(-s_on / (trend * fs), 1.0), 60.0)
                proj = y_on + s_on * tau * (1.0 - np.exp(-rise_n / fs / tau))
            elif s_pre < 0.0 and r0 > 0.0:
                tau = r0 / -s_pre
                proj = y_on - r0 * (1.0 - np.exp(-rise_n / fs / tau))
            if tau > 0.0 and proj < base_at_peak:
                base_at_peak = proj
        # Near the previous SCR's peak its recovery has barely begun, so the slope at the
        # onset shows little of the decay still to come during this rise. Project it with
        # a fixed response shape instead (the previous SCR's amplitude times the drop of
        # the recovery template from the onset to this peak): the fixed-SCRF idea of
        # Ledalab's deconvolution (Benedek & Kaernbach 2010) and of PsPM's SCRF (Bach et al.
        # 2010), applied to the one response whose tail this rise sits on. Only the
        # previous SCR's measured peak and amplitude are used, both known before now.
        # The model corrects the size of a rise that is seen; it does not make one: the
        # acceptance test below uses the baseline without it.
        base_seen = base_at_peak
        if p[P_REC_T1] > 0.0 and st[S_PREV_AMP] > 0.0 and onset >= st[S_PREV_PZ]:
            r_on = _recovery(p, (onset - st[S_PREV_PZ]) / fs)
            r_pk = _recovery(p, (pz - st[S_PREV_PZ]) / fs)
            # Where the template predicts a fall by the onset (5 % of the previous
            # amplitude or more), scale it down to the fall seen there: a recovery slower
            # than the template's is not extrapolated as the template's.
            a_prev = st[S_PREV_AMP]
            if 1.0 - r_on >= 0.05:
                a_prev = min(a_prev, max(st[S_PREV_VAL] - y_on, 0.0) / (1.0 - r_on))
            proj = y_on - a_prev * (r_on - r_pk)
            if proj < base_at_peak:
                base_at_peak = proj
    amp = peak_val - base_at_peak
    if st[S_LAST_ART] >= onset - p[P_TROUGH_WIN]:
        st[S_N_REJ_ART] += 1.0
    elif peak_val - base_seen >= p[P_MIN_AMP] and p[P_RISE_LO] <= rise_n <= p[P_RISE_HI]:
        ev[ne, E_KIND] = KIND_SCR
        ev[ne, E_ID] = st[S_N_SCR]
        # The rule-based onset is late on a rise that follows the previous SCR closely;
        # a fit of the response shape refines it (eda_shape_fit; Method item 5).
        ev[ne, E_ONSET] = refined_onset(
            fst,
            fscr,
            tab,
            p[P_ONSET_FIT],
            onset_rep + p[P_ONSET_SHIFT],
            pz - p[P_RISE_LO],
            n,
            st[S_LAST_ART],
            st[S_PREV_PZ],
            st[S_PREV_AMP],
        )
        ev[ne, E_PEAK] = pz
        ev[ne, E_AMP] = amp
        ev[ne, E_RISE] = rise_n / fs
        ev[ne, E_HALF] = np.nan
        ev[ne, E_ONSET_VAL] = level
        ev[ne, E_PEAK_VAL] = peak_val
        ev[ne, E_CONFIRM] = n
        ne += 1
        st[S_HR_ACTIVE] = 1.0
        st[S_HR_ID] = st[S_N_SCR]
        st[S_HR_PEAK_IDX] = peak
        st[S_HR_LEVEL] = st[S_PEAK_VAL] - 0.5 * amp
        st[S_N_SCR] += 1.0
        st[S_PREV_PZ] = pz
        st[S_PREV_AMP] = amp
        st[S_PREV_VAL] = peak_val
        if y <= st[S_HR_LEVEL]:
            ev[ne, E_KIND] = KIND_HALF
            ev[ne, E_ID] = st[S_HR_ID]
            ev[ne, E_HALF] = (n - peak) / fs
            ev[ne, E_CONFIRM] = n
            ne += 1
            st[S_HR_ACTIVE] = 0.0
    else:
        st[S_N_REJ_SHAPE] += 1.0
    st[S_MODE] = 0.0
    st[S_BASE_IDX] = n
    st[S_BASE_VAL] = y
    st[S_WIN_START] = peak
    st[S_ZWIN] = pz
    st[S_NE_TMP] = ne


@njit(cache=True)
def _knee(hs, p, st, n, slope):
    """A new SCR on a steep recovery limb: the slope rebounds faster than a recovery can.

    An exponential recovery's slope rises by about a quarter of itself per second (time
    constant ~3 s); an SCR adds its own rise within a fraction of a second. A rebound by
    ``knee`` times the decay slope of 0.5-1 s earlier starts a rise, even before the signal
    itself turns upward (an SCR hidden in the recovery of a larger one).
    """
    h = hs.shape[0]
    if n - p[P_KNEE_W2] < st[S_WIN_START]:
        return False
    ref = min(hs[int(n - p[P_KNEE_W1]) % h], hs[int(n - p[P_KNEE_W2]) % h])
    return ref < -st[S_SON] and slope - ref >= max(st[S_SON], -p[P_KNEE] * ref)


@njit(cache=True)
def _start_reference(st):
    """Slope (µS/s) a new rise must beat, besides the absolute threshold: the baseline
    trend, the slope between rises.

    The SCL's own slope is not used: after an SCR the SCL, a lower envelope, relaxes up
    toward the recovery limb at (phasic / tonic_tau), about +0.01-0.04 µS/s after an SCR
    of 0.1-0.3 µS, while the signal itself falls. Taken for a tonic drift, that raised the
    start threshold on exactly the recovery limbs where the next SCR of a burst starts.
    A rising tonic level shows in the trend as well, so it still does not start rises.
    """
    return st[S_TREND]


@njit(cache=True)
def _knee_turned_up(st, n, y):
    """A rise started by a knee has turned into a visible rise at sample ``n``: score it
    as usual from here on.

    Its peak is the highest value *since it turned upward*. The value where the knee
    fired lies higher on the recovery limb than anything a gradual SCR (a Gaussian-driven
    SCRF) reaches for a while; kept as the running peak, it made the plateau rule confirm
    the rise 1 s after the knee fired, while the SCR was still rising, and the rise was
    measured there and rejected.
    """
    st[S_KNEE] = 0.0
    st[S_SMIN] = np.inf
    st[S_FLAT_N] = 0.0
    st[S_PEAK_IDX] = n
    st[S_PEAK_VAL] = y
    st[S_PEAK_KIND] = PEAK_MAX


@njit(cache=True)
def eda_kernel(x, p, st, hy, hs, hf, hz, fst, fscr, tab, y_out, scl_out, phasic_out, flag_out, ev):
    """Run the EDA pipeline over one chunk, updating ``st`` in place.

    Parameters
    ----------
    x : float64[:]
        Skin conductance in µS.
    p : float64[:]
        Parameters (layout ``P_*``).
    st : float64[:]
        State (layout ``S_*``), updated in place.
    hy, hs : float64[:]
        Ring buffers (length :func:`history_size`) of the smoothed signal and its slope,
        indexed by absolute sample index modulo their length; part of the state.
    hf : float64[:]
        Ring buffer of the signal the jump test runs on (raw, or the fast low-pass copy).
    hz : float64[:]
        Scratch ring buffer of the same length for the zero-phase copy (its contents
        between calls do not matter).
    fst, fscr, tab : float64[:], float64[:, :], float64[:, :]
        State of the onset fit (block means and earlier fitted responses; part of the
        state), its scratch, and the shape table: see
        :func:`stimloop.dsp.eda_shape_fit.new_fit_state`.
    y_out, scl_out, phasic_out : float64[:]
        Per-sample smoothed conductance, SCL and phasic component in µS (NaN if invalid).
    flag_out : uint8[:]
        Per-sample flag bits (``FLAG_*``).
    ev : float64[:, N_EVENT_COLS]
        Event buffer; rows ``[0, n_events)`` are filled.

    Returns
    -------
    int
        Number of event rows written.
    """
    fs = p[P_FS]
    ne = 0
    n = st[S_N]
    for i in range(x.shape[0]):
        xi = x[i]
        flag = 0
        if np.isnan(xi):
            flag = FLAG_NAN
        elif xi < 0.0 or xi > p[P_MAX_US]:
            flag = FLAG_RANGE
        elif xi < p[P_OFF_US]:
            flag = FLAG_OFF
        # Block means for the onset fit (NaN marks a block with an invalid sample).
        fit_push(fst, n, xi if flag == 0 else np.nan)
        if flag != 0:
            # Invalid: no output, and a rise in progress cannot be trusted.
            if st[S_MODE] == 1.0:
                st[S_N_REJ_ART] += 1.0
            st[S_MODE] = 0.0
            st[S_HR_ACTIVE] = 0.0
            st[S_VALID_PREV] = 0.0
            st[S_LAST_ART] = n
            y_out[i] = np.nan
            scl_out[i] = np.nan
            phasic_out[i] = np.nan
            flag_out[i] = flag
            n += 1.0
            continue
        if st[S_VALID_PREV] == 0.0:
            _restart(st, p, hf, xi, n, st[S_STARTED] == 1.0, False)
            st[S_STARTED] = 1.0
            st[S_VALID_PREV] = 1.0
        elif st[S_ART_RESTART] == 1.0 and n >= st[S_ART_UNTIL]:
            # A motion artifact has ended: start over at the level the signal is at now,
            # so a step leaves neither a false rise in the smoothed signal nor an offset
            # in the SCL.
            _restart(st, p, hf, xi, n, False, True)
            st[S_ART_RESTART] = 0.0
        # Smoothing biquad (DF-II transposed).
        y = p[P_B0] * xi + st[S_Z1]
        st[S_Z1] = p[P_B1] * xi - p[P_A1] * y + st[S_Z2]
        st[S_Z2] = p[P_B2] * xi - p[P_A2] * y
        fy = p[P_FB0] * xi + st[S_FZ1]
        st[S_FZ1] = p[P_FB1] * xi - p[P_FA1] * fy + st[S_FZ2]
        st[S_FZ2] = p[P_FB2] * xi - p[P_FA2] * fy
        fast_slope = (fy - st[S_FY_PREV]) * fs
        st[S_FY_PREV] = fy
        raw_slope = (y - st[S_Y_PREV]) * fs
        st[S_Y_PREV] = y
        # Sensor noise: the second difference of the raw signal is 6 sigma^2 for white
        # noise and nearly free of SCRs (which are slow). Its mean absolute value, clipped
        # at 4x the running estimate so that artifacts do not inflate it, gives sigma;
        # the rise thresholds are kept at least noise_k noise-standard-deviations of the
        # smoothed signal and of its slope above zero.
        d2 = abs(xi - 2.0 * st[S_X1] + st[S_X2])
        # The thresholds use the running median of the third difference: at low rates the
        # sample scale nears the SCR scale, where SCRs inflate a mean and bend the second
        # difference; the third removes their curvature, and a median follows the noise
        # between them.
        d3 = abs(xi - 3.0 * st[S_X1] + 3.0 * st[S_X2] - st[S_X3])
        st[S_NOISE_M] = _running_median(st[S_NOISE_M], st[S_NM_N], d3, p[P_NOISE_AM])
        st[S_NM_N] += 1.0
        st[S_X3] = st[S_X2]
        st[S_X2] = st[S_X1]
        st[S_X1] = xi
        if st[S_NOISE] > 0.0 and d2 > 4.0 * st[S_NOISE]:
            d2 = 4.0 * st[S_NOISE]
        st[S_NOISE] += p[P_NOISE_A] * (d2 - st[S_NOISE])
        # The same on means over 0.25 s blocks (aligned to absolute sample indices): white
        # noise averages out there, but 1/f (pink) noise, which has as much power per
        # octave at every scale and puts SCR-sized bumps into the SCR band, does not. The
        # block-scale estimate makes the thresholds the same at every sampling rate.
        st[S_BSUM] += xi
        st[S_BCNT] += 1.0
        if (n + 1.0) % p[P_NOISE_B] == 0.0:
            if st[S_BCNT] == p[P_NOISE_B]:
                m = st[S_BSUM] / st[S_BCNT]
                if st[S_BN] >= 3.0:
                    db = abs(m - 3.0 * st[S_BM1] + 3.0 * st[S_BM2] - st[S_BM3])
                    st[S_NOISE_B] = _running_median(st[S_NOISE_B], st[S_NB_N], db, p[P_NOISE_AB])
                    st[S_NB_N] += 1.0
                st[S_BM3] = st[S_BM2]
                st[S_BM2] = st[S_BM1]
                st[S_BM1] = m
                st[S_BN] += 1.0
            st[S_BSUM] = 0.0
            st[S_BCNT] = 0.0
        sigma = st[S_NOISE_M] * NOISE_Q_TO_SD
        sigma_b = st[S_NOISE_B] * NOISE_Q_TO_SD
        kn = p[P_NOISE_K]
        n_y = max(p[P_GAIN_Y] * sigma, p[P_GAIN_YB] * sigma_b)
        n_s = max(p[P_GAIN_S] * sigma, p[P_GAIN_SB] * sigma_b)
        st[S_SON] = max(p[P_SLOPE_ON], kn * n_s)
        st[S_SFLOOR] = max(p[P_SLOPE_FLOOR], 0.4 * kn * n_s)
        st[S_RISEMIN] = max(p[P_RISE_MIN_US], kn * n_y)
        st[S_FALL] = max(p[P_FALL_US], kn * n_y)
        st[S_SLOPE] += p[P_SLOPE_A] * (raw_slope - st[S_SLOPE])
        slope = st[S_SLOPE]
        # Motion artifacts. (1) Too fast for skin conductance (Kleckner et al. 2018).
        # (2) An isolated jump: over three consecutive windows of art_w (0.2 s), the
        # middle one changes by at least art_jump while the one before and the one after
        # change by at most art_rho of that (a step), or the one after reverses it (a
        # spike). An SCR cannot do this: its rise continues into the next window (or,
        # once it has peaked, recovers slowly) and is not preceded by calm (at its peak).
        # The test looks art_w back, so the flag comes one window after the jump.
        h = hy.shape[0]
        xf = xi if p[P_FAST_RAW] == 1.0 else fy
        hf[int(n) % h] = xf
        jump = False
        w = p[P_ART_W]
        if p[P_ART_JUMP] > 0.0 and n - 3.0 * w >= st[S_ART_FROM]:
            x0 = hf[int(n - 3.0 * w) % h]
            x1 = hf[int(n - 2.0 * w) % h]
            x2 = hf[int(n - w) % h]
            jb = x1 - x0
            j = x2 - x1
            ja = xf - x2
            aj = abs(j)
            rho = p[P_ART_RHO]
            if aj >= max(p[P_ART_JUMP], 8.0 * st[S_NOISE]) and abs(jb) <= rho * aj:
                jump = abs(ja) <= rho * aj or ja * j <= -p[P_ART_SPIKE] * aj * aj
        if abs(fast_slope) > p[P_ART_SLOPE] or jump:
            st[S_ART_UNTIL] = n + p[P_ART_PAD]
            st[S_ART_KIND] = FLAG_MOTION
            st[S_ART_RESTART] = 1.0
        if n < st[S_ART_UNTIL]:
            flag = int(st[S_ART_KIND])
            st[S_LAST_ART] = n
        # Tonic level: lower envelope that relaxes upward only while no SCR is rising.
        scl = st[S_SCL]
        if y <= scl:
            scl = y
        elif st[S_MODE] == 0.0 and flag == 0:
            scl += p[P_TONIC_A] * (y - scl)
        st[S_DRIFT] += p[P_DRIFT_A] * ((scl - st[S_SCL_PREV]) * fs - st[S_DRIFT])
        st[S_SCL_PREV] = scl
        st[S_SCL] = scl
        # A rising tonic level lifts the slope for tens of seconds; the SCL (a lower
        # envelope that only relaxes up between SCRs) can fall behind it. The slope
        # outside rises tracks it directly; a rise must exceed it (see _start_reference).
        if st[S_MODE] == 0.0 and flag == 0:
            st[S_TREND] += p[P_TREND_A] * (slope - st[S_TREND])
        rel = slope - _start_reference(st)
        hy[int(n) % h] = y
        hs[int(n) % h] = slope
        y_out[i] = y
        scl_out[i] = scl
        phasic_out[i] = y - scl
        flag_out[i] = flag
        # Half-recovery of the last SCR.
        if st[S_HR_ACTIVE] == 1.0 and y <= st[S_HR_LEVEL]:
            ev[ne, E_KIND] = KIND_HALF
            ev[ne, E_ID] = st[S_HR_ID]
            ev[ne, E_HALF] = (n - st[S_HR_PEAK_IDX]) / fs
            ev[ne, E_CONFIRM] = n
            ne += 1
            st[S_HR_ACTIVE] = 0.0
        if flag != 0:
            # Flagged: no SCR may start or continue through it.
            if st[S_MODE] == 1.0:
                st[S_N_REJ_ART] += 1.0
            st[S_MODE] = 0.0
            st[S_BASE_IDX] = n
            st[S_BASE_VAL] = y
            st[S_WIN_START] = n + 1.0
            st[S_ZWIN] = n + 1.0
            n += 1.0
            continue
        if st[S_MODE] == 0.0:
            # A sample is an onset candidate when the signal is not rising, either in
            # absolute terms or relative to the baseline trend (whichever is lower), so a
            # lagging drift estimate can never hold the onset back before a flat stretch.
            knee = p[P_KNEE] > 0.0 and _knee(hs, p, st, n, slope)
            if min(rel, slope) <= st[S_SFLOOR] and not knee:
                st[S_BASE_IDX] = n
                st[S_BASE_VAL] = y
            elif knee or (min(rel, slope) >= st[S_SON] and y - st[S_BASE_VAL] >= st[S_RISEMIN]):
                st[S_MODE] = 1.0
                st[S_ONSET_IDX] = n
                st[S_ONSET_VAL] = y
                st[S_PEAK_IDX] = n
                st[S_PEAK_VAL] = y
                st[S_PEAK_KIND] = PEAK_MAX
                st[S_SMAX] = slope
                st[S_SMAX_IDX] = n
                st[S_SMIN] = np.inf
                st[S_KNEE] = 1.0 if knee else 0.0
                if knee:
                    h = hs.shape[0]
                    st[S_KNEE_REF] = min(
                        hs[int(n - p[P_KNEE_W1]) % h], hs[int(n - p[P_KNEE_W2]) % h]
                    )
                    st[S_KMAX_LO] = n - p[P_KNEE_W1]
                else:
                    st[S_KMAX_LO] = st[S_WIN_START]
                st[S_RISE_DRIFT] = max(st[S_DRIFT], st[S_TREND], 0.0)
                st[S_FLAT_N] = 0.0
        elif st[S_KNEE] == 1.0 and slope <= 0.0:
            # A rise started by a knee on a recovery limb, not (yet) turned upward: its
            # "peak" is the flattest point of the composite signal (highest slope); it is
            # confirmed when the slope falls back clearly, or abandoned after rise_hi.
            if slope > st[S_SMAX]:
                st[S_SMAX] = slope
                st[S_SMAX_IDX] = n
            if st[S_SMAX] - slope >= max(st[S_SON], 0.25 * (st[S_SMAX] - st[S_KNEE_REF])):
                k = st[S_SMAX_IDX]
                st[S_PEAK_IDX] = k
                st[S_PEAK_VAL] = hy[int(k) % hy.shape[0]]
                st[S_PEAK_KIND] = PEAK_KNEE
                _confirm(st, p, hy, hs, hz, fst, fscr, tab, ev, ne, n, y)
                ne = int(st[S_NE_TMP])
            elif n - st[S_ONSET_IDX] > p[P_RISE_HI]:
                st[S_N_REJ_SHAPE] += 1.0
                st[S_MODE] = 0.0
                st[S_BASE_IDX] = n
                st[S_BASE_VAL] = y
        else:
            if st[S_KNEE] == 1.0:
                _knee_turned_up(st, n, y)
            # A second SCR starting while the first still rises (or before it has
            # visibly fallen) shows as a shoulder: the slope dips and rebounds. Split
            # there: the first SCR peaks at the dip (or its maximum before it), the second
            # starts from it.
            smax = st[S_SMAX]
            smin = st[S_SMIN]
            if (
                smin < np.inf
                and smax - smin >= p[P_SHOULDER] * smax
                and slope - smin >= max(st[S_SON], p[P_SHOULDER] * smax)
                and slope - st[S_RISE_DRIFT] >= st[S_SON]
            ):
                k = st[S_SMIN_IDX]
                if st[S_PEAK_IDX] > k:
                    st[S_PEAK_IDX] = k
                    st[S_PEAK_VAL] = hy[int(k) % hy.shape[0]]
                    st[S_PEAK_KIND] = PEAK_SHOULDER
                _confirm(st, p, hy, hs, hz, fst, fscr, tab, ev, ne, n, y)
                ne = int(st[S_NE_TMP])
                st[S_HR_ACTIVE] = 0.0
                st[S_MODE] = 1.0
                st[S_ONSET_IDX] = n
                st[S_PEAK_IDX] = n
                st[S_PEAK_VAL] = y
                st[S_PEAK_KIND] = PEAK_MAX
                st[S_SMAX] = slope
                st[S_SMIN] = np.inf
                st[S_FLAT_N] = 0.0
            elif slope >= smax:
                st[S_SMAX] = slope
                st[S_SMAX_IDX] = n
                st[S_SMIN] = np.inf
            elif slope < smin:
                st[S_SMIN] = slope
                st[S_SMIN_IDX] = n
            # On a rising tonic level the signal may never fall after an SCR: the peak is
            # also confirmed once the slope has been back at the pre-rise drift for a
            # plateau period.
            if slope - st[S_RISE_DRIFT] <= st[S_SFLOOR]:
                st[S_FLAT_N] += 1.0
            else:
                st[S_FLAT_N] = 0.0
            if y > st[S_PEAK_VAL]:
                st[S_PEAK_IDX] = n
                st[S_PEAK_VAL] = y
                st[S_PEAK_KIND] = PEAK_MAX
            if st[S_FLAT_N] >= p[P_PLATEAU] and st[S_PEAK_VAL] - y < st[S_FALL]:
                # Back at the pre-rise drift without falling (a rising tonic level): the
                # SCR ended where the flat stretch began, not at the running maximum.
                k = n - st[S_FLAT_N] + 1.0
                if k < st[S_PEAK_IDX]:
                    st[S_PEAK_IDX] = k
                    st[S_PEAK_VAL] = hy[int(k) % hy.shape[0]]
                    st[S_PEAK_KIND] = PEAK_SHOULDER
                _confirm(st, p, hy, hs, hz, fst, fscr, tab, ev, ne, n, y)
                ne = int(st[S_NE_TMP])
            elif st[S_PEAK_VAL] - y >= st[S_FALL] or n - st[S_PEAK_IDX] >= p[P_PLATEAU]:
                _confirm(st, p, hy, hs, hz, fst, fscr, tab, ev, ne, n, y)
                ne = int(st[S_NE_TMP])
        n += 1.0
    st[S_N] = n
    return ne
